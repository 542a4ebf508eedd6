"""Cheap monthly flows releases for the publishing tests: small exact tables on the public domains,
published through the real release boundary (ledger charge, OpenDP noise) without Spark."""

from __future__ import annotations

import random
from pathlib import Path

import h3
import pandas as pd

from agreement_helpers import make_agreement
from mobility.aggregate import domains as D
from mobility.aggregate.flows import GROUPS, SHARES, FlowSpec, flow_totals
from mobility.config import load_agreement
from mobility.privacy_budget.blocks import flow_data_months
from mobility.privacy_budget.boundary import ReleaseRequest, ReleaseResult, publish

HOME = "PHL"
COUNTRIES = ["PHL", "SAU", "USA"]
# three res-5 cells of the home country (Manila, Cebu, Davao); their exact position does not matter here
CELLS = sorted(h3.latlng_to_cell(lat, lng, 5) for lat, lng in ((14.6, 121.0), (10.3, 123.9), (7.1, 125.6)))
TABLE_KEYS = {"international": [D.FROM, D.TO], "emigrants_by_origin": [D.ORIGIN_CELL],
              "immigrants_by_destination": [D.DESTINATION_CELL]}


def agreement(tmp: Path):
    """The test agreement (id test-phl) restricted to COUNTRIES, and its file."""
    path = make_agreement(tmp, countries=COUNTRIES)
    return load_agreement(path), path


def exact_tables(period: str, by: tuple[str, ...] = (), seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = random.Random(f"{period}-{seed}")
    cells = [*CELLS, D.UNKNOWN]
    tables = {"international": D.international_domain(COUNTRIES, HOME, by),
              "emigrants_by_origin": D.cells_frame(cells, D.ORIGIN_CELL),
              "immigrants_by_destination": D.cells_frame(cells, D.DESTINATION_CELL)}
    for frame in tables.values():
        frame["count"] = pd.Series([rng.randint(0, 60) for _ in range(len(frame))], dtype="int64")
    return tables


def publish_month(lake: Path, agreement, period: str, by: tuple[str, ...] = (), rho: float | None = 0.02,
                  epsilon: float | None = None, release_id: str | None = None,
                  national_totals: bool = True) -> ReleaseResult:
    """One monthly flows release shaped like release_job's (same tables, keys and query fields);
    ``national_totals``: also its joint measurement of the cell tables, its shares and its totals
    (emigration, immigration), otherwise each table is measured alone and is its own total."""
    tables = exact_tables(period, by)
    query = {"statistic": "long-term residence changes (12/16-month rule) by crossing month",
             "period": period, "home_country": HOME, "countries": COUNTRIES, "by": list(by),
             "tables": {n: TABLE_KEYS[n] + (list(by) if n == "international" else []) for n in tables},
             "domain_sizes": {n: len(f) for n, f in tables.items()}}
    request = ReleaseRequest(
        release_id=release_id or f"flows-{agreement.agreement_id}-{period}", agreement_id=agreement.agreement_id,
        period=period, purpose="migration-statistics", requested_by="publishing tests", query=query,
        privacy_unit="subscriber (pseudonym): at most one long-term residence change per crossing month",
        rho=None if epsilon is not None else rho, epsilon=epsilon, max_contributions=1,
        data_months=tuple(flow_data_months(period)),
        **({"table_groups": GROUPS, "table_shares": SHARES,
            "totals": flow_totals(FlowSpec(HOME, tuple(COUNTRIES), period, by, tuple(CELLS)))}
           if national_totals else {}))
    return publish(lake, request, tables, agreement)


def months(year: int, skip: tuple[int, ...] = ()) -> list[str]:
    return [f"{year}-{m:02d}" for m in range(1, 13) if m not in skip]
