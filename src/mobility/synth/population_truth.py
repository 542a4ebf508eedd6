"""The population's truth when several operators serve it, and each operator's public population factors.

People, not SIMs: who each person is and which operators' SIMs they hold (``truth/people.csv``), where
they slept (``truth/daily_country.parquet``), their residence changes (``truth/residence_changes.csv``)
and the long-term flows of people by month, direction, countries, sex and age band
(``truth/population_flows.csv``). Per operator (``truth/operators/ID/``): its holders, the share of the
residents it reaches by region, sex and age band, and its SIMs per holder. Per operator again, the
factors a statistics office would publish (``population/ID.yaml`` and ``population/ID-shares.csv``).
No file here holds a phone number: numbers stay in each operator's own folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mobility.reference import AGE_BANDS, MAX_AGE, UNKNOWN_AGE, age_band_values
from mobility.synth.clock import PAD
from mobility.synth.params import BEHAVIOURS
from mobility.synth.truth import changes_table, day_labels, person_ids
from mobility.synth.world import People, World
from mobility.synth.writer import write_csv, write_parquet

REGION_RESOLUTION = 5  # H3 resolution of the regions of the population factors (about 250 km2 a cell)
STRATA = ("region", "sex", "age_band")
SHARE_DIGITS = 6


@dataclass(frozen=True)
class Holding:
    """Who holds one operator's SIMs (indices into the population), and how many of its SIMs each has."""

    operator: str
    share: float  # the market share asked for
    plmn: str
    person: np.ndarray  # population indices of the holders, sorted
    foreign: np.ndarray  # per holder: an inbound roamer on a foreign SIM, roaming on this network
    dual: np.ndarray  # per holder: carries a second SIM of the operator
    churn: np.ndarray  # per holder: changes number during the period
    at_reference: np.ndarray  # per holder: the operator's SIMs in use on the reference date
    in_period: np.ndarray  # per holder: the operator's SIM numbers used over the period
    resident_share: float  # holders among the residents on the reference date
    multi_sim_factor: float  # SIMs in use per resident holder on the reference date
    probability: np.ndarray  # per person of the population: the probability to hold the operator's SIM

    @classmethod
    def of(cls, people: People, world: World, keep: np.ndarray, share: float, plmn: str,
           probability: np.ndarray) -> Holding:
        sims = world.sims
        foreign = world.traj.foreign_sim.copy()
        dual, churn = sims.second_sim >= 0, sims.new_sim >= 0
        later = world.pop.behaviour == BEHAVIOURS.index("immigrant")  # their SIM starts on arrival
        at_reference = np.where(foreign | later, 0, 1 + dual).astype(np.int64)
        in_period = (1 + dual + churn).astype(np.int64)
        resident = residents(people)
        mine = resident[keep]
        held = int(mine.sum())
        return cls(world.operator or "", share, plmn, keep, foreign, dual, churn, at_reference, in_period,
                   held / max(int(resident.sum()), 1),
                   float(at_reference[mine].sum()) / held if held else 1.0, probability)

    def describe(self) -> dict[str, Any]:
        return {"id": self.operator, "market_share": self.share, "plmn": self.plmn, "holders": len(self.person),
                "resident_share": round(self.resident_share, SHARE_DIGITS),
                "multi_sim_factor": round(self.multi_sim_factor, SHARE_DIGITS)}


def residents(people: People) -> np.ndarray:
    """People whose usual residence is the home country on the reference date (the data's first day)."""
    traj, pop = people.traj, people.pop
    returning = pop.behaviour == BEHAVIOURS.index("returning_migrant")
    return np.where(returning, traj.destination, traj.origin) == 0


def age_bands(ages: np.ndarray) -> np.ndarray:
    """The project's public age bands (``mobility.reference.AGE_BANDS``) of ages in whole years."""
    out = np.full(len(ages), UNKNOWN_AGE, dtype=object)
    for (lo, hi), label in zip(AGE_BANDS, age_band_values(AGE_BANDS)):
        out[(ages >= lo) & (ages <= (MAX_AGE if hi is None else min(hi, MAX_AGE)))] = label
    return out


def regions(people: People, resolution: int) -> np.ndarray:
    """H3 cell of each person's home (the site of their night-time cell) at ``resolution``."""
    import h3

    home = people.pop.anchors[:, 0]
    sites = np.unique(home)
    cell = {int(s): h3.latlng_to_cell(float(people.cells.lonlat[s, 1]), float(people.cells.lonlat[s, 0]), resolution)
            for s in sites}
    return np.array([cell[int(s)] for s in home], dtype=object)


