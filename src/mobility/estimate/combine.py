"""One national table of people from several operators' flows releases of the same period and query.

Each operator keeps its own agreement, key, lake and ledger; each release is opened through its own
lake and checked against its own ledger (``open_release``) before anything is read from it. Every
release estimates the same population's flows (each expanded by its operator's share), so they are
pooled, not added: a person holding SIMs of two operators is in both. In a cell of stratum ``h``
(sex and age band, or region) where operator k counted ``c_k`` subscriptions, with multi-SIM factor
``m_k`` and share ``s_k``:

    people = sum_k (c_k / m_k) / sum_k s_k          (weights v_k = 1 / (m_k * sum_k s_k))

the people found holding a SIM of some operator, over the share of the population holding one,
each counted once per operator on both sides. A cell's value weights each release's consistent
counts; its interval is the exact 95% interval of the same weighted sum of the noisy measurements
(every operator's noise is independent; ``intervals.half_width_95``), widened to include it. A
national total is that weighted sum of the noisy measurements itself (unbiased; at least 0) with
its exact interval. No
noise is drawn and nothing is charged: this reads published releases only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mobility.errors import InputContractError
from mobility.estimate.people import HIGH, LOW, NOISY, PEOPLE, SHARE, interval_of_weighted, people_table
from mobility.lake import Lake
from mobility.privacy_budget.intervals import Term
from mobility.privacy_budget.ledger import MANIFEST
from mobility.privacy_budget.stored import StoredRelease, open_release

FORMAT = "mobility-combined-estimate/1"
TABLES = ("international", "emigrants_by_origin", "immigrants_by_destination")
TOTAL_SIDES = {"emigration": "from_country", "immigration": "to_country"}
# what must agree between the releases combined (query fields, as the manifest records them)
SAME_QUERY = ("statistic", "period", "home_country", "countries", "by", "tables", "domain_sizes")


@dataclass
class Combined:
    out: Path
    tables: dict[str, pd.DataFrame]
    manifest: dict
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"combined estimate of {len(self.manifest['inputs'])} operators, period {self.manifest['period']}: "
                 f"{self.out}"]
        for row in self.tables["totals_people"].itertuples(index=False):
            lines.append(f"  national {row.total} in people: {row.people:,} "
                         f"(95% interval {row.low_95:,} to {row.high_95:,})")
        lines.extend(f"  {name}: {self.out / (name + '.csv')}" for name in self.tables)
        return "\n".join(lines)


def _release_of(path: Path) -> StoredRelease:
    """A release directory ``LAKE/releases/RELEASE_ID`` opened through its lake, checked against its ledger."""
    path = Path(path)
    if path.parent.name != "releases":
        raise InputContractError("not a release directory (expected LAKE/releases/RELEASE_ID)", where=str(path),
                                 hint="pass each operator's release folder, e.g. /lakes/op-a/releases/flows-...")
    return open_release(Lake(path.parent.parent), path.name, verify=True)


def _check_same(releases: list[StoredRelease]) -> None:
    first = releases[0]
    for other in releases[1:]:
        differs = [k for k in SAME_QUERY if (first.manifest.get("query") or {}).get(k)
                   != (other.manifest.get("query") or {}).get(k)]
        if first.manifest.get("period") != other.manifest.get("period"):
            differs.insert(0, "period")
        if differs:
            fields = ", ".join(dict.fromkeys(differs))
            raise InputContractError(
                f"releases {first.release_id!r} and {other.release_id!r} differ in {fields}: only releases of the "
                "same period, statistic and public domains can be combined", where=str(other.path),
                hint="release each operator's flows for the same period with the same --by and the same country list "
                     "and cells, then combine those; nothing was written")
    agreements = Counter(r.manifest.get("agreement_id") for r in releases)
    repeated = [a for a, n in agreements.items() if n > 1]
    if repeated:
        raise InputContractError(f"agreement(s) {repeated} appear more than once: one release per operator",
                                 where=str(releases[0].path), hint="pass one release per operator; nothing was written")
    for r in releases:
        missing = [people_table(t) for t in (*TABLES, "totals") if people_table(t) not in r.manifest["tables"]]
        if missing:
            raise InputContractError(
                f"release {r.release_id!r} carries no population estimates ({', '.join(missing)} missing)",
                where=str(r.path / MANIFEST),
                hint=f"set population_factors in agreement {r.manifest.get('agreement_id')} and publish its flows "
                     "under a new release id; nothing was written")


def _keys(manifest: dict, table: str) -> list[str]:
    return list(manifest["tables"][people_table(table)]["derived"]["key_columns"])


def _terms(release: StoredRelease, table: str) -> list[Term]:
    info = release.manifest["tables"][f"{table}_noisy"]
    return [Term(1, release.manifest["mechanism"], float(info["noise_scale"]), 1)]


def _pooled_weights(releases: list[StoredRelease], table: str) -> list[pd.Series]:
    """v_k per cell of ``table`` for every release k (aligned on the first release's cells)."""
    shares = [r.tables[people_table(table)][SHARE].astype(float).reset_index(drop=True) for r in releases]
    total_share = sum(shares)
    return [1.0 / (float(_factors(r)["multi_sim_factor"]) * total_share) for r in releases]


def _factors(release: StoredRelease) -> dict:
    return release.manifest["tables"][people_table("totals")]["derived"]["factors"]


def _aligned(releases: list[StoredRelease], table: str, keys: list[str]) -> None:
    first = releases[0].tables[people_table(table)][keys].reset_index(drop=True)
    for r in releases[1:]:
        for name in (people_table(table), table, f"{table}_noisy"):
            if not r.tables[name][keys].reset_index(drop=True).equals(first):
                raise InputContractError(f"release {r.release_id!r}: table {name} has other cells than "
                                         f"{releases[0].release_id!r}'s", where=str(r.path),
                                         hint="combine releases of the same public domains; nothing was written")


def _interval(center: float, weights: list[pd.Series], terms: list[list[Term]], rows) -> tuple[int, int]:
    """The interval of the pooled weighted sum over ``rows``: every operator's cells, each with its own noise."""
    return interval_of_weighted(center, ((value, ts) for w, ts in zip(weights, terms) for value in w[rows]))


def _combine_table(releases: list[StoredRelease], table: str) -> pd.DataFrame:
    keys = _keys(releases[0].manifest, table)
    _aligned(releases, table, keys)
    weights = _pooled_weights(releases, table)
    terms = [_terms(r, table) for r in releases]
    counts = [r.tables[table]["count"].astype(float).reset_index(drop=True) for r in releases]
    noisy = [r.tables[f"{table}_noisy"][NOISY].astype(float).reset_index(drop=True) for r in releases]
    out = releases[0].tables[people_table(table)][keys].reset_index(drop=True).copy()
    point = sum(w * c for w, c in zip(weights, counts))
    center = sum(w * n for w, n in zip(weights, noisy))
    lows, highs = [], []
    for i in range(len(out)):
        low, high = _interval(float(center[i]), weights, terms, [i])
        lows.append(min(low, round(point[i])))
        highs.append(max(high, round(point[i])))
    out[PEOPLE] = point.round().astype("int64")
    out[LOW] = pd.Series(lows, dtype="int64")
    out[HIGH] = pd.Series(highs, dtype="int64")
    return out


def _combine_totals(releases: list[StoredRelease], home: str) -> pd.DataFrame:
    table = "international"
    keys = _keys(releases[0].manifest, table)
    weights = _pooled_weights(releases, table)
    terms = [_terms(r, table) for r in releases]
    cells = releases[0].tables[table][keys].reset_index(drop=True)
    rows = []
    for total, side in TOTAL_SIDES.items():
        part = list(cells.index[cells[side] == home])
        # the weighted sum of the noisy cells: unbiased, where a sum of consistent cells near 0 is not
        center = sum(float((w[part] * r.tables[f"{table}_noisy"][NOISY].reset_index(drop=True)[part]).sum())
                     for w, r in zip(weights, releases))
        low, high = _interval(center, weights, terms, part)
        rows.append({"total": total, PEOPLE: max(round(center), 0), LOW: int(low), HIGH: int(high)})
    return pd.DataFrame(rows)


def combine(release_dirs: list[str | Path], out: str | Path) -> Combined:
    """Pool the people estimates of several operators' flows releases into one national table in ``out``."""
    out = Path(out)
    if len(release_dirs) < 2:
        raise InputContractError("give at least two releases to combine", where="--release",
                                 hint="one flows release per operator, each under its own lake")
    if out.exists() and any(out.iterdir()):
        raise InputContractError("the output folder exists and is not empty", where=str(out),
                                 hint="choose a new folder; nothing was written")
    releases = [_release_of(Path(p)) for p in release_dirs]
    _check_same(releases)
    home = str(releases[0].manifest["query"]["home_country"])
    tables = {people_table(t): _combine_table(releases, t) for t in TABLES}
    tables[people_table("totals")] = _combine_totals(releases, home)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
        files[f"{name}.csv"] = hashlib.sha256((out / f"{name}.csv").read_bytes()).hexdigest()
    rhos = [float(r.manifest["privacy"]["rho"]) for r in releases]
    manifest = {
        "format": FORMAT, "period": releases[0].manifest["period"], "home_country": home,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "statistic": "people whose usual residence changed (12/16-month rule), pooled over operators",
        "method": "people = sum_k (c_k / m_k) / sum_k s_k per cell: each operator's consistent count c_k, its "
                  "multi-SIM factor m_k and its share s_k of the cell's stratum; interval: the exact 95% interval "
                  "of the same weighted sum of the operators' noisy measurements (independent noise), widened to "
                  "include the estimate",
        "inputs": [{"release_id": r.release_id, "lake": str(r.path.parent.parent),
                    "agreement_id": r.manifest.get("agreement_id"),
                    "manifest_sha256": hashlib.sha256((r.path / MANIFEST).read_bytes()).hexdigest(),
                    "verified_against_ledger": True, "factors": _factors(r), "rho": float(r.manifest["privacy"]["rho"]),
                    "privacy_unit": r.manifest.get("privacy_unit")} for r in releases],
        "privacy": {"cost": "none beyond the input releases (post-processing of published releases)",
                    "person_with_sims_of_several_operators": "is a unit of each release holding their SIMs: "
                    f"their loss is at most the sum of those releases' rho (here at most {sum(rhos):.6g})"},
        "tables": {name: {"key_columns": [c for c in frame.columns if c not in (PEOPLE, LOW, HIGH)],
                          "value_column": PEOPLE, "interval_columns": [LOW, HIGH], "confidence": 0.95}
                   for name, frame in tables.items()},
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Combined(out, tables, manifest)
