"""Fixtures of the fault matrix: one small office world, built once per session and copied per cell.

The world is a synthetic operator extract of four months in two deliveries: the first anonymized and
run through residence, the second anonymized (``before_residence``: what a residence run starts from),
then residence again (``full``: the uninterrupted residence run, and where erasure and retention start).
"""

from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("anonymize", "publish", "aggregate", "rights"):  # their helper modules (unique names)
    if str(TESTS / folder) not in sys.path:
        sys.path.append(str(TESTS / folder))

KEY_ENV = "MOBILITY_KEY_TEST"
MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04"]


def _delivery(source: Path, target: Path, months: list[str], registers: bool) -> Path:
    for folder in ("cdr", "payments"):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for month in months:
            shutil.copy(source / folder / f"part-{month}.csv.gz", target / folder)
    for folder in ("cells", "subscribers") if registers else ("cells",):
        shutil.copytree(source / folder, target / folder)
    return target


@pytest.fixture(scope="session")
def office_world(tmp_path_factory, spark):
    from agreement_helpers import make_agreement
    from mobility.anonymize.job import run as anonymize
    from mobility.config import load_agreement
    from mobility.residence.job import run as residence
    from mobility.synth import generate

    root = tmp_path_factory.mktemp("faults-office")
    key = secrets.token_hex(32)
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, key)
    generate(root / "all", subscribers=24, months=len(MONTHS), start=MONTHS[0], home_country="PHL", seed=7,
             fault_rate=0.1, events_per_day=2.0)
    first = _delivery(root / "all", root / "d1", MONTHS[:3], registers=True)
    second = _delivery(root / "all", root / "d2", MONTHS[3:], registers=False)
    agreement_path = make_agreement(root, suppression_list=str(root / "suppressed.txt"))
    agreement = load_agreement(agreement_path)
    before = root / "before_residence"
    anonymize(agreement, first, before, spark=spark)
    residence(agreement, before, spark=spark)
    anonymize(agreement, second, before, spark=spark)
    full = root / "full"
    shutil.copytree(before, full)
    reference = residence(agreement, full, spark=spark)
    yield SimpleNamespace(root=root, key=key, agreement=agreement, agreement_path=agreement_path, input=root / "all",
                          before_residence=before, full=full, residence=reference)
    mp.undo()


@pytest.fixture(scope="module")
def key_env(office_world):
    """The world's key in the environment for this module (other modules may set their own)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, office_world.key)
    yield office_world.key
    mp.undo()
