"""Configuration errors name the file, the field and what was expected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mobility.config import load_agreement
from mobility.errors import ConfigError

DEMO = Path(__file__).parents[1] / "src" / "mobility" / "data" / "demo-phl-2026.yaml"


def _write(tmp_path: Path, data: dict, name: str = "demo-phl-2026.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_shipped_agreement_loads():
    agreement = load_agreement(DEMO)
    assert agreement.home_country == "PHL" and agreement.home_region == "PH"
    assert agreement.purpose("migration-statistics") is not None


def test_the_example_agreement_under_conf_is_the_one_the_package_ships():
    # conf/ is what an installation mounts (the jobs, the DAG, the Kubernetes manifests name it);
    # the package's copy is what `mobility demo` and a plain pip install use: they must not drift.
    example = Path(__file__).parents[1] / "conf" / "agreements" / "demo-phl-2026.yaml"
    assert example.read_bytes() == DEMO.read_bytes()
    # and the public population factors it names resolve, from either place, to the files the package ships
    shipped = DEMO.parents[1] / "population" / "demo-phl-2026.yaml"
    for agreement in (example, DEMO):
        factors = load_agreement(agreement).population_factors
        assert factors is not None and factors.is_file() and factors.resolve() == shipped.resolve()


@pytest.mark.parametrize("field, value, expected", [
    ("home_country", "XYZ", "field 'home_country': 'XYZ' is not an ISO 3166-1 alpha-3 country code"),
    ("time_zone", "Mars/Olympus", "field 'time_zone': 'Mars/Olympus' is not an IANA time zone"),
    ("retention_days", 5, "field 'retention_days'"),
    ("countries", ["PHL", "SAU", "SAU"], "country list has duplicates"),
    ("countries", ["SAU"], "home_country PHL must be in 'countries'"),
    ("max_invalid_share", 1.5, "field 'max_invalid_share'"),
])
def test_invalid_field_is_named_with_the_file(tmp_path, record_property, field, value, expected):
    data = _demo()
    data[field] = value
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_agreement(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    _bad_input(record_property, "an agreement value out of range (time zone, country, share)", expected)


def test_key_must_name_exactly_one_source_and_never_hold_the_key(tmp_path):
    data = _demo()
    data["key"] = {"env": "MOBILITY_KEY_X", "file": "/tmp/k", "key_id": "k1"}
    with pytest.raises(ConfigError, match="exactly one of 'env'"):
        load_agreement(_write(tmp_path, data))
    data["key"] = {"value": "00" * 32, "key_id": "k1"}
    with pytest.raises(ConfigError, match="field 'key.value'"):
        load_agreement(_write(tmp_path, data))


def test_budget_caps_must_be_positive_and_consistent(tmp_path):
    data = _demo()
    data["budget"] = {"population": "p", "rho_per_data_month": 5.0, "rho_lifetime": 1.0}
    with pytest.raises(ConfigError, match="rho_per_data_month cannot exceed rho_lifetime"):
        load_agreement(_write(tmp_path, data))
    data["budget"] = {"population": "p", "rho_per_data_month": -1, "rho_lifetime": 1.0}
    with pytest.raises(ConfigError, match="field 'budget.rho_per_data_month'"):
        load_agreement(_write(tmp_path, data))
    data["budget"] = {"rho_per_data_month": 1.0, "rho_lifetime": 1.0}
    with pytest.raises(ConfigError, match="field 'budget.population'"):
        load_agreement(_write(tmp_path, data))


def test_the_flows_split_is_a_share_strictly_inside_the_release(tmp_path):
    from mobility.aggregate.flows import flow_shares

    data = _demo()
    assert load_agreement(_write(tmp_path, data)).budget.flows_subnational_share == 0.5
    data["budget"]["flows_subnational_share"] = 0.7
    shares = flow_shares(load_agreement(_write(tmp_path, data)).budget.flows_subnational_share)
    assert shares == {"international": pytest.approx(0.3), "subnational": 0.7}
    data["budget"]["flows_subnational_share"] = 1.0  # nothing left for the international table
    with pytest.raises(ConfigError, match="field 'budget.flows_subnational_share'"):
        load_agreement(_write(tmp_path, data))


def test_the_old_per_year_cap_is_refused_with_what_replaced_it(tmp_path):
    data = _demo()
    data["budget"] = {"rho_per_year": 2.0, "rho_lifetime": 10.0}
    with pytest.raises(ConfigError, match=r"rho_per_year was replaced by rho_per_data_month.*'population'"):
        load_agreement(_write(tmp_path, data))


def test_agreement_records_its_file_digest_and_witness(tmp_path):
    import hashlib

    data = _demo()
    data["ledger_witness"] = "witness"
    path = _write(tmp_path, data)
    agreement = load_agreement(path)
    assert agreement.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert agreement.ledger_witness == (path.parent / "witness").resolve()


def test_missing_fields_and_unknown_fields_are_listed(tmp_path, record_property):
    data = _demo()
    del data["controllers"]
    data["colour"] = "blue"
    data["time_zon"] = data.pop("time_zone")  # a typo: an unknown key, and the real one missing
    message = str(pytest.raises(ConfigError, load_agreement, _write(tmp_path, data)).value)
    assert "field 'controllers': Field required" in message and "field 'colour'" in message
    assert "field 'time_zon'" in message and "field 'time_zone': Field required" in message
    _bad_input(record_property, "agreement YAML typos, unknown or missing keys",
               "field 'time_zon': ...; field 'time_zone': Field required")


def test_missing_file_bad_yaml_and_mismatched_name(tmp_path, record_property):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_agreement(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("agreement_id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_agreement(bad)
    with pytest.raises(ConfigError, match="rename the file to demo-phl-2026.yaml"):
        load_agreement(_write(tmp_path, _demo(), name="other.yaml"))
    _bad_input(record_property, "agreement file missing, not valid YAML or misnamed", "not valid YAML")


def _bad_input(record_property, kind: str, detail: str) -> None:
    """Record the row of the table "Bad input: what each kind gets" (docs/contracts.md) a test backs."""
    record_property("bad_input", json.dumps({"kind": kind, "outcome": "refused", "detail": detail}))


def test_unknown_agreement_id_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="MOBILITY_CONF"):
        load_agreement("no-such-agreement")
    monkeypatch.setenv("MOBILITY_CONF", str(tmp_path / "conf"))
    (tmp_path / "conf" / "agreements").mkdir(parents=True)
    _write(tmp_path / "conf" / "agreements", _demo())
    assert load_agreement("demo-phl-2026").agreement_id == "demo-phl-2026"
