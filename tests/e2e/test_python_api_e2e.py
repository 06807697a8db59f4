"""The Python API (``dmsbatch.connect()``) as a notebook uses it, against the real local stack.

What a notebook user sees: the values and exceptions the session's verbs give, with the
same information the command prints.
"""
from __future__ import annotations

import pytest

import dmsbatch
from dmsbatch.errors import RunFailed, UnknownRun
from tests.support.cli import write_study


def test_a_failed_run_raises_with_its_failed_tasks_id_and_stderr_tail(stack, tmp_path):
    dms = dmsbatch.connect(data_dir=stack.config.data_dir)
    study = write_study(tmp_path / "fails", "name: fails\ncommand: echo 'reading hydro.inp' >&2; "
                        "echo 'negative depth at node 12' >&2; exit 3\n")
    run = dms.submit(study, via="queue")
    with pytest.raises(RunFailed) as raised:
        dms.wait(run.run_id, timeout=120)
    failed = raised.value
    assert str(failed) == f"run {run.run_id}: failed (0/1 tasks succeeded): task main exited with code 3"
    assert failed.status["state"] == "failed" and failed.status["reason"] == "task main exited with code 3"
    assert failed.task_id == "main"
    assert failed.stderr_tail == "reading hydro.inp\nnegative depth at node 12\n"
    assert failed.lines == ["stderr of task main (last 2 lines):", "  reading hydro.inp", "  negative depth at node 12",
                            f"`dmsbatch logs {run.run_id} main --stderr` prints all of it"]
    assert dms.logs(run.run_id, failed.task_id, "stderr") == failed.stderr_tail
    assert dms.wait(run.run_id, check=False)["state"] == "failed"  # the documented shape: status.json


def test_wait_tells_on_note_at_once_that_a_run_id_has_no_trace(stack):
    dms = dmsbatch.connect(data_dir=stack.config.data_dir)
    heard: list[str] = []
    with pytest.raises(UnknownRun):
        dms.wait("no-such-run-z", on_note=heard.append, appear_within=1, poll=0.2)
    assert heard == ["run no-such-run-z has no status yet; waiting up to 1 s for it to appear "
                     "(`dmsbatch status` lists recent runs)"]
