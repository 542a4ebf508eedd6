"""Readable, self-contained HTML reports on releases and on the privacy-budget ledger."""

from __future__ import annotations

import os
from pathlib import Path

from mobility.report.ledger_report import render_ledger_report, write_ledger_report
from mobility.report.release_report import render_release_report, write_release_report


def write_reports(lake_root: str | os.PathLike, release_id: str, out_dir: str | os.PathLike,
                  agreement=None) -> dict[str, Path]:
    """Both reports into ``out_dir``: ``RELEASE_ID.html`` and ``ledger.html``; returns their paths.

    ``agreement`` (an Agreement, its file or its id) gives the caps; without it they are looked up by id.
    """
    out_dir = Path(out_dir)
    given = (agreement,) if agreement is not None else ()
    return {"release": write_release_report(lake_root, release_id, out_dir / f"{release_id}.html", agreements=given),
            "ledger": write_ledger_report(lake_root, out_dir / "ledger.html", given)}


__all__ = ["render_ledger_report", "render_release_report", "write_ledger_report", "write_release_report",
           "write_reports"]
