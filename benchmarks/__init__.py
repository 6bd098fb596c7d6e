"""Benchmarks of kaa-wire (pytest-benchmark micro benchmarks, and load benchmarks)."""
