"""Several operators over one population: market shares, people holding two operators' SIMs, each
operator's delivery holding its holders and nobody else, the people's flows, SIMs dropped abroad and the
population factors, all checked against the files, read independently of the generator's code."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mobility.cli import main
from mobility.errors import ConfigError
from mobility.reference import AGE_BANDS, plmn_countries
from mobility.synth import generate
from mobility.synth.clock import zone_of
from mobility.synth.operators import holding_probability
from mobility.synth.params import BEHAVIOURS
from synth_helpers import HOME, RUN, parse_instants, to_e164

SHARES = {"alpha": 0.7, "beta": 0.5}
MULTI_SIM = 0.1
DROP = 0.5
# A few thousand people over two months at one event a day: about 200k records over both operators.
MANY = dict(subscribers=3000, months=2, start="2024-12", home_country=HOME, seed=23, events_per_day=1.0,
            operators=SHARES, multi_sim_share=MULTI_SIM, sim_drop_abroad=DROP)
MIGRANTS = ("emigrant_long_term", "temporary_worker", "returning_migrant")


def _csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _band(age: int) -> str:
    for lo, hi in AGE_BANDS:
        if age >= lo and (hi is None or age <= hi):
            return f"{lo}-{hi}" if hi is not None else f"{lo}+"
    return "unknown"


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = tmp_path_factory.mktemp("operators") / "many"
    return root, generate(root, **MANY)


@pytest.fixture(scope="module")
def people(many) -> pd.DataFrame:
    frame = _csv(many[0] / "truth/people.csv")
    frame["held"] = frame["operators"].map(lambda v: set(v.split(";")) if v else set())
    return frame


def _owners(root, op) -> dict[str, str]:
    """E.164 number -> person id, from the operator's own truth."""
    subjects = _csv(root / op / "truth/subjects.csv")
    owner = {}
    for column in ("msisdn", "dual_msisdn", "new_msisdn"):
        owner.update({m: p for m, p in zip(subjects[column], subjects["person_id"]) if m})
    return owner


@pytest.fixture(scope="module")
def records(many):
    """Each operator's clean CDR rows with their E.164 number, serving country and presence date."""
    root, _ = many
    plmns = plmn_countries()
    out = {}
    for op in SHARES:
        cdr = pd.concat([_csv(p) for p in sorted((root / op / "cdr").glob("*.csv.gz"))], ignore_index=True)
        cdr["instant"] = parse_instants(cdr["event_time"])
        cdr["e164"] = cdr["msisdn"].map({m: to_e164(m) for m in cdr["msisdn"].unique()})
        cdr = cdr[cdr["instant"].notna() & cdr["e164"].notna()].copy()
        cdr["country"] = np.where(cdr["visited_plmn"] != "", cdr["visited_plmn"].map(plmns), HOME)
        cdr = cdr[cdr["country"].notna()].copy()
        parts = []
        for country, rows in cdr.groupby("country"):  # a presence day runs 07:00 to 07:00 where the person is
            local = rows["instant"].dt.tz_convert(zone_of(country)).dt.tz_localize(None)
            parts.append((local - pd.Timedelta(hours=7)).dt.date.rename("date"))
        cdr["date"] = pd.concat(parts)
        cdr["person_id"] = cdr["e164"].map(_owners(root, op))
        out[op] = cdr
    return out


def test_achieved_market_share_is_close_to_the_parameter(many, people):
    root, summary = many
    eligible = people[people["behaviour"] != "inbound_roamer"]
    for op, share in SHARES.items():
        achieved = eligible["held"].map(lambda held, op=op: op in held).mean()
        assert abs(achieved - share) < 0.035, (op, achieved)
        holders = _csv(root / f"truth/operators/{op}/holders.csv")
        assert set(holders["person_id"]) == set(people.loc[people["held"].map(lambda h, op=op: op in h), "person_id"])
        strata = _csv(root / f"truth/operators/{op}/market_share.csv")
        national = strata["holders"].astype(int).sum() / strata["population"].astype(int).sum()
        assert abs(national - share) < 0.035
        assert summary.operators[op].operator["resident_share"] == pytest.approx(national, abs=1e-6)


