"""Bad rows and awkward files that the job reads (issue #24): each quarantined with a reason, accepted as
documented, or skipped; one anonymization run (agreement in Europe/Berlin, for its DST changes) serves all.

Each test records its row of the table "Bad input: what each kind gets" (docs/contracts.md) as a
``bad_input`` property, which a report generator reads from pytest's --junitxml output.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agreement_helpers import with_test_key
from anon_fixtures import HOME_CELLS, make_agreement, write_csv
from mobility.anonymize import validate as v
from mobility.anonymize.job import run
from mobility.config import load_agreement
from mobility.errors import InputContractError

pytestmark = pytest.mark.spark

HEADER = "msisdn,event_time,event_type,cell_id,visited_plmn,duration_s,counterpart_msisdn,imei"
LONG = 100_000  # characters: a 100 kB field


def number(i: int) -> str:
    """A distinct valid Philippine mobile number per row, so that each row's event can be found."""
    return f"+6391712{i:05d}"


def cdr(i: int, time: str, *, cell="C1", plmn="", duration="60", imei="", event_type="call_out") -> str:
    return ",".join([number(i), time, event_type, cell, plmn, duration, "", imei])


# file -> lines after the header (each row its own subscriber, numbered)
CDR_FILES = {
    "ok.csv": [cdr(1, "2025-01-05T21:13:00")],
    "dates.csv": [cdr(10, "1970-01-01T00:00:00"), cdr(11, "2999-01-01T00:00:00"), cdr(12, "1736111580"),
                  cdr(13, "2000-01-01T00:00:00")],
    "dst.csv": [cdr(20, "2025-03-30T01:30:00"), cdr(21, "2025-03-30T03:30:00"), cdr(22, "2025-03-30T02:30:00"),
                cdr(23, "2025-10-26T02:30:00"), cdr(24, "2025-10-26T02:30:00+01:00"),
                cdr(25, "2025-03-31T22:30:00Z"), cdr(26, "2025-02-01T00:30:00+01:00")],
    "durations.csv": [cdr(30, "2025-01-05T10:00:00", duration="-3"),
                      cdr(31, "2025-01-05T10:01:00", duration="99999999999"),
                      cdr(32, "2025-01-05T10:02:00", duration="100000"),
                      cdr(33, "2025-01-05T10:03:00", duration="86400")],
    "long.csv": [cdr(40, "2025-01-05T10:00:00").replace(number(40), "+63" + "9" * LONG),
                 cdr(41, "2025-01-05T10:01:00", cell="C" * LONG),
                 cdr(42, "2025-01-05T10:02:00", imei="7" * LONG)],
    "networks.csv": [cdr(50, "2025-01-05T10:00:00", cell="NOPE"),
                     cdr(51, "2025-01-05T10:01:00", cell="", plmn="00101"),
                     cdr(52, "2025-01-05T10:02:00", cell="", plmn="42099")],
    "malformed.csv": [cdr(60, "2025-01-05T10:00:00") + ",EXTRA",
                      ",".join([number(61), "2025-01-05T10:01:00", "sms_out"]),
                      cdr(62, "2025-01-05T10:02:00").replace("2025-01-05T10:02:00", '"2025-01-05T10:02:00')],
}
# (expected status or reason) per row, in the order above
EXPECTED = {
    "ok.csv": ["accepted"],
    "dates.csv": ["implausible_event_time", "implausible_event_time", "invalid_event_time", "accepted"],
    "dst.csv": ["accepted"] * 7,
    "durations.csv": ["invalid_duration", "invalid_duration", "implausible_duration", "accepted"],
    "long.csv": ["field_too_long"] * 3,
    "networks.csv": ["unknown_cell", "invalid_visited_plmn", "accepted"],
    "malformed.csv": ["malformed_row"] * 3,
}
PAYMENT_HEADER = ("txn_id,txn_time,sender_msisdn,receiver_msisdn,sender_country,receiver_country,amount,currency,fee,"
                  "channel")
