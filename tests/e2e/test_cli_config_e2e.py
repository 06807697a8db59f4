"""Where the command finds the backend (INI, YAML, environment, local stack) and the errors a modeller can act on.

Keys must never be printed: every test that shows a configuration checks that the
key it wrote is nowhere in the output.
"""
from __future__ import annotations

import re
from pathlib import Path

from local import stack as local_stack
from local.batch import DEV_BATCH_ACCOUNT_KEY
from local.processes import free_port
from tests.support.cli import dms, dms_process
from tests.support.cli_config import AZURITE_KEY, WRONG_KEY, no_secrets, no_part_of_the_key
from tests.support.runs import status_json


def ini_for(stack, path: Path, storage_key: str = AZURITE_KEY, batch_key: str = DEV_BATCH_ACCOUNT_KEY, **extra: str) -> Path:
    """The modellers' INI format, pointed at the test stack (the _STORAGE_*_URL keys are for emulators)."""
    blob, queue = stack.azurite.blob_url, stack.azurite.queue_url
    lines = ["[DEFAULT]", "_BATCH_ACCOUNT_NAME = devbatchaccount1", f"_BATCH_ACCOUNT_KEY = {batch_key}",
             f"_BATCH_ACCOUNT_URL = {stack.batch_url}", "_STORAGE_ACCOUNT_NAME = devstoreaccount1",
             f"_STORAGE_ACCOUNT_KEY = {storage_key}", f"_STORAGE_BLOB_URL = {blob}", f"_STORAGE_QUEUE_URL = {queue}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- errors a modeller can act on ---------------------------------------------------------------

def test_no_local_stack_says_where_and_how_to_start_one(tmp_path):
    port = free_port()
    local_stack.RunningStack(local_stack.StackConfig(data_dir=tmp_path, blob_port=port, queue_port=free_port(),
                                                     batch_port=free_port()), {}).save()
    for verb in (["status"], ["submit", "examples/historical"], ["logs", "some-run"], ["profiles", "list"]):
        outcome = dms("--data-dir", tmp_path, *verb)
        assert outcome.exit_code == 3, outcome
        assert outcome.stderr.strip() == f"error: no local stack at http://127.0.0.1:{port}; start it with `dmsbatch up`"
    # the installed command, as a modeller runs it
    outcome = dms_process("status", DMSBATCH_DATA_DIR=str(tmp_path))
    assert outcome.exit_code == 3 and f"no local stack at http://127.0.0.1:{port}" in outcome.stderr and "Traceback" not in outcome.stderr


def test_a_wrong_storage_key_is_refused_by_name(stack, tmp_path):
    ini = ini_for(stack, tmp_path / "wrong.ini", storage_key=WRONG_KEY)
    outcome = dms("--config", ini, "status")
    assert outcome.exit_code == 3, outcome
    assert outcome.stderr.startswith(f"error: storage at http://127.0.0.1:{stack.config.blob_port} refused the credentials")
    assert "_STORAGE_ACCOUNT_KEY" in outcome.stderr and "Traceback" not in outcome.output
    no_secrets(outcome.output)

    right = dms("--config", ini_for(stack, tmp_path / "right.ini"), "status")
    assert right.exit_code == 0, right


def test_a_wrong_batch_key_is_refused_by_name(stack, tmp_path):
    ini = ini_for(stack, tmp_path / "wrongbatch.ini", batch_key="c2VjcmV0LWJhdGNoLWtleQ==")
    package = tmp_path / "p.zip"
    import zipfile

    with zipfile.ZipFile(package, "w") as z:
        z.writestr("x", "x")
    outcome = dms("--config", ini, "apps", "publish", "tool", "1.0", package)
    assert outcome.exit_code == 3 and "refused the key for 'devbatchaccount1'" in outcome.stderr, outcome
    no_secrets(outcome.output)


# ---- the local stack's own commands ------------------------------------------------------------

def test_up_and_down_start_and_stop_a_stack(tmp_path):
    data_dir = tmp_path / "stack"
    env = {"DMSBATCH_BLOB_PORT": "0", "DMSBATCH_QUEUE_PORT": "0", "DMSBATCH_BATCH_PORT": "0"}
    up = dms_process("--data-dir", data_dir, "up", "--no-functions-host", timeout=120, **env)
    try:
        assert up.exit_code == 0, up
        assert re.match(r"local stack up: blob http://127\.0\.0\.1:\d+/devstoreaccount1, queue .*, batch http://127\.0\.0\.1:\d+$",
                        up.stdout.strip())
        again = dms_process("--data-dir", data_dir, "up", **env)
        assert again.stdout == up.stdout, "a running stack is left as it is"
        assert dms_process("--data-dir", data_dir, "status").stdout.strip() == "no runs yet"
        shown = dms_process("--data-dir", data_dir, "config", "show").stdout
        assert f"local stack: {data_dir.resolve()} (running)" in shown
        no_secrets(shown)
    finally:
        down = dms_process("--data-dir", data_dir, "down")
    assert down.exit_code == 0 and down.stdout.strip() == "local stack stopped"
    assert dms_process("--data-dir", data_dir, "down").stdout.strip() == "local stack was not running"


# ---- account keys that are not base64: a configuration error, before anything is sent ----------

NOT_BASE64 = "q7NsPz4xVbUe2kYd9TfW1mLc8RgHj3AiQo6XnBrE5wCtMy0SaKvDlFuJ7pZeG2hI4sOb9cNx1qWzVyT8rUkLm"  # cut short


def test_a_key_that_is_not_base64_is_a_config_error_naming_the_setting(stack, tmp_path):
    outcomes = {
        "_STORAGE_ACCOUNT_KEY": dms("--config", ini_for(stack, tmp_path / "s.ini", storage_key=NOT_BASE64), "status"),
        "_BATCH_ACCOUNT_KEY": dms("--config", ini_for(stack, tmp_path / "b.ini", batch_key=NOT_BASE64 + "!"), "status"),
        "BATCH_ACCOUNT_KEY": dms("status", env={**stack.app_settings(), "BATCH_ACCOUNT_KEY": NOT_BASE64}),
        "DataStorage (its AccountKey)": dms("status", env={"DataStorage": stack.app_settings()["DataStorage"].replace(
            AZURITE_KEY, NOT_BASE64)}),
    }
    for setting, outcome in outcomes.items():
        assert outcome.exit_code == 2, outcome
        assert f": {setting} is not valid base64, so it cannot be an account key: " in outcome.stderr, outcome
        assert "nothing was sent" in outcome.stderr and "refused" not in outcome.stderr
        no_part_of_the_key(outcome.output, NOT_BASE64)
    assert "its 85 characters do not make whole base64 groups" in outcomes["_STORAGE_ACCOUNT_KEY"].stderr
    assert "characters other than A-Z, a-z, 0-9, '+', '/'" in outcomes["_BATCH_ACCOUNT_KEY"].stderr

    spread = tmp_path / "spread.ini"  # an indented continuation: configparser joins the lines
    spread.write_text(ini_for(stack, tmp_path / "x.ini").read_text().replace(
        f"_STORAGE_ACCOUNT_KEY = {AZURITE_KEY}", f"_STORAGE_ACCOUNT_KEY = {AZURITE_KEY[:40]}\n    {AZURITE_KEY[40:]}"))
    outcome = dms("--config", spread, "status")
    assert outcome.exit_code == 2 and "it spans lines or holds spaces" in outcome.stderr, outcome
    no_secrets(outcome.output)


def test_logs_of_a_running_task_with_a_malformed_batch_key_is_a_config_error_not_a_traceback(stack, store, tmp_path):
    """The reported case: the Batch SDK decodes the key only when it signs the node read (binascii.Error)."""
    from tests.support.waiting import wait_until

    spec = tmp_path / "slow.yaml"
    spec.write_text("name: slow\ncommand: for i in $(seq 1 30); do echo \"step $i\"; sleep 1; done\n")
    run_id = dms("submit", spec, stack=stack).stdout.splitlines()[0]
    wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 60, what="the run to start")
    ini = ini_for(stack, tmp_path / "badbatch.ini", batch_key=NOT_BASE64)
    for argv in (["logs", run_id], ["logs", run_id, "--follow"]):
        outcome = dms_process("--config", ini, *argv, timeout=60)
        assert outcome.exit_code == 2, outcome
        assert outcome.stderr.startswith(f"error: INI file {ini}: _BATCH_ACCOUNT_KEY is not valid base64"), outcome
        assert "Traceback" not in outcome.output
        no_part_of_the_key(outcome.output, NOT_BASE64)
    assert dms("cancel", run_id, stack=stack).exit_code == 0