def test_people_hold_two_operators_sims_or_none_independently(people):
    eligible = people[people["behaviour"] != "inbound_roamer"]
    both = eligible["held"].map(lambda h: h == set(SHARES)).mean()
    none = eligible["held"].map(lambda h: not h).mean()
    product = np.prod(list(SHARES.values()))
    assert abs(both - product) < 0.04, both
    assert abs(none - np.prod([1 - s for s in SHARES.values()])) < 0.04, none


def test_each_operator_delivers_its_holders_and_nobody_else(many, people, records):
    root, _ = many
    numbers = {}
    for op in SHARES:
        holders = _csv(root / f"truth/operators/{op}/holders.csv")
        subjects = _csv(root / op / "truth/subjects.csv")
        assert set(subjects["person_id"]) == set(holders["person_id"])
        owner = _owners(root, op)
        numbers[op] = set(owner)
        # The register lists every home SIM of every holder on a home SIM, and no one else's.
        registered = _csv(root / op / "subscribers/subscribers.csv")["msisdn"].map(to_e164)
        assert registered.map(owner).notna().all()
        home_holders = set(holders.loc[holders["foreign_sim"] == "false", "person_id"])
        assert set(registered.map(owner)) == home_holders
        # Every clean record is a holder's, and nearly every holder on a home SIM has records.
        cdr = records[op]
        assert cdr["person_id"].notna().all()
        seen = set(cdr["person_id"])
        assert seen <= set(holders["person_id"])
        assert len(seen & home_holders) > 0.95 * len(home_holders)
        roamers = set(holders.loc[holders["foreign_sim"] == "true", "person_id"])
        assert roamers and len(seen & roamers) > 0.5 * len(roamers)
        others = set(people.loc[~people["held"].map(lambda h, op=op: op in h), "person_id"])
        assert not seen & others
    home_numbers = [{n for n in numbers[op] if n.startswith("+63")} for op in SHARES]
    assert not home_numbers[0] & home_numbers[1], "a number belongs to one operator only"


def test_operators_have_their_own_numbers_and_cells(many):
    root, _ = many
    subjects = {op: _csv(root / op / "truth/subjects.csv").set_index("person_id") for op in SHARES}
    both = subjects["alpha"].index.intersection(subjects["beta"].index)
    assert len(both) > 100
    home = subjects["alpha"].loc[both, "msisdn"].str.startswith("+63")
    mine = subjects["alpha"].loc[both, "msisdn"][home]
    theirs = subjects["beta"].loc[both, "msisdn"][home]
    assert (mine != theirs).all()
    roaming = ~home  # an inbound roamer keeps their own foreign number on every network
    assert (subjects["alpha"].loc[both, "msisdn"][roaming] == subjects["beta"].loc[both, "msisdn"][roaming]).all()
    cells = {op: _csv(root / op / "cells/cells.csv") for op in SHARES}
    prefixes = {op: set(c["cell_id"].str[:7]) for op, c in cells.items()}
    assert all(len(p) == 1 for p in prefixes.values()) and prefixes["alpha"] != prefixes["beta"]
    assert (cells["alpha"]["cell_id"].str[7:] == cells["beta"]["cell_id"].str[7:]).all()
    assert (cells["alpha"][["latitude", "longitude"]] == cells["beta"][["latitude", "longitude"]]).all().all()


def test_population_flows_count_people_whose_long_term_residence_changed(many, people):
    root, _ = many
    changes = _csv(root / "truth/residence_changes.csv")
    assert "msisdn" not in changes.columns
    flows = _csv(root / "truth/population_flows.csv")
    long_term = changes[changes["kind"] == "long_term"].merge(people, on="person_id")
    assert flows["people"].astype(int).sum() == len(long_term) > 0
    assert long_term["crossing_date"].str[:4].nunique() == 2, "crossings on both sides of a new year"
    long_term["crossing_month"] = long_term["crossing_date"].str[:7]
    long_term["age_band"] = [_band(int(d[:4]) - int(y)) for d, y in zip(long_term["crossing_date"],
                                                                         long_term["birth_year"])]
    keys = ["crossing_month", "direction", "from_country", "to_country", "sex", "age_band"]
    expected = long_term.groupby(keys).agg(people=("person_id", "size"),
                                           decidable=("decidable", lambda d: int((d == "true").sum())))
    got = flows.set_index(keys)[["people", "decidable"]].astype(int).sort_index()
    pd.testing.assert_frame_equal(got, expected.sort_index(), check_dtype=False)
    assert set(flows["direction"]) == {"departure", "arrival"}
    # People, not SIMs: the flows hold movers no operator sees, and count movers of two operators once.
    assert (long_term["operators"] == "").any() and (long_term["held"].map(len) == 2).any()


