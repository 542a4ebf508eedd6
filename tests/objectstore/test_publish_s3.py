"""Publishing from a lake on object storage: twelve monthly releases, the annual table derived from them
(written object by object, its manifest last), the catalogue, and exports to a local folder."""

from __future__ import annotations

import pandas as pd
import pytest

from mobility import storage
from mobility.lake import Lake
from mobility.privacy_budget.audit import verify
from mobility.publish.annual import build_annual
from mobility.publish.catalogue import catalogue
from mobility.publish.export import export_release, read_export
from publish_helpers import agreement, months, publish_month

pytestmark = pytest.mark.objectstore


def test_annual_table_catalogue_and_export_from_a_lake_on_s3(s3_lake, tmp_path, monkeypatch):
    agr, _ = agreement(tmp_path)
    for period in months(2025):
        publish_month(s3_lake, agr, period)
    lake = Lake(s3_lake)
    # an annual build killed while uploading: objects without the manifest are no table; a rerun rewrites them
    from mobility.publish import annual

    real = storage.upload_folder

    def killed(local, target, *, last=None):
        first = sorted(p for p in local.iterdir() if p.name != last)[0]
        storage.write_bytes(target / first.name, first.read_bytes())
        raise KeyboardInterrupt("killed while uploading")

    monkeypatch.setattr(annual.storage, "upload_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        build_annual(s3_lake, 2025, agr)
    monkeypatch.setattr(annual.storage, "upload_folder", real)
    result = build_annual(s3_lake, 2025, agr)
    assert not result.reused and storage.uri(result.path).startswith(f"{s3_lake}/derived/annual/")
    assert (result.path / "manifest.json").is_file()
    assert build_annual(s3_lake, 2025, agr).reused  # found whole, by its manifest
    rows = catalogue(s3_lake)
    assert len(rows) == 13 and rows[-1]["release_id"] == result.annual_id, rows[-1]
    for release_id in (f"flows-{agr.agreement_id}-2025-03", result.annual_id):
        out = tmp_path / "export" / release_id
        export_release(s3_lake, release_id, "csv", out)
        back = read_export(out, release_id)
        assert back and all(isinstance(frame, pd.DataFrame) and len(frame) for frame in back.values())
    assert verify(s3_lake).ok
    # no stage is left (SeaweedFS may still list an emptied folder's prefix: it holds no object)
    folders = sorted(p.name for p in lake.releases.iterdir() if p.is_dir())
    assert folders == [f"flows-{agr.agreement_id}-{period}" for period in months(2025)]
