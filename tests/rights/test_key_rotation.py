"""Key rotation: a lake's pseudonyms renamed to a new key keep the 12/16-month history whole.

One synthetic operator, 18 months. Lake A: months 1-14 under key one, residence, one erasure, then the
rotation to key two, then months 15-18 under key two and a residence run. Lake B, the reference:
everything under key two from the start, the same erasure. The rotation must give lake A exactly lake
B's tables (so the 12/16 window crosses the rotation as if the key had never changed), leave no old
pseudonym in any file, keep the erased person out, and be resumable after a crash at any point.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from deltalake import DeltaTable

from agreement_helpers import make_agreement
from rights_scan import find, with_old_and_new_keys

pytestmark = [pytest.mark.spark, pytest.mark.slow]

START, MONTHS, FIRST = "2024-01", 18, 14
OLD_ID, NEW_ID = "k-test", "k-two"
RESIDENCE = ("office/presence", "office/home_cells", "office/residence_changes")
IDENTIFIERS = ("pseudonym", "counterpart_pseudonym", "sender_pseudonym", "receiver_pseudonym")


def _month(i: int) -> str:
    return f"{2024 + (i - 1) // 12}-{(i - 1) % 12 + 1:02d}"


def _delivery(source: Path, target: Path, first: int, last: int, registers: bool) -> Path:
    for folder in ("cdr", "payments"):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for i in range(first, last + 1):
            shutil.copy(source / folder / f"part-{_month(i)}.csv.gz", target / folder)
    for folder in ("cells", "subscribers") if registers else ("cells",):
        shutil.copytree(source / folder, target / folder)
    return target


def _numbers(folder: Path) -> set[str]:
    """Every valid subscriber number of a delivery, as the anonymize job normalizes them."""
    from mobility.anonymize.pseudonymize import to_e164

    found = set()
    for path in sorted(folder.rglob("*.csv*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as fh:
            frame = pd.read_csv(fh, dtype=str, keep_default_na=False)
        for column in ("msisdn", "counterpart_msisdn", "sender_msisdn", "receiver_msisdn"):
            if column in frame:
                found |= {e for e in (to_e164(x, "PH") for x in frame[column].unique()) if e}
    return found


def table(lake: Path, label: str, drop: tuple[str, ...] = ("run_id",)) -> pd.DataFrame:
    frame = DeltaTable(str(lake / label)).to_pandas()
    frame = frame.drop(columns=[c for c in drop if c in frame.columns])
    for c in frame.columns:  # timestamps and dates compare as text
        if not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(str)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def renamed(frame: pd.DataFrame, mapping: dict[str, str]) -> pd.DataFrame:
    out = frame.copy()
    for c in IDENTIFIERS:
        if c in out:
            out[c] = out[c].map(lambda p: mapping.get(p, p))
    if "key_id" in out:
        out["key_id"] = NEW_ID
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def _tables(lake: Path) -> dict[str, pd.DataFrame]:
    labels = RESIDENCE + ("office/events", "office/subscribers", "office/payments", "operator/suppression")
    return {label: table(lake, label, drop=("run_id", "added_on")) for label in labels}


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    from mobility.anonymize.job import run as anonymize
    from mobility.anonymize.pseudonymize import load_key
    from mobility.config import KeySource, load_agreement
    from mobility.residence.job import run as residence
    from mobility.rights.erase import erase
    from mobility.synth import generate

    root = tmp_path_factory.mktemp("rotation")
    mp = with_old_and_new_keys()
    generate(root / "all", subscribers=50, months=MONTHS, start=START, home_country="PHL", seed=11,
             fault_rate=0.0, events_per_day=3.0)
    d1 = _delivery(root / "all", root / "d1", 1, FIRST, registers=True)
    d2 = _delivery(root / "all", root / "d2", FIRST + 1, MONTHS, registers=False)
    common = {"max_invalid_share": 0.2, "counterpart": "pseudonymize"}
    one = load_agreement(make_agreement(root / "one", suppression_list=str(root / "one" / "suppressed.txt"), **common))
    two = load_agreement(make_agreement(root / "two", suppression_list=str(root / "two" / "suppressed.txt"),
                                        key={"env": "MOBILITY_NEW_KEY", "key_id": NEW_ID}, **common))
    subscribers = pd.read_csv(root / "all" / "subscribers" / "subscribers.csv", dtype=str)
    erased = subscribers["msisdn"].iloc[3]

    def first_part(agreement, lake):
        anonymize(agreement, d1, lake, spark=spark)
        erase(agreement, lake, msisdn=erased, spark=spark)
        residence(agreement, lake, spark=spark)

    first_part(one, root / "a")
    shutil.copytree(root / "a", root / "before")  # the lake as it was before the rotation
    shutil.copy(root / "one" / "suppressed.txt", root / "suppressed-before.txt")
    before = _tables(root / "a")

    from mobility.rights.rekey import rotate

    report = rotate(one, root / "a", NEW_ID, new_key=KeySource(env="MOBILITY_NEW_KEY", key_id=NEW_ID),
                    inputs=[d1], spark=spark)
    rotated = _tables(root / "a")
    anonymize(two, d2, root / "a", spark=spark)
    continued = residence(two, root / "a", spark=spark)

    first_part(two, root / "b")  # the reference: key two from the first delivery
    anonymize(two, d2, root / "b", spark=spark)
    residence(two, root / "b", spark=spark)

    k1, k2 = load_key(one.key), load_key(two.key)
    mapping = {k1.pseudonym(e): k2.pseudonym(e) for e in _numbers(d1)}
    yield SimpleNamespace(root=root, spark=spark, one=one, two=two, d1=d1, d2=d2, report=report, before=before,
                          rotated=rotated, continued=continued, mapping=mapping, erased=erased, k1=k1, k2=k2)
    mp.undo()


def _record(record_property, point: str, outcome: str) -> None:
    record_property("fault_cell", json.dumps({"stage": "keys rotate", "point": point, "outcome": outcome}))


def test_every_table_is_the_same_up_to_the_renaming(world):
    from mobility.rights.rekey import COUNTED

    assert set(world.report.tables_rewritten) == set(world.before)
    for label, frame in world.before.items():
        assert len(frame) > 0, label
        assert world.rotated[label].equals(renamed(frame, world.mapping)), label
    # rows are stated for event-level tables only: other counts would count people
    assert world.report.rows_rewritten == {label: len(world.before[label]) for label in COUNTED}
    line = next(ln for ln in world.report.text().splitlines() if "office/subscribers" in ln)
    assert "every row" in line and not re.search(r"\d", line)
    assert world.report.rows_without_number == {}


def test_the_history_continues_under_the_new_key_as_if_it_had_always_been_used(world):
    """The 12/16-month window spans the rotation: months 15-18 under key two extend months 1-14."""
    assert world.continued.manifest["mode"] == "incremental"  # the residence state was carried over
    for label in RESIDENCE + ("office/events", "office/subscribers", "office/payments"):
        assert table(world.root / "a", label).equals(table(world.root / "b", label)), label
    changes = table(world.root / "a", "office/residence_changes")
    assert len(changes) > 0 and set(changes["pseudonym"]) <= set(world.mapping.values())


def test_no_old_pseudonym_is_left_in_any_file_and_the_map_is_gone(world):
    lake = world.root / "a"
    sample = sorted(p for p in world.before["office/events"]["pseudonym"].unique())[:12]
    sample += list(world.before["operator/suppression"]["pseudonym"])
    needles = {p[:8]: re.compile(p[:24]) for p in sample}
    assert find(world.root / "before", needles)  # the scanner does find them before the rotation
    assert find(lake, needles) == []
    assert not (lake / "office" / "_key_rotation").exists()
    record = json.loads((lake / "office" / "key_rotations" / f"test-phl-{NEW_ID}.json").read_text())
    assert (record["old_key_id"], record["new_key_id"]) == (OLD_ID, NEW_ID)
    for label in ("office/events", "office/subscribers", "operator/suppression"):
        assert set(DeltaTable(str(lake / label)).to_pandas()["key_id"]) == {NEW_ID}, label
    for text in ((world.root / "one" / "suppressed.txt").read_text(),):
        assert world.k2.pseudonym(_e164(world.erased)) in text
        assert world.k1.pseudonym(_e164(world.erased)) not in text


def _e164(number: str) -> str:
    from mobility.anonymize.pseudonymize import to_e164

    return to_e164(number, "PH")


def test_the_erased_person_stays_out_under_the_new_key(world):
    new = world.k2.pseudonym(_e164(world.erased))
    events = table(world.root / "a", "office/events")
    assert new not in set(events["pseudonym"]) and new not in set(events["counterpart_pseudonym"])
    assert new in set(table(world.root / "a", "operator/suppression")["pseudonym"])


def test_the_old_key_is_refused_after_the_rotation_and_a_second_rotation_does_nothing(world):
    from mobility.anonymize.job import run as anonymize
    from mobility.errors import KeyMaterialError
    from mobility.rights.rekey import rotate

    with pytest.raises(KeyMaterialError, match="k-two"):
        anonymize(world.one, world.d2, world.root / "a", spark=world.spark)
    again = rotate(world.one, world.root / "a", NEW_ID, inputs=[world.d1], spark=world.spark)
    assert again.already_done and again.tables_rewritten == []


def _fresh(world, tmp_path: Path) -> tuple[Path, object]:
    """A copy of the lake before the rotation, with its own suppression list file."""
    from mobility.config import load_agreement

    lake = tmp_path / "lake"
    shutil.copytree(world.root / "before", lake)
    listed = tmp_path / "suppressed.txt"
    shutil.copy(world.root / "suppressed-before.txt", listed)
    agreement = load_agreement(make_agreement(tmp_path, suppression_list=str(listed), max_invalid_share=0.2,
                                              counterpart="pseudonymize"))
    return lake, agreement


def _killed_at(point: str, lake: Path, agreement_path: Path, inputs: Path) -> int:
    script = textwrap.dedent(f"""
        from mobility.rights.rekey import rotate
        rotate({str(agreement_path)!r}, {str(lake)!r}, {NEW_ID!r}, inputs=[__import__('pathlib').Path({str(inputs)!r})])
    """)
    env = {**os.environ, "MOBILITY_FAULT": point}
    return subprocess.run([sys.executable, "-c", script], env=env, timeout=600,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


@pytest.mark.faults
@pytest.mark.parametrize("point", ["rotate:after-map", "rotate:after-table", "rotate:after-purge",
                                   "rotate:after-record"])
def test_a_rotation_killed_at_any_point_is_completed_by_running_it_again(world, tmp_path, point, record_property):
    from mobility.rights.rekey import rotate

    lake, agreement = _fresh(world, tmp_path)
    path = tmp_path / "agreements" / "test-phl.yaml"
    assert _killed_at(point, lake, path, world.d1) == -signal.SIGKILL
    result = rotate(agreement, lake, NEW_ID, inputs=[world.d1], spark=world.spark)
    assert result.already_done == (point == "rotate:after-record")
    assert result.resumed == (point != "rotate:after-record")
    for label, frame in world.rotated.items():
        assert table(lake, label, drop=("run_id", "added_on")).equals(frame), label
    assert not (lake / "office" / "_key_rotation" / NEW_ID).exists()
    _record(record_property, point, "rerun completes the rotation; every table equals an uninterrupted rotation; "
                                    "map deleted")


def test_a_suppression_entry_without_its_number_is_refused_and_nothing_changes(world, tmp_path):
    from mobility.rights.rekey import RotationError, rotate

    lake, agreement = _fresh(world, tmp_path)
    register = tmp_path / "register.csv"
    numbers = sorted(_numbers(world.d1) - {_e164(world.erased)})
    pd.DataFrame({"msisdn": numbers}).to_csv(register, index=False)
    versions = {label: DeltaTable(str(lake / label)).version() for label in world.before}
    with pytest.raises(RotationError, match="suppression"):
        rotate(agreement, lake, NEW_ID, numbers=[register], spark=world.spark)
    assert {label: DeltaTable(str(lake / label)).version() for label in world.before} == versions


def test_pseudonyms_without_a_number_get_one_random_new_name_everywhere(world, tmp_path):
    from mobility.rights.rekey import rotate

    lake, agreement = _fresh(world, tmp_path)
    presence = world.before["office/presence"]
    gone = next(p for p in presence["pseudonym"].unique() if p in world.mapping)  # a person without a number
    number = next(e for e in _numbers(world.d1) if world.k1.pseudonym(e) == gone)
    register = tmp_path / "register.csv"
    pd.DataFrame({"msisdn": sorted(_numbers(world.d1) - {number})}).to_csv(register, index=False)
    report = rotate(agreement, lake, NEW_ID, numbers=[register], spark=world.spark)
    assert report.rows_without_number["office/presence"] == (presence["pseudonym"] == gone).sum()
    # the person's rows keep one name across tables, and it is neither the old nor the key-two pseudonym
    new_presence = table(lake, "office/presence")
    stranger = set(new_presence["pseudonym"]) - set(world.mapping.values())
    assert len(stranger) == 1 and not stranger & {gone, world.mapping[gone]}
    (name,) = stranger
    assert (new_presence["pseudonym"] == name).sum() == (presence["pseudonym"] == gone).sum()
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    assert name in set(table(lake, "office/events")["pseudonym"])
    assert find(lake, {"old": re.compile(gone[:24])}) == []
