"""Benchmarks: `pooul-worker bench <name>` prints a table (targets live here, never in tests)."""

__all__: list[str] = []
