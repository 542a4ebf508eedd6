"""Privacy budget: hash-chained ledger, zCDP accounting, OpenDP mechanisms and the release boundary."""

from mobility.privacy_budget.accountant import (
    bun_steinke_epsilon,
    compose,
    epsilon_to_rho,
    remaining,
    rho_to_epsilon,
    year_of,
)
from mobility.privacy_budget.audit import Problem, VerifyReport, export, show, verify
from mobility.privacy_budget.boundary import ReleaseRequest, ReleaseResult, publish
from mobility.privacy_budget.intervals import sum_error_bound_95
from mobility.privacy_budget.ledger import ChargeRequest, Ledger, LedgerEntry, release_entries
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE, plan_noise
from mobility.privacy_budget.stored import StoredRelease, open_release

__all__ = [
    "ChargeRequest", "DISCRETE_GAUSSIAN", "DISCRETE_LAPLACE", "Ledger", "LedgerEntry", "Problem",
    "ReleaseRequest", "ReleaseResult", "StoredRelease", "VerifyReport", "bun_steinke_epsilon", "compose",
    "epsilon_to_rho", "export", "open_release", "plan_noise", "publish", "release_entries", "remaining",
    "rho_to_epsilon", "show", "sum_error_bound_95", "verify", "year_of",
]