PAYMENTS = [  # (row, expected)
    (f"T1,2025-01-06T10:00:00,{number(70)},,PHL,PHL,500,PHP,10,mobile_money", "accepted"),
    (f"T2,2025-01-06T10:00:00,{number(71)},,PHL,PHL,-5,PHP,0,mobile_money", "invalid_amount"),
    (f"T3,2025-01-06T10:00:00,{number(72)},,PHL,PHL,5000000000000,PHP,0,mobile_money", "implausible_amount"),
    (f"T4,1970-01-01T00:00:00,{number(73)},,PHL,PHL,500,PHP,0,mobile_money", "implausible_txn_time"),
    (f"T5,2025-01-06T10:00:00,{number(74)},,PHL,PHL,1e308,PHP,0,mobile_money", "implausible_amount"),
]


def _record(record_property, kind: str, outcome: str, detail: str) -> None:
    record_property("bad_input", json.dumps({"kind": kind, "outcome": outcome, "detail": detail[:200]}))


def _write_inputs(root):
    write_csv(root / "cells" / "cells.csv", ["cell_id", "latitude", "longitude", "valid_from", "valid_to"],
              [*HOME_CELLS, ("X" * LONG, "14.6", "121.0", "", "")])
    with open(root / "cells" / "cells.csv", "ab") as fh:
        fh.write(b"C\xff9,14.6,121.0,,\n")  # a cell id with a byte that is not UTF-8
    cdr_dir = root / "cdr"
    for name, lines in CDR_FILES.items():
        (cdr_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (cdr_dir / name).write_text(HEADER + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    # BOM before the header; CRLF line ends with event_type last (a stray CR would make it unknown)
    (cdr_dir / "bom.csv").write_bytes(("\ufeff" + HEADER + "\n" + cdr(80, "2025-01-05T12:00:00") + "\n").encode())
    (cdr_dir / "crlf.csv").write_bytes(("msisdn,event_time,cell_id,visited_plmn,event_type\r\n"
                                        f"{number(81)},2025-01-05T12:00:00,C1,,call_out\r\n").encode())
    # bytes that are not UTF-8 inside data rows: in a column never kept (imei) and in a checked one
    (cdr_dir / "latin1.csv").write_bytes((HEADER + "\n").encode() + number(82).encode()
                                         + b",2025-01-05T12:00:00,call_out,C1,,60,,35693803\xff643809\n"
                                         + number(83).encode() + b",2025-01-05T12:00:00,call_\xe9out,C1,,60,,\n")
    (cdr_dir / "header-only.csv").write_text(HEADER + "\n")
    (cdr_dir / "extra.csv").write_text("msisdn,event_time,event_type,cell_id,visited_plmn,remark\n"
                                       f"{number(84)},2025-01-05T12:00:00,call_out,C1,,hello\n"
                                       f"{number(85)},2025-01-05T12:00:00,call_out,NOPE,,not kept\n")
    # Parquet files of three schemas, read together: event_time as text (local time), as a TIMESTAMP
    # (an instant) and as a TIMESTAMP without zone (local time); all three in the CEST hour 03:00
    base = {"event_type": ["call_out"], "cell_id": ["C1"], "visited_plmn": pa.array([None], pa.string())}
    pq.write_table(pa.table({"msisdn": [number(90)], "event_time": ["2025-03-30T03:45:00"], **base}),
                   cdr_dir / "text-time.parquet")
    pq.write_table(pa.table({"msisdn": [number(91)], "event_time": pa.array(
        [dt.datetime(2025, 3, 30, 1, 15, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")), **base}),
        cdr_dir / "instant.parquet")
    pq.write_table(pa.table({"msisdn": [number(92)], "event_time": pa.array(
        [dt.datetime(2025, 3, 30, 3, 50)], pa.timestamp("us")), **base}), cdr_dir / "local-time.parquet")
    (root / "payments").mkdir()
    (root / "payments" / "payments.csv").write_text(PAYMENT_HEADER + "\n" + "\n".join(r for r, _ in PAYMENTS) + "\n")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    root = tmp_path_factory.mktemp("bad-rows")
    mp, key = with_test_key()
    agreement = load_agreement(make_agreement(root, time_zone="Europe/Berlin"))
    inputs = _write_inputs(root / "input")
    result = run(agreement, inputs, root / "lake", spark=spark)
    quarantine = spark.read.format("delta").load(str(root / "lake" / "operator" / "quarantine")).toPandas()
    events = spark.read.format("delta").load(str(root / "lake" / "office" / "events")) \
        .selectExpr("pseudonym", "date_format(event_hour, \"yyyy-MM-dd'T'HH:mmXXX\") AS hour_utc",
                    "month", "country", "h3_cell").toPandas()
    yield {"root": root, "key": key, "agreement": agreement, "inputs": inputs, "result": result,
           "files": {f["file"]: f for f in result.manifest["files"]}, "quarantine": quarantine, "events": events,
           "spark": spark}
    mp.undo()


def _pseudonym(world, i: int) -> str:
    return hmac.new(bytes.fromhex(world["key"]), number(i).encode(), hashlib.sha256).hexdigest()


def _event(world, i: int) -> dict | None:
    rows = world["events"][world["events"]["pseudonym"] == _pseudonym(world, i)]
    assert len(rows) <= 1
    return None if rows.empty else rows.iloc[0].to_dict()


def _fates(world, name: str) -> dict:
    f = world["files"][f"cdr/{name}"]
    return {"accepted": f["accepted"], **f["reasons"]}


def _expected(name: str) -> dict:
    c = collections.Counter(EXPECTED[name])
    c.setdefault("accepted", 0)
    return dict(c)


def test_every_file_reconciles_and_gets_the_expected_fates(world):
    for name in EXPECTED:
        assert _fates(world, name) == _expected(name), name
    for f in world["files"].values():
        assert f["read"] == f["accepted"] + f["quarantined"] + f["duplicates"] + f["suppressed"], f


def test_dates_in_1970_or_the_far_future_are_quarantined(world, record_property):
    assert _fates(world, "dates.csv") == _expected("dates.csv")
    assert _event(world, 10) is None and _event(world, 11) is None
    assert _event(world, 13)["month"] == "2000-01"  # the first plausible local time is accepted
    payments = world["files"]["payments/payments.csv"]
    assert payments["reasons"].get("implausible_txn_time") == 1
    assert set(world["events"]["month"]) <= {"2000-01", "2025-01", "2025-02", "2025-03", "2025-04", "2025-10"}
    _record(record_property, "dates in 1970 or the far future", "quarantined",
            "implausible_event_time / implausible_txn_time: before 2000-01-01 or more than 366 days ahead")


def test_epoch_seconds_in_a_csv_are_an_invalid_time(world, record_property):
    reasons = set(world["quarantine"][world["quarantine"]["source_file"] == "cdr/dates.csv"]["reason"])
    assert "invalid_event_time" in reasons
    _record(record_property, "a time in another format (epoch seconds, day-first)", "quarantined",
            "invalid_event_time")


@pytest.mark.parametrize("row, hour_utc, month, what", [
    (20, "2025-03-30T00:00Z", "2025-03", "01:30 CET, before the spring change"),
    (21, "2025-03-30T01:00Z", "2025-03", "03:30 CEST, after it"),
    (22, "2025-03-30T01:00Z", "2025-03", "02:30, a local time that does not exist: read as 03:30 CEST"),
    (23, "2025-10-26T00:00Z", "2025-10", "02:30 in the repeated autumn hour without offset: the first (CEST)"),
    (24, "2025-10-26T01:00Z", "2025-10", "02:30+01:00 in the repeated hour: the second (CET)"),
    (25, "2025-03-31T22:00Z", "2025-04", "22:30Z on 31 March is 00:30 local on 1 April: April"),
    (26, "2025-01-31T23:00Z", "2025-02", "00:30+01:00 on 1 February: February, though UTC is still January"),
])
def test_times_across_a_dst_change_land_in_their_local_hour_and_month(world, record_property, row, hour_utc,
                                                                       month, what):
    event = _event(world, row)
    assert event is not None, what
    assert (event["hour_utc"], event["month"]) == (hour_utc, month), what
    _record(record_property, "times with and without UTC offset across a DST change", "accepted",
            f"Europe/Berlin: {what} -> hour {hour_utc}, month {month}")


def test_parquet_times_as_text_instant_or_local_are_read_together(world, record_property):
    # 03:45 local text, 01:15Z instant, 03:50 local without zone: all in the CEST hour starting 01:00Z
    for i in (90, 91, 92):
        assert _event(world, i)["hour_utc"] == "2025-03-30T01:00Z", i
    _record(record_property, "Parquet event_time as TIMESTAMP, or files of different column types",
            "accepted", "TIMESTAMP read at its instant, TIMESTAMP_NTZ and text as local time")


def test_absurd_durations_are_quarantined(world, record_property):
    assert _fates(world, "durations.csv") == _expected("durations.csv")
    assert _event(world, 33) is not None  # exactly one day is still plausible
    _record(record_property, "absurd durations (negative, beyond a day, beyond an integer)", "quarantined",
            f"invalid_duration (negative, not an integer) / implausible_duration (> {v.MAX_DURATION_S} s)")


def test_absurd_amounts_are_quarantined(world, record_property):
    reasons = world["files"]["payments/payments.csv"]["reasons"]
    assert reasons.get("invalid_amount") == 1 and reasons.get("implausible_amount") == 2
    assert world["files"]["payments/payments.csv"]["accepted"] == 1
    _record(record_property, "absurd amounts (negative, huge)", "quarantined",
            f"invalid_amount (<= 0, not a number) / implausible_amount (> {v.MAX_AMOUNT:.0e} units)")


def test_very_long_fields_are_quarantined_and_nothing_long_reaches_the_office_zone(world, record_property):
    assert _fates(world, "long.csv") == _expected("long.csv")
    assert world["files"]["cells/cells.csv"]["reasons"].get("field_too_long") == 1
    longest = max(world["events"][c].dropna().str.len().max() for c in ("pseudonym", "hour_utc", "month", "country"))
    assert longest <= 64
    office = world["root"] / "lake" / "office"
    assert max(p.stat().st_size for p in office.rglob("*") if p.is_file()) < LONG
    _record(record_property, "very long fields (a 100 kB number, cell id or IMEI)", "quarantined",
            f"field_too_long (> {v.MAX_FIELD_CHARS} characters); only the operator's quarantine holds the row")


def test_unknown_cells_and_networks(world, record_property):
    assert _fates(world, "networks.csv") == _expected("networks.csv")
    _record(record_property, "unknown cell", "quarantined", "unknown_cell")
    _record(record_property, "unknown network (MCC not known)", "quarantined", "invalid_visited_plmn")


def test_a_known_country_code_with_an_unlisted_network_is_placed_in_that_country(world, record_property):
    event = _event(world, 52)  # 420-99: Saudi Arabia's MCC, an MNC the table does not list
    assert event["country"] == "SAU" and not isinstance(event["h3_cell"], str)
    _record(record_property, "unlisted network of a known country (MCC known, MNC not)", "accepted",
            "country from the MCC alone")


def test_rows_with_too_many_or_too_few_fields_are_malformed(world, record_property):
    assert _fates(world, "malformed.csv") == _expected("malformed.csv")
    _record(record_property, "a row with too many or too few fields, or an unclosed quote", "quarantined",
            "malformed_row")


def test_bytes_that_are_not_utf8_inside_rows_are_quarantined(world, record_property):
    assert _fates(world, "latin1.csv") == {"accepted": 0, "invalid_encoding": 2}
    assert world["files"]["cells/cells.csv"]["reasons"].get("invalid_encoding") == 1
    _record(record_property, "non-UTF-8 bytes inside a data row", "quarantined", "invalid_encoding")


def test_a_byte_order_mark_is_accepted(world, record_property):
    assert _fates(world, "bom.csv") == {"accepted": 1} and _event(world, 80) is not None
    _record(record_property, "byte-order mark", "accepted", "the same columns; the BOM is not part of any value")


def test_crlf_line_ends_are_accepted(world, record_property):
    # event_type is the last column: a CR left on it would make the row unknown_event_type
    assert _fates(world, "crlf.csv") == {"accepted": 1} and _event(world, 81) is not None
    _record(record_property, "CRLF line ends", "accepted", "CR is not part of the last column's value")


def test_a_header_without_rows_is_accepted_and_listed(world, record_property):
    listed = world["files"]["cdr/header-only.csv"]
    assert listed["read"] == 0 and listed["accepted"] == 0 and listed["content_fingerprint"]
    _record(record_property, "a file with a header and no rows", "accepted",
            "read 0; listed in the manifest, so skipped when delivered again")


def test_extra_columns_are_ignored_even_in_the_quarantine(world, record_property):
    assert _fates(world, "extra.csv") == {"accepted": 1, "unknown_cell": 1}
    record = world["quarantine"][world["quarantine"]["source_file"] == "cdr/extra.csv"]["record"].iloc[0]
    assert "remark" not in json.loads(record) and "not kept" not in record
    _record(record_property, "extra columns", "accepted", "ignored: never written, not even to the quarantine")


@pytest.fixture(scope="module")
def again(world, tmp_path_factory):
    """The same delivery once more, plus one file under another name: a second run on the same lake."""
    inputs = tmp_path_factory.mktemp("again") / "input"
    shutil.copytree(world["inputs"], inputs)
    (inputs / "cdr" / "resent").mkdir()
    shutil.copy(inputs / "cdr" / "ok.csv", inputs / "cdr" / "resent" / "ok-2.csv")
    before = len(world["spark"].read.format("delta").load(str(world["root"] / "lake" / "office" / "events")).collect())
    result = run(world["agreement"], inputs, world["root"] / "lake", spark=world["spark"])
    after = world["spark"].read.format("delta").load(str(world["root"] / "lake" / "office" / "events")).count()
    return {"result": result, "before": before, "after": after,
            "skipped": {s["file"]: s for s in result.manifest["skipped_files"]}}


def test_the_same_file_delivered_twice_is_skipped(world, again, record_property):
    skipped = again["skipped"]["cdr/ok.csv"]
    assert skipped["ingested_by"] == world["result"].run_id and "same_content_as" not in skipped
    assert set(again["skipped"]) >= set(world["files"])  # every file of the first delivery
    assert again["after"] == again["before"]
    _record(record_property, "the same file delivered twice", "skipped", skipped["reason"])


def test_the_same_content_under_another_name_is_skipped(world, again, record_property):
    skipped = again["skipped"]["cdr/resent/ok-2.csv"]
    expected = f"same content as cdr/ok.csv ingested by run {world['result'].run_id}"
    assert skipped["reason"] == expected and skipped["same_content_as"] == "cdr/ok.csv"
    assert skipped["ingested_by"] == world["result"].run_id
    assert again["result"].manifest["files"] == [] and again["after"] == again["before"]
    assert f"skipped cdr/resent/ok-2.csv: {expected}" in again["result"].summary()
    _record(record_property, "the same file under another name", "skipped", expected)


def test_a_parquet_file_with_damaged_pages_is_refused_naming_it(world, tmp_path, record_property):
    inputs = tmp_path / "input"
    shutil.copytree(world["inputs"] / "cells", inputs / "cells")
    (inputs / "cdr").mkdir()
    n = 3000
    table = pa.table({"msisdn": [number(i % 100) for i in range(n)], "event_time": ["2025-01-05T21:00:00"] * n,
                      "event_type": ["call_out"] * n, "cell_id": [f"C{i}" for i in range(n)],
                      "visited_plmn": pa.array([None] * n, pa.string())})
    path = inputs / "cdr" / "damaged.parquet"
    pq.write_table(table, path)
    blob = bytearray(path.read_bytes())
    blob[100:3000] = b"Z" * 2900  # the first data pages; the footer (schema) stays readable
    path.write_bytes(bytes(blob))
    with pytest.raises(InputContractError) as err:
        run(world["agreement"], inputs, tmp_path / "lake", spark=world["spark"])
    message = str(err.value)
    assert "cdr/damaged.parquet" in message and "do not decode" in message and "deliver the file(s) again" in message
    assert not (tmp_path / "lake" / "office" / "manifests").is_dir() or \
        not list((tmp_path / "lake" / "office" / "manifests").glob("*.json"))
    _record(record_property, "Parquet with damaged data pages", "refused", message.split(": ", 1)[1])
