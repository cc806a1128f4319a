"""Fixture generators for scripts/gen_testdata.py (one module per API group)."""
