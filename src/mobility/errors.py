"""Errors a user can act on: each says what, where, what was expected and what to do."""

from __future__ import annotations


class MobilityError(Exception):
    """Base of every error the CLI turns into a one-line message and a non-zero exit."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.where = where
        self.hint = hint
        parts = [f"{where}: {message}" if where else message]
        if hint:
            parts.append(f"What to do: {hint}")
        super().__init__("\n".join(parts))


class ConfigError(MobilityError):
    """A configuration file is missing or does not validate."""


class InputContractError(MobilityError):
    """An input file is missing or does not match its contract."""


class KeyMaterialError(MobilityError):
    """The pseudonymization key is missing, too short or badly protected."""


class QualityGateError(MobilityError):
    """Too many input rows were invalid; the run committed nothing."""


class BudgetExceededError(MobilityError):
    """A release would exceed a privacy-budget cap; nothing was charged."""


class ReleaseRefusedError(MobilityError):
    """A release request is not admissible (period not final, purpose not declared, ...)."""


class LedgerIntegrityError(MobilityError):
    """The ledger or a release directory does not match its hash chain."""
