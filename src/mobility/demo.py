"""`mobility demo`: the whole pipeline on a small synthetic population, both sides, one folder."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import yaml

from mobility.config import PACKAGE_DATA, load_agreement

DEMO_AGREEMENT = PACKAGE_DATA / "demo-phl-2026.yaml"


def _step(n: int, title: str) -> float:
    print(f"\n[{n}] {title}", flush=True)
    return time.time()


def _demo_agreement(workdir: Path) -> Path:
    """The demo agreement with a fresh random key in a 0600 file on the 'operator' side."""
    secrets_dir = workdir / "operator-secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True)
    key_file = secrets_dir / "demo-phl-2026.key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_hex(32) + "\n")
    key_file.chmod(0o600)
    data = yaml.safe_load(DEMO_AGREEMENT.read_text())
    data["key"] = {"file": str(key_file.resolve()), "key_id": data["key"]["key_id"]}
    path = workdir / "conf" / "agreements" / "demo-phl-2026.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_demo(workdir: Path, subscribers: int = 400, seed: int = 7) -> None:
    from mobility.anonymize.job import run as anonymize
    from mobility.cli import _describe_anonymize
    from mobility.synth import generate

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    inputs, lake = workdir / "input", workdir / "lake"
    agreement_path = _demo_agreement(workdir)
    agreement = load_agreement(agreement_path)

    t = _step(1, f"Synthetic population: {subscribers} subscribers of a Philippine operator, 24 months")
    summary = generate(inputs, subscribers=subscribers, months=24, start="2024-01", home_country="PHL", seed=seed,
                       fault_rate=0.02, events_per_day=4.0)
    print(f"    wrote {summary.to_dict().get('events', 'the')} CDR events and truth to {inputs} "
          f"({time.time() - t:.0f}s)")

    t = _step(2, "Operator side: validate, pseudonymize (HMAC-SHA256), minimize, bin on H3")
    result = anonymize(agreement, inputs, lake)
    print(_describe_anonymize(result) + f"\n    ({time.time() - t:.0f}s)")

    print(f"\nDone in {time.time() - started:.0f}s. What was produced, and where:")
    rows = [
        ("synthetic inputs and ground truth", inputs),
        ("demo agreement (key in operator-secrets/, 0600)", agreement_path),
        ("operator zone: quarantine, cells, run manifests", lake / "operator"),
        ("office zone: pseudonymized events, subscribers, payments", lake / "office"),
    ]
    for what, where in rows:
        print(f"  {what:58s} {where}")