def test_each_operator_truth_is_the_population_truth_of_its_holders(many):
    root, _ = many
    shared = _csv(root / "truth/residence_changes.csv")
    daily = pd.read_parquet(root / "truth/daily_country.parquet").astype(str)
    for op in SHARES:
        mine = _csv(root / op / "truth/residence_changes.csv")
        holders = set(_csv(root / f"truth/operators/{op}/holders.csv")["person_id"])
        expected = shared[shared["person_id"].isin(holders)].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine.drop(columns="msisdn"), expected)
        theirs = pd.read_parquet(root / op / "truth/daily_country.parquet").astype(str)
        assert theirs.drop(columns="msisdn").reset_index(drop=True).equals(
            daily[daily["person_id"].isin(holders)].reset_index(drop=True))


def test_sim_droppers_have_no_events_from_their_drop_day(many, people, records):
    root, _ = many
    dropped = people[people["sim_drop_date"] != ""]
    emigrants = people[people["behaviour"] == "emigrant_long_term"]
    assert set(dropped["behaviour"]) == {"emigrant_long_term"}
    assert 0.3 < len(dropped) / len(emigrants) < 0.7  # DROP of them, those dropping within the data
    roamed_first = 0
    for op in SHARES:
        faults = _csv(root / op / "truth/faults.csv")
        listed = faults[faults["kind"] == "sim_drop_abroad"].set_index("person_id")["date"]
        holders = set(_csv(root / f"truth/operators/{op}/holders.csv")["person_id"])
        assert listed.to_dict() == dropped[dropped["person_id"].isin(holders)].set_index("person_id")[
            "sim_drop_date"].to_dict()
        cdr = records[op]
        for person, day in listed.items():
            mine = cdr[cdr["person_id"] == person]
            assert (mine["date"] < pd.Timestamp(day).date()).all(), person
            roamed_first += int((mine["country"] != HOME).any())
        assert json.loads((root / op / "synth.json").read_text())["faults"]["person"]["sim_drop_abroad"] == len(listed)
    assert roamed_first > 0, "droppers roam for a few nights before they go silent"


def test_market_share_and_population_factors_match_the_people(many, people):
    root, summary = many
    residents = people[people["resident_at_start"] == HOME].copy()
    reference_year = int(MANY["start"][:4])  # the reference date is the data's first day
    residents["age_band"] = [_band(reference_year - int(y)) for y in residents["birth_year"]]
    strata = ["region", "sex", "age_band"]
    for op in SHARES:
        residents["holds"] = residents["held"].map(lambda h, op=op: op in h)
        expected = residents.groupby(strata).agg(population=("holds", "size"), holders=("holds", "sum"))
        truth = _csv(root / f"truth/operators/{op}/market_share.csv").set_index(strata)
        got = truth[["population", "holders"]].astype(int).sort_index()
        pd.testing.assert_frame_equal(got, expected.sort_index(), check_dtype=False)
        share = truth["share"].astype(float)
        assert np.allclose(share, got["holders"] / got["population"], atol=1e-6)
        assert truth.index.get_level_values("region").str.match(r"^85[0-9a-f]{13}$").all()  # H3 res 5
        # The public factors: the same strata, with the share the model sets (everyone alike here).
        head = yaml.safe_load((root / f"population/{op}.yaml").read_text())
        assert set(head) == {"agreement_id", "reference_date", "source", "multi_sim_factor", "shares"}
        assert head["agreement_id"] == op and str(head["reference_date"]) == "2024-12-01"
        public = _csv(root / "population" / head["shares"]).set_index(strata)
        assert list(public.columns) == ["population", "share"] and public.index.equals(truth.index)
        assert (public["population"] == truth["population"]).all()
        assert np.allclose(public["share"].astype(float), SHARES[op])
        assert np.allclose(truth["expected"].astype(float), SHARES[op])
        assert (share == 0).any() and (share == 1).any(), "singleton strata: the draw achieves 0 or 1"
        # Multi-SIM factor: SIMs in use on the reference date per resident holder.
        holders = _csv(root / f"truth/operators/{op}/holders.csv")
        resident_holders = holders[holders["person_id"].isin(residents["person_id"])]
        factor = resident_holders["sims_at_reference"].astype(int).sum() / len(resident_holders)
        assert head["multi_sim_factor"] == pytest.approx(factor, abs=1e-6)
        multi = _csv(root / f"truth/operators/{op}/multi_sim.csv").set_index("scope")
        assert float(multi.loc["residents_at_reference", "multi_sim_factor"]) == pytest.approx(factor, abs=1e-6)
        assert summary.operators[op].operator["multi_sim_factor"] == pytest.approx(factor, abs=1e-6)


