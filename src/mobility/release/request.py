"""What every release request shares, checked before any data is read: period, purpose, budget,
breakdowns and the release id. A refusal here charges nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import NoReturn

from mobility.aggregate import domains as D
from mobility.config import Agreement
from mobility.errors import ReleaseRefusedError
from mobility.privacy_budget.ledger import canonical_json
from mobility.privacy_budget.mechanisms import Budget

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def refuse(message: str, hint: str | None = None) -> NoReturn:
    raise ReleaseRefusedError(f"{message}; nothing was charged", hint=hint)


def parse_by(by: str | Sequence[str] | None, allowed: Sequence[str] = D.BY_COLUMNS) -> tuple[str, ...]:
    """``"sex,age_band"`` (or a list) -> the breakdowns in their fixed key order (those ``allowed``)."""
    items = [b.strip() for b in (by.split(",") if isinstance(by, str) else (by or ())) if b and b.strip()]
    unknown = sorted(set(items) - set(allowed))
    if unknown:
        refuse(f"unknown breakdown(s) {unknown} in --by", hint=f"use a comma list of {', '.join(allowed)}")
    return tuple(b for b in allowed if b in items)


def check_request(agreement: Agreement, period: str, purpose: str, epsilon: float | None,
                  rho: float | None) -> Budget:
    """The period's form, a purpose the agreement declares and exactly one positive budget."""
    if not _PERIOD.match(str(period)):
        refuse(f"period {period!r} is not a month in the form YYYY-MM")
    if agreement.purpose(purpose) is None:
        declared = ", ".join(p.id for p in agreement.purposes)
        refuse(f"purpose {purpose!r} is not declared in agreement {agreement.agreement_id}",
               hint=f"use one of the declared purposes: {declared}")
    try:
        return Budget(epsilon, rho)
    except ValueError as exc:
        refuse(str(exc), hint="request epsilon > 0 or rho > 0")


def release_id_for(kind: str, agreement_id: str, period: str, purpose: str, tables: Sequence[str],
                   by: Sequence[str], budget: Budget) -> str:
    """Same request, same id: a retry finds the stored release (or its refusal) instead of new noise."""
    body = {"agreement_id": agreement_id, "period": period, "purpose": purpose, "tables": list(tables),
            "by": list(by), "budget": budget.as_dict()}
    digest = hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()[:10]
    return f"{kind}-{agreement_id}-{period}-{digest}"
