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
