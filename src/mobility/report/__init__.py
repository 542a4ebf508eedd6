"""Readable, self-contained HTML reports on releases and on the privacy-budget ledger."""

from mobility.report.ledger_report import render_ledger_report, write_ledger_report
from mobility.report.release_report import render_release_report, write_release_report

__all__ = ["render_ledger_report", "render_release_report", "write_ledger_report", "write_release_report"]