def test_multi_sim_share_sets_the_sims_per_holder(many):
    root, _ = many
    for op in SHARES:
        holders = _csv(root / f"truth/operators/{op}/holders.csv")
        home = holders[holders["foreign_sim"] == "false"]
        dual = (home["dual_sim"] == "true").mean()
        assert abs(dual - MULTI_SIM) < 0.03, dual
        subjects = _csv(root / op / "truth/subjects.csv")
        assert (subjects["dual_msisdn"] != "").sum() == (holders["dual_sim"] == "true").sum()
        multi = _csv(root / f"truth/operators/{op}/multi_sim.csv").set_index("scope")
        assert abs(float(multi.loc["residents_at_reference", "multi_sim_factor"]) - (1 + MULTI_SIM)) < 0.03
        period = home["sims_in_period"].astype(int).sum() / len(home)
        assert float(multi.loc["holders_in_period", "multi_sim_factor"]) == pytest.approx(period, abs=1e-6)


def test_migrants_hold_sims_at_the_ratio_given(tmp_path):
    share, ratio = 0.6, 0.4
    generate(tmp_path, **dict(MANY, subscribers=2500, months=1, events_per_day=0.2, operators={"solo": share},
                              migrant_share_ratio=ratio, region_resolution=3, sim_drop_abroad=0.0))
    people = _csv(tmp_path / "truth/people.csv")
    eligible = people[people["behaviour"] != "inbound_roamer"]
    holds = eligible["operators"] == "solo"
    migrant = eligible["behaviour"].isin(MIGRANTS)
    p_other = share * len(eligible) / ((~migrant).sum() + ratio * migrant.sum())
    assert abs(holds.mean() - share) < 0.035
    assert abs(holds[~migrant].mean() - p_other) < 0.035
    assert abs(holds[migrant].mean() - ratio * p_other) < 0.09
    assert people["region"].str.match(r"^83[0-9a-f]{13}$").all()  # H3 res 3
    # The public shares mix the two probabilities in each stratum's proportions of migrants.
    residents = people[people["resident_at_start"] == HOME].copy()
    residents["age_band"] = [_band(int(MANY["start"][:4]) - int(y)) for y in residents["birth_year"]]
    residents["p"] = np.where(residents["behaviour"].isin(MIGRANTS), ratio * p_other, p_other)
    expected = residents.groupby(["region", "sex", "age_band"])["p"].mean()
    public = pd.read_csv(tmp_path / "population/solo-shares.csv", keep_default_na=False,
                         dtype={"region": str}).set_index(["region", "sex", "age_band"])["share"]
    assert np.allclose(public.sort_index(), expected.sort_index(), atol=2e-6)
    assert (public < p_other - 1e-6).any(), "strata holding migrants have a lower share"
    assert json.loads((tmp_path / "synth.json").read_text())["parameters"]["migrant_share_ratio"] == ratio


