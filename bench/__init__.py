"""The incident-storm benchmark: `python -m bench` (see docs/benchmarks.md)."""
