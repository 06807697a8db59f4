"""`dmsbatch wait` as a modeller meets it in a terminal: Ctrl-C says the run goes on and how to come back to it,
and a run id that does not exist is said at once. Real processes, a real SIGINT."""
from __future__ import annotations

import signal
import subprocess
import time

from tests.support.cli import dms, dmsbatch_argv, process_env
from tests.support.paths import REPO_ROOT
from tests.support.runs import post_cancel, post_spec, status_json, unique_run_id, wait_for_final_status
from tests.support.waiting import wait_until


def test_ctrl_c_while_waiting_says_the_run_goes_on_and_how_to_wait_again_or_cancel(clients, store, stack):
    run_id = unique_run_id("ctrlc")
    post_spec(clients, {"run_id": run_id, "command": "sleep 60"})
    assert wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 60, what="the run to start")
    waiting = subprocess.Popen(dmsbatch_argv() + ["wait", run_id], cwd=REPO_ROOT, env=process_env(stack),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # it is polling now
        assert waiting.poll() is None, waiting.communicate()
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 130, (out, err)
    assert f"stopped waiting; run {run_id} goes on without you." in err
    assert f"dmsbatch wait {run_id}" in err and f"dmsbatch cancel {run_id}" in err
    assert "Aborted!" not in err + out
    assert status_json(store, run_id)["state"] == "running", "stopping the wait did not stop the run"
    post_cancel(clients, run_id, "test over")
    assert wait_for_final_status(clients, run_id, timeout=60)["state"] == "cancelled"


def test_waiting_for_a_run_that_does_not_exist_says_so_at_once(stack):
    started = time.monotonic()
    result = dms("wait", "no-such-run-anywhere", stack=stack)
    assert result.exit_code != 0 and "there is no run 'no-such-run-anywhere'" in result.output
    assert time.monotonic() - started < 10, "not after a 30 s grace: nothing anywhere says the run is on its way"


def test_a_retry_shows_in_status_json_and_the_cli_while_the_run_goes_on(clients, store, stack, tmp_path):
    run_id = unique_run_id("retry")
    marker = '"$AZ_BATCH_NODE_SHARED_DIR/tried-$AZ_BATCH_JOB_ID"'
    post_spec(clients, {"run_id": run_id, "constraints": {"max_task_retries": 2},
                        "command": f"if [ ! -f {marker} ]; then touch {marker}; exit 1; fi; sleep 20"})
    assert wait_until(lambda: ((status_json(store, run_id) or {}).get("tasks") or {}).get("retries") == 1, 60,
                      what="status.json to count the retry"), status_json(store, run_id)
    assert status_json(store, run_id)["state"] == "running", "counted as it happens, not at the end"
    shown = dms("status", run_id, stack=stack)
    assert "retries: 1   requeues (node preempted or lost): 0" in shown.stdout, shown
    drawn = dms("report", run_id, "-o", str(tmp_path / "now.html"), stack=stack)  # a report of the run still going
    assert drawn.exit_code == 0 and "provisional report (the run is still going)" in drawn.stderr, drawn
    page = (tmp_path / "now.html").read_text()
    assert "provisional" in page.lower() and 'id="task-main"' in page
    final = wait_for_final_status(clients, run_id, timeout=60)
    assert final["state"] == "succeeded" and final["tasks"]["retries"] == 1
