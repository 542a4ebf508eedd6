"""Population estimates from one operator's release: the public factors file, the weights, the people
tables a flows release carries, and their intervals (no Spark: releases go straight through the boundary)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from estimate_helpers import BANDS, CEBU, MANILA, release_with_factors, strata, write_factors
from mobility.errors import ConfigError
from mobility.reference import AGE_BANDS
from publish_helpers import CELLS, HOME, agreement


def _load(path: Path, agreement_id: str = "test-phl"):
    from mobility.estimate.factors import load_factors

    return load_factors(path, agreement_id, AGE_BANDS)


# ---- the factors file --------------------------------------------------------------------------------

def test_shares_are_population_weighted_over_the_margins_a_table_does_not_have(tmp_path):
    frame = strata()
    factors = _load(write_factors(tmp_path, frame=frame))
    assert factors.resolution == 3 and factors.multi_sim_factor == 1.25
    weighted = frame.assign(held=frame["population"] * frame["share"])

    def by_hand(rows):
        return rows["held"].sum() / rows["population"].sum()
    assert factors.share() == pytest.approx(by_hand(weighted))
    assert factors.share(sex="M") == pytest.approx(by_hand(weighted[weighted["sex"] == "M"]))
    assert factors.share(sex="U") == pytest.approx(factors.share())  # unknown sex: every sex
    f_25 = weighted[(weighted["sex"] == "F") & (weighted["age_band"] == "25-34")]
    assert factors.share(sex="F", age_band="25-34") == pytest.approx(by_hand(f_25))
    assert factors.share(age_band="unknown") == pytest.approx(factors.share())
    assert factors.share(region=CEBU) == pytest.approx(by_hand(weighted[weighted["region"] == CEBU]))
    assert factors.share(region=CEBU) != pytest.approx(factors.share(region=MANILA))
    assert factors.weight(0.5) == pytest.approx(1 / (1.25 * 0.5))


def test_a_stratum_without_population_takes_the_share_of_the_coarser_one(tmp_path):
    frame = strata()
    frame = frame[~((frame["sex"] == "X") & (frame["age_band"] == "65+"))]  # e.g. a synthetic population
    frame.loc[(frame["region"] == CEBU) & (frame["sex"] == "F"), "population"] = 0
    factors = _load(write_factors(tmp_path, frame=frame))
    assert factors.share(sex="X", age_band="65+") == pytest.approx(factors.share(sex="X"))
    assert factors.share(sex="F", age_band="25-34", region=CEBU) == pytest.approx(factors.share(sex="F",
                                                                                                 age_band="25-34"))
    assert factors.share(sex="F", region=CEBU) == pytest.approx(factors.share(sex="F"))
    assert factors.share(sex="M", region=CEBU) != pytest.approx(factors.share(sex="M"))


def test_release_cells_map_to_their_region_and_others_to_none(tmp_path):
    import h3

    factors = _load(write_factors(tmp_path))
    manila5 = h3.latlng_to_cell(14.6, 121.0, 5)
    assert factors.region_of(manila5) == MANILA
    assert factors.region_of(MANILA) == MANILA
    assert factors.region_of("UNKNOWN") is None
    assert factors.region_of(h3.latlng_to_cell(14.6, 121.0, 2)) is None  # coarser than the regions
    davao5 = h3.latlng_to_cell(7.1, 125.6, 5)
    assert factors.region_of(davao5) not in (MANILA, CEBU)
    assert factors.share(region=factors.region_of(davao5)) == pytest.approx(factors.share())  # not covered


def _broken(frame: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].astype(object)
    out.loc[row, column] = value
    return out


@pytest.mark.parametrize("change, says", [
    (lambda f: _broken(f, "share", 3, 0), "share"),
    (lambda f: _broken(f, "share", 3, 1.5), "share"),
    (lambda f: _broken(f, "population", 4, -1), "population"),
    (lambda f: _broken(f, "population", 4, "many"), "population"),
    (lambda f: _broken(f, "sex", 0, "U"), "sex"),
    (lambda f: _broken(f, "age_band", 0, "18-24"), "age_band"),
    (lambda f: _broken(f, "region", 0, "not-a-cell"), "region"),
    (lambda f: f.drop(columns=["share"]), "share"),
    (lambda f: pd.concat([f, f.head(1)]), "more than once"),
    (lambda f: f.assign(population=0), "no population"),
])
def test_a_bad_shares_file_is_refused_naming_the_file_field_and_line(tmp_path, change, says):
    path = write_factors(tmp_path, frame=change(strata()))
    with pytest.raises(ConfigError) as err:
        _load(path)
    assert says in str(err.value) and err.value.where.endswith("test-phl-shares.csv")


def test_mixed_resolutions_and_a_factors_file_of_another_agreement_are_refused(tmp_path):
    import h3

    frame = strata()
    frame.loc[frame["region"] == CEBU, "region"] = h3.latlng_to_cell(10.3, 123.9, 4)
    with pytest.raises(ConfigError, match="mix H3 resolutions"):
        _load(write_factors(tmp_path / "a", frame=frame))
    with pytest.raises(ConfigError, match="not 'test-phl'"):
        _load(write_factors(tmp_path / "b", agreement_id="other"), "test-phl")
    with pytest.raises(ConfigError, match="multi_sim_factor"):
        _load(write_factors(tmp_path / "c", multi_sim=0.5))
    with pytest.raises(ConfigError, match="not found"):
        _load(tmp_path / "missing.yaml")


# ---- the people tables of a release ------------------------------------------------------------------

def _release(tmp_path: Path, monkeypatch, by: tuple[str, ...] = (), factors: bool = True):
    result = release_with_factors(tmp_path, monkeypatch, by=by, factors=factors)
    return result, _load(tmp_path / "population" / "test-phl.yaml") if factors else None


@pytest.mark.parametrize("by", [(), ("sex", "age_band")], ids=["national", "sex-age"])
def test_a_release_carries_people_beside_subscriptions_and_verifies(tmp_path, monkeypatch, by):
    from mobility.privacy_budget import verify

    result, factors = _release(tmp_path, monkeypatch, by)
    tables = result.tables
    for name in ("international", "emigrants_by_origin", "immigrants_by_destination"):
        people, counts = tables[f"{name}_people"], tables[name]
        keys = [c for c in counts.columns if c not in ("count", "low_95", "high_95")]
        assert people[keys].equals(counts[keys])  # every cell of the public domain, in the same order
        weights = 1 / (factors.multi_sim_factor * people["share"])
        assert (people["people"] - counts["count"] * weights).abs().max() <= 0.5 + 1e-6
        assert (people["low_95"] <= people["people"]).all() and (people["people"] <= people["high_95"]).all()
        # the interval is the count's, scaled and rounded outwards
        assert (people["low_95"] <= counts["low_95"] * weights + 1e-6).all()
        assert (people["high_95"] >= counts["high_95"] * weights - 1e-6).all()
        assert (people["high_95"] - counts["high_95"] * weights < 1 + 1e-6).all()
        info = result.manifest["tables"][f"{name}_people"]
        assert info["role"] == "derived" and info["derived"]["factors"]["sha256"] == factors.sha256
    origin = tables["emigrants_by_origin_people"].set_index("origin_h3_cell")["share"]
    assert origin["UNKNOWN"] == pytest.approx(factors.share(), abs=1e-6)
    assert origin[CELLS[0]] == pytest.approx(factors.share(region=factors.region_of(CELLS[0])), abs=1e-6)
    international = tables["international_people"]
    assert international["share"].nunique() == (1 if not by else len(international[["sex", "age_band"]]
                                                                      .drop_duplicates()))
    assert verify(tmp_path / "lake").ok


def test_national_people_without_breakdown_are_the_release_totals_scaled(tmp_path, monkeypatch):
    result, factors = _release(tmp_path, monkeypatch)
    totals = result.tables["totals"].set_index("total")
    people = result.tables["totals_people"].set_index("total")
    w = 1 / (factors.multi_sim_factor * result.tables["international_people"]["share"].iloc[0])
    assert w == pytest.approx(1 / (factors.multi_sim_factor * factors.share()))
    for total in ("emigration", "immigration"):
        assert people.loc[total, "people"] == round(w * totals.loc[total, "count"])
        assert people.loc[total, "low_95"] == math.floor(w * totals.loc[total, "low_95"])
        assert people.loc[total, "high_95"] == math.ceil(w * totals.loc[total, "high_95"])


def test_national_people_by_sex_and_age_weigh_each_cell_and_bound_the_weighted_noise(tmp_path, monkeypatch):
    from mobility.estimate.people import weighted_interval
    from mobility.privacy_budget.intervals import Term, half_width_95

    result, factors = _release(tmp_path, monkeypatch, ("sex", "age_band"))
    international = result.tables["international_people"]
    consistent = result.tables["international"]
    people = result.tables["totals_people"].set_index("total")
    measured = result.tables["international_noisy"]
    info = result.manifest["tables"]["international_noisy"]
    terms = [Term(1, result.manifest["mechanism"], info["noise_scale"], 1)]
    for total, side in (("emigration", "from_country"), ("immigration", "to_country")):
        part = consistent[side] == HOME
        weights = 1 / (factors.multi_sim_factor * international.loc[part, "share"])
        center = float((measured.loc[part, "noisy_count"] * weights).sum())
        assert people.loc[total, "people"] == max(round(center), 0)  # unbiased: not the consistent cells' sum
        assert consistent.loc[part, "count"].sum() > 0
        low, high = weighted_interval(center, weights, terms)
        assert (people.loc[total, "low_95"], people.loc[total, "high_95"]) == (low, high)
        # the half-width is that of the weighted noise, wider than one weight's alone
        a = (high - low) / 2
        assert a >= half_width_95(terms) * float(weights.max())
        widest = [Term(float(weights.max()), t.mechanism, t.scale, int(part.sum())) for t in terms]
        assert a <= half_width_95(widest) + 1


def test_one_weight_gives_the_scaled_interval_of_the_sum_exactly():
    from mobility.estimate.people import weighted_interval
    from mobility.privacy_budget.intervals import Term, half_width_95

    terms = [Term(1, "discrete_gaussian", 7.5, 1)]
    a = half_width_95([Term(1, "discrete_gaussian", 7.5, 40)])
    weights = pd.Series([2.5] * 40)
    assert weighted_interval(1000.0, weights, terms) == (math.floor(1000 - 2.5 * a), math.ceil(1000 + 2.5 * a))
    assert weighted_interval(3.0, weights, terms)[0] == 0  # never below zero


def test_without_factors_a_release_has_no_people_tables(tmp_path, monkeypatch):
    result, _ = _release(tmp_path, monkeypatch, factors=False)
    assert not any(name.endswith("_people") for name in result.manifest["tables"])


def test_a_bad_factors_file_refuses_the_release_before_anything_is_charged(tmp_path, monkeypatch):
    from mobility.privacy_budget.ledger import Ledger

    (tmp_path / "population").mkdir()
    write_factors(tmp_path / "population", frame=strata().drop(columns=["population"]))
    import yaml

    from mobility.release import flows

    _, path = agreement(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["population_factors"] = str(tmp_path / "population" / "test-phl.yaml")
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(flows, "read_flow_inputs", lambda *a, **k: pytest.fail("read before the factors were checked"))
    from mobility.config import load_agreement

    with pytest.raises(ConfigError, match="population"):
        flows.release_flows(load_agreement(path), tmp_path / "lake", "2024-05", purpose="migration-statistics",
                            requested_by="t", rho=0.05)
    assert not (tmp_path / "lake" / "ledger").exists() or Ledger(tmp_path / "lake" / "ledger").read()[0] == []


def test_people_bands_are_the_agreements(tmp_path):
    assert len(BANDS) == 7 and _load(write_factors(tmp_path)).strata["age_band"].isin(BANDS).all()


@pytest.mark.parametrize("fmt", ["sdmx-csv", "csv"])
def test_exports_carry_subscriptions_and_people_under_their_own_measure_and_unit(tmp_path, monkeypatch, fmt):
    from mobility.publish.export import export_release, read_export, read_tidy

    result, _ = _release(tmp_path, monkeypatch, ("sex",))
    export_release(tmp_path / "lake", result.release_id, fmt, tmp_path / "out")
    record, tidy = read_tidy(tmp_path / "out", result.release_id)
    people = [n for n in record["tables"] if n.endswith("_people")]
    assert sorted(people) == sorted(f"{t}_people" for t in ("international", "emigrants_by_origin",
                                                             "immigrants_by_destination", "totals"))
    for name, frame in tidy.items():
        measure, unit, kind = (set(frame[c]) for c in ("MEASURE", "UNIT_MEASURE", "VALUE_KIND"))
        if name in people:
            assert (measure, unit, kind) == ({"LT_MIGR_POP"}, {"PS"}, {"POP_ESTIMATE"})
        else:
            assert measure == {"LT_MIGR"} and unit == {"SUBS"} and kind != {"POP_ESTIMATE"}
    back = read_export(tmp_path / "out", result.release_id)
    for name in people:
        assert back[name][["people", "low_95", "high_95"]].equals(
            result.tables[name][["people", "low_95", "high_95"]].reset_index(drop=True)), name
    totals = back["totals_people"].set_index("total")
    assert totals.loc["emigration", "people"] == result.tables["totals_people"].set_index("total").loc[
        "emigration", "people"]