def test_several_operators_give_the_same_bytes_per_seed(tmp_path):
    small = dict(MANY, subscribers=300, months=1, start="2024-01")
    generate(tmp_path / "one", **small)
    generate(tmp_path / "elsewhere" / "two", **small)
    generate(tmp_path / "three", **dict(small, seed=small["seed"] + 1))
    one, two, three = (_hashes(p) for p in (tmp_path / "one", tmp_path / "elsewhere" / "two", tmp_path / "three"))
    assert one == two
    assert {"alpha/cdr/part-2024-01.csv.gz", "beta/truth/subjects.csv", "truth/population_flows.csv",
            "population/alpha.yaml", "truth/operators/beta/holders.csv"} <= one.keys()
    assert one.keys() == three.keys()
    for rel in ("alpha/cdr/part-2024-01.csv.gz", "truth/people.csv", "population/beta-shares.csv"):
        assert one[rel] != three[rel]
    assert str(tmp_path) not in (tmp_path / "one" / "synth.json").read_text()


def test_a_default_run_writes_what_it_always_wrote(run):
    files = {p.relative_to(run.root).as_posix() for p in run.root.rglob("*") if p.is_file()}
    assert not any(f.startswith(("population/", "truth/operators/")) for f in files)
    assert not {"truth/people.csv", "truth/population_flows.csv"} & files
    meta = json.loads((run.root / "synth.json").read_text())
    assert not {"operator", "operators"} & meta.keys()
    assert set(meta["parameters"]) == {"subscribers", "months", "start", "home_country", "seed", "fault_rate",
                                       "events_per_day", "corridors", "behaviour_shares", "behaviours",
                                       "time_zone", "format"}
    assert "sim_drop_abroad" not in meta["faults"]["person"]
    assert "sim_drop_abroad" not in set(run.csv("truth/faults.csv")["kind"])


def test_new_options_leave_the_default_draws_alone(tmp_path):
    small = dict(RUN, subscribers=150, months=3)
    generate(tmp_path / "explicit", **small, operators=None, multi_sim_share=None, sim_drop_abroad=0.0,
             migrant_share_ratio=1.0, region_resolution=5)
    base = _hashes_of(generate(tmp_path / "base", **small))
    assert _hashes(tmp_path / "explicit") == _hashes(tmp_path / "base")
    dropped = _hashes_of(generate(tmp_path / "dropped", **small, sim_drop_abroad=1.0))
    for rel in ("cells/cells.csv", "subscribers/subscribers.csv", "truth/subjects.csv",
                "truth/daily_country.parquet", "truth/residence_changes.csv"):
        assert dropped[rel] == base[rel], rel
    assert dropped["cdr/part-2024-03.csv.gz"] != base["cdr/part-2024-03.csv.gz"]
    before, after = _csv(tmp_path / "base/truth/faults.csv"), _csv(tmp_path / "dropped/truth/faults.csv")
    # The same person-level faults, plus the drops (the records are redrawn: spillover nights may lose an event).
    kept = after[after["kind"] != "sim_drop_abroad"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept.drop(columns="events"), before.drop(columns="events"))
    assert (after["kind"] == "sim_drop_abroad").any()
    multi = _hashes_of(generate(tmp_path / "multi", **small, multi_sim_share=0.3))
    assert multi["cells/cells.csv"] == base["cells/cells.csv"]
    # The same people; more second SIMs, hence other numbers.
    numbers = ["msisdn", "dual_msisdn", "new_msisdn"]
    people, more = _csv(tmp_path / "base/truth/subjects.csv"), _csv(tmp_path / "multi/truth/subjects.csv")
    pd.testing.assert_frame_equal(more.drop(columns=numbers), people.drop(columns=numbers))
    assert (more["dual_msisdn"] != "").sum() > (people["dual_msisdn"] != "").sum()


def _hashes_of(summary) -> dict[str, str]:
    return {k: v for k, v in _hashes(summary.out_dir).items() if k != "synth.json"}


