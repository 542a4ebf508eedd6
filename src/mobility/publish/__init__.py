"""Publishing: exports with standard codes (SDMX-CSV, tidy CSV/Parquet), annual tables derived from
published monthly releases (no budget), and the catalogue of releases. See docs/data-dictionary.md.

- ``export.export_release(lake, release_id, fmt, out_dir)`` / ``export.read_export(out_dir, release_id)``
- ``validate.validate_sdmx_csv(path, structure=None)``
- ``annual.build_annual(lake, year, agreement)``
- ``catalogue.catalogue(lake)``
"""