def _people_frame(people: People, holdings: list[Holding], resolution: int) -> pd.DataFrame:
    traj, pop, cal = people.traj, people.pop, people.cal
    n = len(pop)
    countries = np.array(traj.countries, dtype=object)
    returning = pop.behaviour == BEHAVIOURS.index("returning_migrant")
    held: list[list[str]] = [[] for _ in range(n)]
    for h in holdings:
        for p in h.person:
            held[int(p)].append(h.operator)
    drop = np.full(n, 10**6, dtype=np.int64)
    drop[people.drop_person] = people.drop_day
    return pd.DataFrame({
        "person_id": person_ids(n),
        "behaviour": np.array(BEHAVIOURS, dtype=object)[pop.behaviour],
        "home_country": countries[traj.origin],
        "resident_at_start": countries[np.where(returning, traj.destination, traj.origin)],
        "destination": np.where(traj.destination >= 0, countries[traj.destination], None),
        "sex": pop.sex,
        "birth_year": pop.birth_year.astype(np.int64),
        "region": regions(people, resolution),
        "operators": [";".join(sorted(ops)) or None for ops in held],
        "sim_drop_date": day_labels(cal, drop),
    })


def _table(frame: pd.DataFrame, types: dict[str, pa.DataType]) -> pa.Table:
    """The columns ``types`` of ``frame`` with those types; missing values (None or NaN) become nulls."""
    def values(column: pd.Series) -> list:
        return [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in column.tolist()]
    return pa.table({c: pa.array(values(frame[c]), types[c]) for c in types})


_PEOPLE_TYPES = {"person_id": pa.string(), "behaviour": pa.string(), "home_country": pa.string(),
                 "resident_at_start": pa.string(), "destination": pa.string(), "sex": pa.string(),
                 "birth_year": pa.int64(), "region": pa.string(), "operators": pa.string(),
                 "sim_drop_date": pa.string()}
_FLOW_KEYS = ("crossing_month", "direction", "from_country", "to_country", "sex", "age_band")
_FLOW_TYPES = {**{k: pa.string() for k in _FLOW_KEYS}, "people": pa.int64(), "decidable": pa.int64()}
_SHARE_TYPES = {"region": pa.string(), "sex": pa.string(), "age_band": pa.string(), "population": pa.int64(),
                "holders": pa.int64(), "share": pa.float64(), "expected": pa.float64()}
_PUBLIC_TYPES = {"region": pa.string(), "sex": pa.string(), "age_band": pa.string(), "population": pa.int64(),
                 "share": pa.float64()}  # the layout of conf/population/*-shares.csv
_HOLDER_TYPES = {"person_id": pa.string(), "foreign_sim": pa.bool_(), "dual_sim": pa.bool_(),
                 "sim_churn": pa.bool_(), "sims_at_reference": pa.int64(), "sims_in_period": pa.int64()}
_MULTI_TYPES = {"scope": pa.string(), "people": pa.int64(), "sims": pa.int64(), "multi_sim_factor": pa.float64()}


def population_flows(changes: pa.Table, people: pd.DataFrame) -> pa.Table:
    """People whose long-term residence changed, by crossing month, direction, countries, sex and age band
    (age reached in the crossing year, as the pipeline counts it)."""
    frame = changes.to_pandas()
    frame = frame[frame["kind"] == "long_term"].merge(people[["person_id", "sex", "birth_year"]], on="person_id")
    frame["crossing_month"] = frame["crossing_date"].str[:7]
    year = frame["crossing_date"].str[:4].astype(int).to_numpy()
    frame["age_band"] = age_bands(year - frame["birth_year"].to_numpy())
    flows = (frame.groupby(list(_FLOW_KEYS), sort=True)
             .agg(people=("person_id", "size"), decidable=("decidable", "sum")).reset_index())
    return _table(flows, _FLOW_TYPES)


def _band_order(bands: pd.Series) -> pd.Series:
    return bands.map({b: i for i, b in enumerate(age_band_values(AGE_BANDS))})


def market_share(people: pd.DataFrame, resident: np.ndarray, holding: Holding) -> pd.DataFrame:
    """Residents on the reference date, and those holding the operator's SIM, by region, sex and age band:
    ``share`` as achieved by the draw, ``expected`` as the model sets it (the mean holding probability)."""
    holds = np.zeros(len(people), dtype=bool)
    holds[holding.person] = True
    frame = people.loc[resident, list(STRATA)].assign(holds=holds[resident], p=holding.probability[resident])
    strata = frame.groupby(list(STRATA), sort=False).agg(population=("holds", "size"), holders=("holds", "sum"),
                                                         expected=("p", "mean"))
    strata = strata.reset_index()
    strata["share"] = (strata["holders"] / strata["population"]).round(SHARE_DIGITS)
    strata["expected"] = strata["expected"].round(SHARE_DIGITS)
    order = np.lexsort((_band_order(strata["age_band"]).to_numpy(), strata["sex"].to_numpy(),
                        strata["region"].to_numpy()))
    return strata.iloc[order].reset_index(drop=True)


def _holders(holding: Holding, ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"person_id": ids[holding.person], "foreign_sim": holding.foreign, "dual_sim": holding.dual,
                         "sim_churn": holding.churn, "sims_at_reference": holding.at_reference,
                         "sims_in_period": holding.in_period})


