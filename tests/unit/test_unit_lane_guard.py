"""The unit lane refuses processes (tests/unit/conftest.py), and only the unit lane: a test here that starts one
fails, naming itself, while the e2e and local lanes (tests/e2e/test_planning_e2e.py runs bash) are untouched."""
from __future__ import annotations

import os
import subprocess

import pytest


def test_starting_a_process_in_the_unit_lane_fails_naming_the_test():
    with pytest.raises(RuntimeError, match="test_starting_a_process_in_the_unit_lane_fails_naming_the_test tried to start a process"):
        subprocess.run(["true"], check=False)
    with pytest.raises(RuntimeError, match="os.system"):
        os.system("true")
