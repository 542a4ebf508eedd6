"""Bad input files refused before Spark starts: which file, what is wrong, what to do (exit 2)."""

from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from anon_fixtures import make_agreement, make_inputs
from mobility.anonymize import inputs as inp
from mobility.cli import main
from mobility.errors import InputContractError

HEADER = "msisdn,event_time,event_type,cell_id,visited_plmn,duration_s,counterpart_msisdn,imei"
ROW = "+639171234567,2025-01-05T21:13:00,call_out,C1,,60,,"


@pytest.mark.parametrize("name, content, expected", [
    ("semicolons.csv", HEADER.replace(",", ";") + "\n" + ROW.replace(",", ";") + "\n", "separated by semicolons"),
    ("tabs.csv", HEADER.replace(",", "\t") + "\n", "separated by tabs"),
    ("upper.csv", HEADER.upper() + "\n" + ROW + "\n", "'MSISDN' for 'msisdn'"),
    ("spaced.csv", HEADER.replace("event_time", "Event Time") + "\n", "'Event Time' for 'event_time'"),
    ("missing.csv", HEADER.replace(",cell_id", "") + "\n", "missing required column(s) ['cell_id']"),
    ("empty.csv", "", "empty or has no header row"),
    ("blank.csv", "\n\n", "empty or has no header row"),
    ("latin1.csv", (HEADER.replace("imei", "imeí") + "\n").encode("latin-1"), "UTF-8"),
    ("cut.csv.gz", gzip.compress((HEADER + "\n").encode())[:9], "not truncated"),
    ("notes.txt", "hello", "unsupported file type"),
])
def test_a_bad_file_is_refused_naming_it_and_what_to_do(tmp_path, record_property, name, content, expected):
    inputs = make_inputs(tmp_path / "input")
    path = inputs / "cdr" / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(InputContractError) as err:
        inp.discover(inputs)
    message = str(err.value)
    assert name in message and expected in message
    record_property("bad_input", json.dumps({"kind": KINDS[name], "outcome": "refused", "detail": expected}))


# the row of the table "Bad input: what each kind gets" (docs/contracts.md) each file above backs
KINDS = {"semicolons.csv": "header separated by semicolons, tabs or pipes",
         "tabs.csv": "header separated by semicolons, tabs or pipes",
         "upper.csv": "header names in another case or with spaces",
         "spaced.csv": "header names in another case or with spaces",
         "missing.csv": "a required column missing or renamed",
         "empty.csv": "an empty file, or only blank lines",
         "blank.csv": "an empty file, or only blank lines",
         "latin1.csv": "non-UTF-8 bytes in the header",
         "cut.csv.gz": "truncated or corrupt gzip",
         "notes.txt": "a file of another type in a dataset folder"}


@pytest.mark.parametrize("variant", ["bom", "crlf", "spaces"])
def test_harmless_header_variants_are_accepted(tmp_path, record_property, variant):
    inputs = make_inputs(tmp_path / "input")
    header = {"bom": "\ufeff" + HEADER, "crlf": HEADER, "spaces": HEADER.replace(",", ", ")}[variant]
    end = "\r\n" if variant == "crlf" else "\n"
    (inputs / "cdr" / "variant.csv").write_text(header + end + ROW + end, encoding="utf-8")
    found = inp.discover(inputs)
    assert any(f.path.name == "variant.csv" and "msisdn" in f.columns for f in found["cdr"])
    kind = {"bom": "byte-order mark", "crlf": "CRLF line ends", "spaces": "spaces after the header's commas"}[variant]
    record_property("bad_input", json.dumps({"kind": kind, "outcome": "accepted",
                                             "detail": "the header names the same columns"}))


def test_the_command_exits_2_without_a_traceback(tmp_path, monkeypatch, record_property):
    monkeypatch.setenv("MOBILITY_KEY_TEST", "ab" * 32)
    inputs = make_inputs(tmp_path / "input")
    (inputs / "cdr" / "semicolons.csv").write_text(HEADER.replace(",", ";") + "\n", encoding="utf-8")
    outcome = CliRunner().invoke(main, ["anonymize", "--agreement", str(make_agreement(tmp_path)),
                                        "--input", str(inputs), "--lake", str(tmp_path / "lake")])
    assert outcome.exit_code == 2 and "semicolons" in outcome.output and "Traceback" not in outcome.output
    assert not (tmp_path / "lake" / "office").exists()
    record_property("bad_input", json.dumps({"kind": "header separated by semicolons, tabs or pipes",
                                             "outcome": "refused", "detail": "exit 2, no traceback"}))


@pytest.mark.spark
def test_a_line_with_a_field_too_many_is_malformed_also_when_the_file_has_extra_columns(tmp_path, spark):
    # Spark parses only the columns a query selects unless told otherwise: the extra column 'note'
    # is not selected, and a line with one field too many must still be flagged, not read as sound
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "cells.csv").write_text(
        "cell_id,latitude,longitude,note\n"
        "C1,14.6,121.0,fine\n"
        "C2,14.7,121.1,fine,one too many\n"
        "C3,14.8\n", encoding="utf-8")
    path = tmp_path / "cells" / "cells.csv"
    f = inp.InputFile("cells", path.resolve(), "csv", ("cell_id", "latitude", "longitude", "note"),
                      "fp", "cells/cells.csv")
    rows = {r["cell_id"]: r[inp.CORRUPT] for r in inp.read(spark, [f], inp.INPUTS["cells"]).collect()}
    assert rows["C1"] is None
    assert rows["C2"] is not None and rows["C3"] is not None