def test_the_command_writes_each_operator_in_the_chosen_format(tmp_path):
    flat, several = tmp_path / "flat", tmp_path / "several"
    common = ["--subscribers", "120", "--months", "1", "--seed", "3", "--format", "multimno"]
    done = CliRunner().invoke(main, ["synth", "--out", str(flat), *common])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(main, ["synth", "--out", str(several), *common, "--operator", "north=0.8",
                                     "--operator", "south=0.6", "--sim-drop-abroad", "0.5"])
    assert done.exit_code == 0, done.output
    meta = json.loads((several / "synth.json").read_text())
    assert meta["parameters"]["operators"] == {"north": 0.8, "south": 0.6}
    assert meta["parameters"]["sim_drop_abroad"] == 0.5
    layout = {p.relative_to(flat).parts[0] for p in flat.iterdir()}
    for op in ("north", "south"):
        assert {p.name for p in (several / op).iterdir()} == layout
        events = list((several / op / "mno_events").rglob("*.parquet"))
        assert events and not (several / op / "subscribers").exists()
        assert meta["operators"][op]["parameters"]["operator"] == op
    assert {p.name for p in several.iterdir()} == {"north", "south", "truth", "population", "synth.json"}


@pytest.mark.parametrize("args, message", [
    (["--operator", "a=1.5"], "at most 1"),
    (["--operator", "a=0"], "above 0"),
    (["--operator", "a=0.5", "--operator", "A=0.4"], "given twice"),
    (["--operator", "truth=0.5"], "reserved"),
    (["--operator", "a"], "ID=SHARE"),
    (["--operator", "a b=0.5"], "plain name"),
    (["--migrant-share-ratio", "2"], "needs operators"),
])
def test_the_command_refuses_bad_operator_options(tmp_path, args, message):
    done = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "x"), "--subscribers", "20", "--months", "1",
                                     *args])
    assert done.exit_code != 0 and message in done.output, done.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("options, message", [
    (dict(operators={}), "at least one"),
    (dict(operators={"a": 1.2}), "at most 1"),
    (dict(operators={"a": float("nan")}), "at most 1"),
    (dict(operators={"a/b": 0.5}), "plain name"),
    (dict(operators={"population": 0.5}), "reserved"),
    (dict(operators={"x": 0.5, "X": 0.4}), "distinct"),
    (dict(home_country="NPL", operators={f"op{i}": 0.2 for i in range(5)}), "networks are known"),
    (dict(multi_sim_share=1.5), "multi_sim_share"),
    (dict(sim_drop_abroad=-0.1), "sim_drop_abroad"),
    (dict(operators={"a": 0.5}, migrant_share_ratio=0.0), "positive"),
    (dict(operators={"a": 0.5}, region_resolution=16), "H3 resolution"),
])
def test_generate_refuses_bad_operator_options(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        generate(tmp_path, **{**RUN, "subscribers": 20, "months": 1, **options})
    assert not any(tmp_path.iterdir())


behaviour_mix = st.lists(st.sampled_from(range(len(BEHAVIOURS))), min_size=2, max_size=300)


@settings(max_examples=60, deadline=None)
@given(behaviour_mix, st.floats(0.01, 1.0), st.floats(0.05, 20.0))
def test_holding_probabilities_keep_the_market_share(behaviour, share, ratio):
    behaviour = np.array(behaviour)
    foreign = behaviour == BEHAVIOURS.index("inbound_roamer")
    p = holding_probability(behaviour, foreign, share, ratio)
    assert ((p >= 0) & (p <= 1)).all()
    assert np.allclose(p[foreign], share)
    if (~foreign).any():
        assert p[~foreign].mean() == pytest.approx(share, abs=1e-9)
    migrant = np.isin(behaviour, [BEHAVIOURS.index(b) for b in MIGRANTS]) & ~foreign
    other = ~foreign & ~migrant
    if migrant.any() and other.any():
        p_mig, p_other = p[migrant][0], p[other][0]
        assert np.allclose(p[migrant], p_mig) and np.allclose(p[other], p_other)
        if p_mig < 1 and p_other < 1:
            assert p_mig == pytest.approx(ratio * p_other)
        else:  # capped at 1: the other group takes up the rest, still in the ratio's direction
            assert (p_mig >= p_other) == (ratio >= 1) or p_mig == p_other
