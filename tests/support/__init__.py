"""Helpers for the tests (plain functions and constants, no fixtures): tests/unit and tests/e2e import them
as ``from tests.support.<module> import ...``; fixtures live in the conftest.py of each lane."""
