"""Benchmarks (BFCL v4 loader, schema conversion and scorer)."""

__all__: list[str] = []
