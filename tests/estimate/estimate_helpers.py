"""Public factors files for the estimate tests: two H3 res-3 regions of the Philippines, shares that
differ by region, sex and age band. A plain module (tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import h3
import pandas as pd
import yaml

from agreement_helpers import make_agreement
from mobility.reference import AGE_BANDS, age_band_values

sys.path.append(str(Path(__file__).parents[1] / "publish"))
from publish_helpers import CELLS, COUNTRIES, HOME  # noqa: E402

MANILA = h3.latlng_to_cell(14.6, 121.0, 3)
CEBU = h3.latlng_to_cell(10.3, 123.9, 3)
BANDS = age_band_values(AGE_BANDS)[:-1]


def strata(base: float = 0.4) -> pd.DataFrame:
    """region, sex, age_band, population, share: every stratum a different share."""
    rows = []
    for r, region in enumerate((MANILA, CEBU)):
        for s, sex in enumerate(("F", "M", "X")):
            for a, band in enumerate(BANDS):
                population = 1000 * (1 + r) + 100 * a + (0 if sex != "X" else -900 * (1 + r))
                rows.append((region, sex, band, population, round(base + 0.05 * r + 0.03 * s + 0.02 * a, 4)))
    return pd.DataFrame(rows, columns=["region", "sex", "age_band", "population", "share"])


def write_factors(folder: Path, agreement_id: str = "test-phl", frame: pd.DataFrame | None = None,
                  multi_sim: float = 1.25, **overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (strata() if frame is None else frame).to_csv(folder / f"{agreement_id}-shares.csv", index=False)
    head = {"agreement_id": agreement_id, "reference_date": "2024-01-01",
            "source": "synthetic shares for the tests", "multi_sim_factor": multi_sim,
            "shares": f"{agreement_id}-shares.csv", **overrides}
    path = folder / f"{agreement_id}.yaml"
    path.write_text(yaml.safe_dump(head))
    return path


def consistent_tables(period: str, by: tuple[str, ...], seed: int) -> dict[str, pd.DataFrame]:
    """Exact flows tables that add up as a real month's do: every departure of the international table has
    one origin cell, every arrival one destination cell."""
    import random

    from mobility.aggregate import domains as D

    rng = random.Random(f"{period}-{seed}")
    international = D.international_domain(COUNTRIES, HOME, by)
    international["count"] = pd.Series([rng.randint(0, 40) for _ in range(len(international))], dtype="int64")
    tables = {"international": international}
    for name, key, side in (("emigrants_by_origin", D.ORIGIN_CELL, D.FROM),
                            ("immigrants_by_destination", D.DESTINATION_CELL, D.TO)):
        frame = D.cells_frame([*CELLS, D.UNKNOWN], key)
        where = [rng.randrange(len(frame)) for _ in range(int(international.loc[international[side] == HOME,
                                                                                  "count"].sum()))]
        frame["count"] = pd.Series([where.count(i) for i in range(len(frame))], dtype="int64")
        tables[name] = frame
    return tables


def release_with_factors(root: Path, monkeypatch, agreement_id: str = "test-phl", by: tuple[str, ...] = (),
                         period: str = "2024-05", seed: int = 3, factors: bool = True, base_share: float = 0.4,
                         multi_sim: float = 1.25, rho: float = 0.05):
    """``release_flows`` of one operator (its own agreement and lake under ``root``) on exact tables made in
    pandas (``read_flow_inputs`` replaced), its agreement naming a factors file; returns the result."""
    from mobility.aggregate import domains as D
    from mobility.aggregate.flows import FlowSpec
    from mobility.config import load_agreement
    from mobility.release import flows

    extra = {"population_factors": str(write_factors(root / "population", agreement_id, strata(base_share),
                                                     multi_sim))} if factors else {}
    path = make_agreement(root, agreement_id=agreement_id, countries=COUNTRIES, **extra)
    spec = FlowSpec(HOME, tuple(COUNTRIES), period, by, tuple(CELLS), D.AGE_BANDS)
    inputs = flows.FlowInputs(spec, consistent_tables(period, by, seed), {"residence_changes": 1},
                              dt.date(2026, 9, 30), 487)
    monkeypatch.setattr(flows, "read_flow_inputs", lambda *a, **k: inputs)
    return flows.release_flows(load_agreement(path), root / "lake", period, purpose="migration-statistics",
                               requested_by="estimate tests", rho=rho, by=list(by))
