"""The test agreement every test folder uses: the shipped demo agreement under id ``test-phl``,
its key from ``MOBILITY_KEY_TEST``. A plain module (tests/ is on sys.path via its conftest)."""

from __future__ import annotations

from pathlib import Path

import yaml

DEMO_AGREEMENT = Path(__file__).parents[1] / "src" / "mobility" / "data" / "demo-phl-2026.yaml"


def make_agreement(dirpath: Path, **overrides) -> Path:
    base = yaml.safe_load(DEMO_AGREEMENT.read_text())
    base.pop("population_factors", None)  # relative to the shipped file; a test that wants factors names its own
    base.update({"agreement_id": "test-phl", "key": {"env": "MOBILITY_KEY_TEST", "key_id": "k-test"},
                 "max_invalid_share": 1.0})
    base.update(overrides)
    path = dirpath / "agreements" / f"{base['agreement_id']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(base))
    return path


def with_test_key(*more: str):
    """A MonkeyPatch (undo it when done) holding a fresh agreement key in MOBILITY_KEY_TEST and in each further
    variable named in ``more``, and the test key: what a module-scoped fixture that anonymizes needs (the
    function-scoped ``monkeypatch`` cannot serve one)."""
    import secrets

    import pytest

    mp = pytest.MonkeyPatch()
    key = secrets.token_hex(32)
    mp.setenv("MOBILITY_KEY_TEST", key)
    for name in more:
        mp.setenv(name, secrets.token_hex(32))
    return mp, key
