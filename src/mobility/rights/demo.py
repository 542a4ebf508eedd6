"""The demo's rights step: one subject access request and one erasure of a synthetic subscriber."""

from __future__ import annotations

import csv
from pathlib import Path

from mobility.anonymize.pseudonymize import to_e164
from mobility.config import as_agreement
from mobility.rights.access import access
from mobility.rights.erase import erase


def pick_subscriber(agreement, input_dir: str | Path) -> str:
    """The first subscriber in the delivered subscribers file whose number is valid (as written there)."""
    agreement = as_agreement(agreement)
    for path in sorted((Path(input_dir) / "subscribers").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if to_e164(row.get("msisdn") or "", agreement.home_region):
                    return row["msisdn"]
    raise LookupError(f"no valid subscriber number under {input_dir}/subscribers")


def show_rights(agreement, lake_root: str | Path, input_dir: str | Path, spark=None) -> str:
    """Access, erase, access again for one synthetic subscriber; returns the text to print."""
    agreement = as_agreement(agreement)
    number = pick_subscriber(agreement, input_dir)
    before = access(agreement, lake_root, msisdn=number, spark=spark)
    erased = erase(agreement, lake_root, msisdn=number, spark=spark)
    after = access(agreement, lake_root, msisdn=number, spark=spark)
    verdict = "nothing stored any more" if not after.stored else "STILL STORED (erasure failed)"
    return "\n\n".join([before.text(), erased.text(), f"Access after erasure: {verdict}."])
