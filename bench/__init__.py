"""Benchmarks of the anonymization stage (Spark against a DuckDB floor) and of residence inference.

``python -m bench.run`` is the one entry point; see BENCHMARKS.md for what it measures and the
figures from the last recorded run.
"""
