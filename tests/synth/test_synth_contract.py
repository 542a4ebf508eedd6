"""The generated files follow the input contracts, and every injected fault is found where it was counted."""

from __future__ import annotations

import pandas as pd
import pycountry
import shapely

from mobility.reference import load_boundaries, plmn_countries
from mobility.schemas import CDR, CELLS, EVENT_TYPES, PAYMENTS, SUBSCRIBERS
from mobility.synth.params import CURRENCIES
from synth_helpers import HOME, ZONE, parse_instants, to_e164


def _read_any(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _country(iso3: str):
    gdf = load_boundaries()
    return shapely.union_all(gdf[gdf["iso3"] == iso3].geometry.values)


def test_headers_match_input_contracts(run):
    assert tuple(run.cdr().columns) == CDR.columns
    assert tuple(run.payments().columns) == PAYMENTS.columns
    assert tuple(run.csv("subscribers/subscribers.csv").columns) == SUBSCRIBERS.columns
    assert tuple(run.csv("cells/cells.csv").columns) == CELLS.columns


def test_cdr_faults_are_exactly_the_counted_ones(run):
    cdr = run.cdr()
    cells = set(run.csv("cells/cells.csv")["cell_id"])
    plmns = plmn_countries()
    counted = run.summary.faults["cdr"]
    numbers = {m: to_e164(m) for m in cdr["msisdn"].unique()}
    found = {
        "duplicate": int(cdr.duplicated().sum()),
        "unparseable_time": int(parse_instants(cdr["event_time"]).isna().sum()),
        "unknown_event_type": int((~cdr["event_type"].isin(EVENT_TYPES)).sum()),
        "invalid_msisdn": int(cdr["msisdn"].map(numbers).isna().sum()),
        "unknown_cell_id": int(((cdr["cell_id"] != "") & ~cdr["cell_id"].isin(cells)).sum()),
        "invalid_visited_plmn": int(((cdr["visited_plmn"] != "") & ~cdr["visited_plmn"].isin(plmns)).sum()),
    }
    assert found == counted
    assert all(v > 0 for v in counted.values()), "a small run should still hold every fault kind"
    assert len(cdr) == run.summary.rows["cdr"]
    assert run.summary.events == len(cdr) - found["duplicate"]


def test_clean_cdr_rows_are_well_formed(run):
    cdr = run.cdr().drop_duplicates()
    cdr = cdr[cdr["event_type"].isin(EVENT_TYPES) & parse_instants(cdr["event_time"]).notna()]
    served_home, roaming = cdr["cell_id"] != "", cdr["visited_plmn"] != ""
    malformed_place = served_home & roaming
    assert not malformed_place.any(), "a record is served either on a home cell or abroad, never both"
    calls = cdr["event_type"].isin(["call_out", "call_in"])
    assert cdr.loc[calls, "duration_s"].str.fullmatch(r"\d+").all()
    assert (cdr.loc[~calls, "duration_s"] == "").all()
    assert (cdr.loc[cdr["event_type"] == "data", "counterpart_msisdn"] == "").all()
    assert cdr["imei"].str.fullmatch(r"\d{15}").all()
    assert all(_luhn_ok(i) for i in cdr["imei"].unique())
    # Formats are mixed: E.164, national and spaced national spellings, and three time styles.
    assert cdr["msisdn"].str.startswith("+").any() and cdr["msisdn"].str.startswith("0").any()
    assert cdr["msisdn"].str.contains(" ").any()
    assert cdr["event_time"].str.endswith("Z").any() and cdr["event_time"].str.endswith("+08:00").any()
    counterpart = cdr.loc[cdr["counterpart_msisdn"] != "", "counterpart_msisdn"].unique()
    assert all(to_e164(c) for c in counterpart)


def test_home_msisdns_are_valid_mobiles_of_the_home_region(run):
    import phonenumbers

    subscribers = run.csv("subscribers/subscribers.csv")
    for text in subscribers["msisdn"]:
        number = phonenumbers.parse(text, "PH")
        assert phonenumbers.is_valid_number(number)
        assert phonenumbers.region_code_for_number(number) == "PH"
        assert phonenumbers.number_type(number) in (phonenumbers.PhoneNumberType.MOBILE,
                                                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    assert set(subscribers["sex"]) <= {"F", "M", "X", ""}
    years = subscribers.loc[subscribers["birth_year"] != "", "birth_year"].astype(int)
    assert years.between(1900, 2010).all()


def test_cells_lie_inside_the_home_country(run):
    cells = run.csv("cells/cells.csv")
    inside = shapely.contains_xy(_country(HOME), cells["longitude"].astype(float), cells["latitude"].astype(float))
    assert inside.all()
    assert cells["cell_id"].nunique() >= 60
    assert (cells["valid_to"] != "").any(), "some cells go out of service during the period"


def test_payments_follow_the_contract_and_their_faults_are_counted(run):
    pay = run.payments()
    counted = run.summary.faults["payments"]
    amount = pay["amount"].astype(float)
    known = set(pay["currency"]) & {c.alpha_3 for c in pycountry.currencies}
    assert {"negative_amount": int((amount < 0).sum()),
            "unknown_currency": int((~pay["currency"].isin(known)).sum()),
            "duplicate": int(pay.duplicated().sum())} == counted
    clean = pay[(amount >= 0) & pay["currency"].isin(known)].drop_duplicates()
    expected_currency = clean["sender_country"].map(lambda c: CURRENCIES[c][0])
    assert (clean["currency"] == expected_currency).all()
    assert set(clean["channel"]) <= {"mobile_money", "card", "agent", "bank"}
    assert pay["txn_id"].drop_duplicates().size == len(pay) - counted["duplicate"]
    located = clean[clean["channel"].isin(["agent", "card"])]
    assert (located["latitude"] != "").all()
    for country, rows in located.groupby("sender_country"):
        inside = shapely.contains_xy(_country(country), rows["longitude"].astype(float), rows["latitude"].astype(float))
        assert inside.all(), country
    remit = clean[clean["sender_country"] != clean["receiver_country"]]
    assert (remit["receiver_country"] == HOME).mean() > 0.5, "most cross-border payments are remittances home"
    assert (remit["fx_margin"] != "").all()


def test_each_month_file_holds_that_months_records_in_the_home_zone(run):
    for dataset, column in (("cdr", "event_time"), ("payments", "txn_time")):
        for path in run.summary.path(dataset):
            frame = _read_any(path)
            instants = parse_instants(frame[column]).dropna()
            months = set(instants.dt.tz_convert(ZONE).dt.strftime("%Y-%m"))
            assert months == {path.name[5:12]}, path