def _multi_sim(holding: Holding, resident: np.ndarray) -> pd.DataFrame:
    mine = resident[holding.person]
    home = ~holding.foreign
    rows = [("residents_at_reference", int(mine.sum()), int(holding.at_reference[mine].sum())),
            ("holders_in_period", int(home.sum()), int(holding.in_period[home].sum()))]
    return pd.DataFrame([(scope, n, sims, round(sims / n, SHARE_DIGITS) if n else 1.0) for scope, n, sims in rows],
                        columns=list(_MULTI_TYPES))


def _factors_yaml(holding: Holding, people: People, params: dict) -> str:
    op, resolution = holding.operator, params["region_resolution"]
    source = (f"synthetic: mobility synth (seed {params['seed']}, {params['subscribers']} people), the residents "
              f"on the reference date by H3 res-{resolution} cell of their home, sex and age band, and the share "
              f"of them expected to hold at least one SIM of operator {op} (as a survey without sampling error "
              "would measure it)")
    return "\n".join([
        f"# Public population factors of operator {op} (network {holding.plmn}), in the layout of conf/population/:",
        "# its share of the resident population by region, sex and age band on the reference date, and its SIMs",
        "# per person holding at least one (docs/synthetic.md, 'Population factors'). agreement_id is the",
        "# operator's id: set it to the id of the agreement whose releases these factors expand.",
        f"agreement_id: {json.dumps(op)}",
        f"reference_date: {people.cal.start.isoformat()}",
        f"source: {json.dumps(source)}",
        f"multi_sim_factor: {round(holding.multi_sim_factor, SHARE_DIGITS)!r}",
        f"shares: {json.dumps(op + '-shares.csv')}",
        "",
    ])


def clear(out: Path) -> None:
    """Files of an earlier run in the same folder that this layout would not overwrite: a default run's
    numbered truth, and the truth and factors of operators that may not be in this run."""
    stale = [out / "truth" / "subjects.csv", out / "truth" / "faults.csv",
             *sorted((out / "truth" / "operators").glob("*/*.csv")), *sorted((out / "population").glob("*.yaml")),
             *sorted((out / "population").glob("*-shares.csv"))]
    for path in stale:
        path.unlink(missing_ok=True)
    for folder in sorted((out / "truth" / "operators").glob("*")):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def write(people: People, holdings: list[Holding], out: Path, summary: Any, params: dict) -> None:
    """Write the population's truth and each operator's truth and factors; record them in ``summary``."""
    frame = _people_frame(people, holdings, params["region_resolution"])
    frame["age_band"] = age_bands(people.cal.start.year - frame["birth_year"].to_numpy())
    resident = residents(people)
    n, days = len(people.pop), people.cal.n_days
    person = np.repeat(np.arange(n, dtype=np.int32), days)
    changes = changes_table(people.traj, people.cal, frame["person_id"].to_numpy(), None)
    tables: dict[str, tuple[str, pa.Table]] = {
        "truth/people.csv": ("truth_people", _table(frame, _PEOPLE_TYPES)),
        "truth/daily_country.parquet": ("truth_daily_country", pa.table({
            "person_id": pa.DictionaryArray.from_arrays(person, pa.array(frame["person_id"], pa.string())),
            "date": pa.array(np.tile(people.cal.dates(), n)),
            "country": pa.DictionaryArray.from_arrays(
                people.traj.country[:, PAD:PAD + days].ravel().astype(np.int32),
                pa.array(people.traj.countries, pa.string()))})),
        "truth/residence_changes.csv": ("truth_residence_changes", changes),
        "truth/population_flows.csv": ("truth_population_flows", population_flows(changes, frame)),
    }
    texts: dict[str, str] = {}
    for h in holdings:
        strata = market_share(frame, resident, h)
        folder = f"truth/operators/{h.operator}"
        holders = _holders(h, frame["person_id"].to_numpy())
        tables[f"{folder}/holders.csv"] = ("truth_holders", _table(holders, _HOLDER_TYPES))
        tables[f"{folder}/market_share.csv"] = ("truth_market_share", _table(strata, _SHARE_TYPES))
        tables[f"{folder}/multi_sim.csv"] = ("truth_multi_sim", _table(_multi_sim(h, resident), _MULTI_TYPES))
        public = strata.drop(columns="share").rename(columns={"expected": "share"})
        tables[f"population/{h.operator}-shares.csv"] = ("population_shares", _table(public, _PUBLIC_TYPES))
        texts[f"population/{h.operator}.yaml"] = _factors_yaml(h, people, params)
    for rel, (key, table) in tables.items():
        writer = write_parquet if rel.endswith(".parquet") else write_csv
        summary.files.setdefault(key, []).append(rel)
        summary.rows[key] = summary.rows.get(key, 0) + writer(out / rel, table)
    for rel, text in texts.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
        summary.files.setdefault("population_factors", []).append(rel)
    counts = changes.to_pydict()
    for kind, direction, decidable in zip(counts["kind"], counts["direction"], counts["decidable"]):
        key = f"{kind}_{direction}" + ("" if decidable else "_undecidable")
        summary.residence_changes[key] = summary.residence_changes.get(key, 0) + 1
