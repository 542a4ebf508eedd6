"""Privacy budget: hash-chained ledger, zCDP accounting, OpenDP mechanisms and the release boundary."""

from mobility.privacy_budget.accountant import (
    bun_steinke_epsilon, compose, epsilon_to_rho, remaining, rho_to_epsilon, year_of,
)
from mobility.privacy_budget.audit import Problem, VerifyReport, export, show, verify
from mobility.privacy_budget.ledger import ChargeRequest, Ledger, LedgerEntry
from mobility.privacy_budget.mechanisms import DISCRETE_GAUSSIAN, DISCRETE_LAPLACE, plan_noise
from mobility.privacy_budget.boundary import ReleaseRequest, ReleaseResult, publish

__all__ = [
    "ChargeRequest", "DISCRETE_GAUSSIAN", "DISCRETE_LAPLACE", "Ledger", "LedgerEntry", "Problem",
    "ReleaseRequest", "ReleaseResult", "VerifyReport", "bun_steinke_epsilon", "compose", "epsilon_to_rho",
    "export", "plan_noise", "publish", "remaining", "rho_to_epsilon", "show", "verify", "year_of",
]
