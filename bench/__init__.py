"""Benchmarks: `python -m bench [scenario ...]` prints figures; they never fail a test run."""
