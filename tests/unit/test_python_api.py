"""The Python API (``dmsbatch.connect()``) as a notebook uses it, where no stack is needed (the rest:
tests/e2e/test_python_api_e2e.py).

What a notebook user sees: the values and exceptions the session's verbs give, with the
same information the command prints.
"""
from __future__ import annotations

import pytest

import dmsbatch
from dmsbatch.errors import ServiceUnreachable, SpecProblem
from local import stack as local_stack
from local.processes import free_port
from tests.support.cli import write_study
from tests.support.paths import REPO_ROOT


def test_validate_without_a_profile_needs_no_stack(tmp_path):
    port = free_port()  # a stack that is not running: nothing answers on its ports
    local_stack.RunningStack(local_stack.StackConfig(data_dir=tmp_path, blob_port=port, queue_port=free_port(),
                                                     batch_port=free_port()), {}).save()
    dms = dmsbatch.connect(data_dir=tmp_path)
    spec = dms.validate(REPO_ROOT / "examples" / "historical")
    assert spec.kind == "single" and spec.name == "historical"
    with pytest.raises(SpecProblem) as bad:
        dms.validate(write_study(tmp_path / "bad", "name: bad\ncomand: hydro\n"))
    assert "comand: is not a field here; check its spelling and indentation" in bad.value.lines[0]
    # a profile is read from the profiles container, which needs the stack (or profiles_dir=)
    profiled = write_study(tmp_path / "profiled", "profile: dsm2\n")
    with pytest.raises(ServiceUnreachable):
        dms.validate(profiled)
    assert dms.validate(profiled, profiles_dir=REPO_ROOT / "profiles").profile == "dsm2"
