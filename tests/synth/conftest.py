"""One small synthetic run shared by the synth tests, and readers that interpret it independently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mobility.synth import SynthSummary, generate
from synth_helpers import RUN


@dataclass
class Run:
    root: Path
    summary: SynthSummary

    def cdr(self) -> pd.DataFrame:
        return pd.concat([_read(p) for p in self.summary.path("cdr")], ignore_index=True)

    def payments(self) -> pd.DataFrame:
        return pd.concat([_read(p) for p in self.summary.path("payments")], ignore_index=True)

    def csv(self, rel: str) -> pd.DataFrame:
        return _read(self.root / rel)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("synth") / "a"
    return Run(root, generate(root, **RUN))
