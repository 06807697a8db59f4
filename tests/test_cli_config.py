"""Where the command finds the backend (INI, YAML, environment, local stack) and the errors a modeller can act on.

Keys must never be printed: every test that shows a configuration checks that the
key it wrote is nowhere in the output.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dmsbatch.config import load_config, map_keys
from local import stack as local_stack
from local.batch import DEV_BATCH_ACCOUNT_KEY
from local.processes import free_port
from tests.cli_helpers import dms, dms_process

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = "d3Jvbmcta2V5LW5vdC1hLXNlY3JldC1hdC1hbGwtZm9yLXRlc3Rpbmc="
SECRETS = (AZURITE_KEY, WRONG_KEY, DEV_BATCH_ACCOUNT_KEY, "c2VjcmV0LWJhdGNoLWtleQ==")


def no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a key was printed"


def ini_for(stack, path: Path, storage_key: str = AZURITE_KEY, batch_key: str = DEV_BATCH_ACCOUNT_KEY, **extra: str) -> Path:
    """The modellers' INI format, pointed at the test stack (the _STORAGE_*_URL keys are for emulators)."""
    blob, queue = stack.azurite.blob_url, stack.azurite.queue_url
    lines = ["[DEFAULT]", "_BATCH_ACCOUNT_NAME = devbatchaccount1", f"_BATCH_ACCOUNT_KEY = {batch_key}",
             f"_BATCH_ACCOUNT_URL = {stack.batch_url}", "_STORAGE_ACCOUNT_NAME = devstoreaccount1",
             f"_STORAGE_ACCOUNT_KEY = {storage_key}", f"_STORAGE_BLOB_URL = {blob}", f"_STORAGE_QUEUE_URL = {queue}"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- mapping ----------------------------------------------------------------------------------

def test_config_show_says_what_each_ini_key_maps_to_and_hides_the_keys(tmp_path):
    ini = tmp_path / "modeller.ini"
    ini.write_text("[DEFAULT]\n_BATCH_ACCOUNT_NAME = dwrbatch\n_BATCH_ACCOUNT_KEY = c2VjcmV0LWJhdGNoLWtleQ==\n"
                   "_BATCH_ACCOUNT_URL = https://dwrbatch.westus2.batch.azure.com\n_STORAGE_ACCOUNT_NAME = dwrmodels\n"
                   f"_STORAGE_ACCOUNT_KEY = {AZURITE_KEY}\n_POOL_SIZE = 4\n")
    outcome = dms("--config", ini, "config", "show")
    assert outcome.exit_code == 0, outcome
    no_secrets(outcome.output)
    lines = outcome.stdout.splitlines()
    assert lines[0] == f"source: INI file {ini}"
    assert re.search(r"_STORAGE_ACCOUNT_NAME, _STORAGE_ACCOUNT_KEY\s+->\s+DataStorage = DefaultEndpointsProtocol=https;"
                     r"AccountName=dwrmodels;AccountKey=\*\*\*\*;EndpointSuffix=core.windows.net", outcome.stdout)
    assert re.search(r"_BATCH_ACCOUNT_URL\s+->\s+BATCH_ACCOUNT_URL = https://dwrbatch.westus2.batch.azure.com", outcome.stdout)
    assert re.search(r"_BATCH_ACCOUNT_KEY\s+->\s+BATCH_ACCOUNT_KEY = \*\*\*\* \(hidden\)", outcome.stdout)
    assert "batch: https://dwrbatch.westus2.batch.azure.com (shared key)" in lines
    assert "ignored: _POOL_SIZE (not a setting dmsbatch reads)" in lines

    shown = json.loads(dms("--config", ini, "config", "show", "--json").stdout)
    assert shown["settings"]["BATCH_ACCOUNT_KEY"] == "**** (hidden)" and shown["from"]["BATCH_ACCOUNT_URL"] == ["_BATCH_ACCOUNT_URL"]


def test_without_keys_the_ini_maps_to_endpoints_and_default_azure_credential(tmp_path):
    ini = tmp_path / "nokeys.ini"
    ini.write_text("[DEFAULT]\n_BATCH_ACCOUNT_NAME = dwrbatch\n_BATCH_ACCOUNT_URL = dwrbatch.westus2.batch.azure.com\n"
                   "_STORAGE_ACCOUNT_NAME = dwrmodels\n")
    config = load_config(ini)
    assert config.app_settings == {
        "DataStorage__blobServiceUri": "https://dwrmodels.blob.core.windows.net",
        "DataStorage__queueServiceUri": "https://dwrmodels.queue.core.windows.net",
        "BATCH_ACCOUNT_URL": "https://dwrbatch.westus2.batch.azure.com", "BATCH_ACCOUNT_NAME": "dwrbatch"}
    settings = config.settings()
    assert settings.storage_connection_string is None and settings.batch_account_key is None  # clients use DefaultAzureCredential
    shown = dms("--config", ini, "config", "show").stdout
    assert "storage: https://dwrmodels.blob.core.windows.net (DefaultAzureCredential (no storage key given))" in shown
    assert "batch: https://dwrbatch.westus2.batch.azure.com (DefaultAzureCredential (no Batch key given))" in shown


def test_a_yaml_config_and_the_environment_map_the_same_way(tmp_path):
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text("storage_account_name: dwrmodels\nbatch_account_url: https://b.westus2.batch.azure.com\n"
                         "runs_container: dsm2-runs\n")
    config = load_config(yaml_file)
    assert config.settings().runs_container == "dsm2-runs"
    assert config.settings().blob_service_url == "https://dwrmodels.blob.core.windows.net"

    env = {"DataStorage": "UseDevelopmentStorage=true", "BATCH_ACCOUNT_URL": "http://127.0.0.1:1", "RUNS_CONTAINER": "x"}
    from_env = load_config(None, None, env)
    assert from_env.source == "environment variables" and from_env.settings().runs_container == "x"

    home = tmp_path / "home"
    (home / ".config" / "dmsbatch").mkdir(parents=True)
    (home / ".config" / "dmsbatch" / "config.yaml").write_text(yaml_file.read_text())
    assert load_config(None, None, {"HOME": str(home)}).source.endswith("/.config/dmsbatch/config.yaml")


def test_config_problems_are_usage_errors(tmp_path):
    assert dms("--config", tmp_path / "absent.ini", "status").exit_code == 2
    only_key = tmp_path / "onlykey.ini"
    only_key.write_text("[DEFAULT]\n_STORAGE_ACCOUNT_KEY = c2VjcmV0LWJhdGNoLWtleQ==\n")
    outcome = dms("--config", only_key, "status")
    assert outcome.exit_code == 2 and "needs the account's name (_STORAGE_ACCOUNT_NAME)" in outcome.stderr
    no_secrets(outcome.output)
    with pytest.raises(Exception):
        map_keys({}, "nothing")


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


def test_a_wrong_storage_account_name_on_azure_is_unreachable_not_a_traceback(tmp_path):
    ini = tmp_path / "typo.ini"
    # a name that cannot resolve, with a key so no credential is probed: the DNS failure is the whole story
    ini.write_text(f"[DEFAULT]\n_STORAGE_ACCOUNT_NAME = nosuchaccount\n_STORAGE_ACCOUNT_KEY = {WRONG_KEY}\n"
                   "_STORAGE_BLOB_URL = https://nosuchaccount.blob.invalid\n_STORAGE_QUEUE_URL = https://nosuchaccount.queue.invalid\n")
    outcome = dms("--config", ini, "status")
    assert outcome.exit_code == 3, outcome
    assert outcome.stderr.startswith("error: cannot reach https://nosuchaccount.blob.invalid")
    assert f"check the account name in INI file {ini}" in outcome.stderr
    no_secrets(outcome.output)


def test_apps_publish_for_azure_prints_the_az_commands(tmp_path):
    import zipfile

    ini = tmp_path / "az.ini"
    ini.write_text("[DEFAULT]\n_BATCH_ACCOUNT_NAME = dwrbatch\n_BATCH_ACCOUNT_URL = https://dwrbatch.westus2.batch.azure.com\n"
                   "_STORAGE_ACCOUNT_NAME = dwrmodels\n")
    package = tmp_path / "dsm2.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("bin/hydro", "x")
    outcome = dms("--config", ini, "apps", "publish", "dsm2", "8.2.2", package, "--default", "--resource-group", "dwr-rg")
    assert outcome.exit_code == 0, outcome
    assert outcome.stdout.splitlines() == [
        f"az batch application package create --resource-group dwr-rg --name dwrbatch --application-name dsm2 "
        f"--version-name 8.2.2 --package-file {package}",
        "az batch application set --resource-group dwr-rg --name dwrbatch --application-name dsm2 --default-version 8.2.2"]


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


# ---- mistakes in a config file: said by place, never by printing the key ----------------------

# a made-up 64-byte account key (88 base64 characters, like the portal's), and its two halves as a
# modeller's editor may wrap it: the second half ends in '==', so an INI reads it as a name of its own
# (cut at 48 characters, the first half is itself base64; cut elsewhere, it is not)
FAKE_KEY = "q7NsPz4xVbUe2kYd9TfW1mLc8RgHj3AiQo6XnBrE5wCtMy0SaKvDlFuJ7pZeG2hI4sOb9cNx1qWzVyT8rUkLmA=="
FIRST_HALF, SECOND_HALF = FAKE_KEY[:48], FAKE_KEY[48:]


def no_part_of_the_key(text: str, key: str = FAKE_KEY, width: int = 6) -> None:
    """Not the key, nor any run of ``width`` of its characters (a piece of a key is still a leak)."""
    pieces = {key[i:i + width] for i in range(len(key) - width + 1)}
    leaked = sorted(piece for piece in pieces if piece.strip("=") == piece and piece in text)
    assert not leaked, f"part of the key was printed: {leaked[:3]}"


def test_a_yaml_config_that_does_not_parse_says_line_and_column_never_the_line(tmp_path):
    for name, text, where in (
        ("colon.yaml", f"storage_account_name: dwrmodels\nstorage_account_key: {FAKE_KEY}: extra\n", "line 2, column "),
        ("flow.yaml", f"storage_account_name: dwrmodels\nstorage_account_key: [{FAKE_KEY}\n", "line 3, column 1"),
        ("tag.yaml", f"storage_account_name: dwrmodels\nstorage_account_key: !{FAKE_KEY}\n", "line 2, column "),
    ):
        path = tmp_path / name
        path.write_text(text)
        outcome = dms("--config", path, "config", "show")
        assert outcome.exit_code == 2, outcome
        assert outcome.stderr.startswith(f"error: {path} is not valid YAML: {where}"), outcome
        no_part_of_the_key(outcome.output)


def test_an_ini_key_wrapped_onto_the_next_line_is_named_by_its_line_only(tmp_path):
    wrapped = tmp_path / "wrapped.ini"  # the second half has '=' in it: read as an option of its own
    wrapped.write_text(f"[DEFAULT]\n_STORAGE_ACCOUNT_NAME = dwrmodels\n_STORAGE_ACCOUNT_KEY = {FIRST_HALF}\n{SECOND_HALF}\n"
                       "_POOL_SIZE = 4\n")
    outcome = dms("--config", wrapped, "config", "show")
    assert outcome.exit_code == 0, outcome
    assert "ignored: line 4 (not a setting name; a value wrapped onto the next line? write each value on its key's line)" \
        in outcome.stdout.splitlines()
    assert "ignored: _POOL_SIZE (not a setting dmsbatch reads)" in outcome.stdout.splitlines()
    no_part_of_the_key(outcome.output)
    as_json = dms("--config", wrapped, "config", "show", "--json")
    assert json.loads(as_json.stdout)["ignored_lines"] == [4]
    no_part_of_the_key(as_json.output)

    cut_elsewhere = tmp_path / "cut.ini"  # the first half is not base64 then: an error, pointing at the wrapped line
    cut_elsewhere.write_text(wrapped.read_text().replace(f"{FIRST_HALF}\n{SECOND_HALF}", f"{FAKE_KEY[:50]}\n{FAKE_KEY[50:]}"))
    outcome = dms("--config", cut_elsewhere, "config", "show")
    assert outcome.exit_code == 2, outcome
    assert outcome.stderr.startswith(f"error: INI file {cut_elsewhere}: _STORAGE_ACCOUNT_KEY is not valid base64"), outcome
    assert "(line 4 of the file is no setting: the rest of a key, wrapped onto the next line?)" in outcome.stderr
    no_part_of_the_key(outcome.output)

    unparsable = tmp_path / "unparsable.ini"  # no '=' on the wrapped line: configparser refuses the file
    unparsable.write_text(f"[DEFAULT]\n_STORAGE_ACCOUNT_NAME = dwrmodels\n_STORAGE_ACCOUNT_KEY = {FIRST_HALF}\n"
                          f"{SECOND_HALF.rstrip('=')}\n")
    outcome = dms("--config", unparsable, "config", "show")
    assert outcome.exit_code == 2, outcome
    assert outcome.stderr.strip() == (f"error: {unparsable} is not a readable INI file: line 4: not `NAME = value` (a value "
                                      "wrapped onto the next line? write each value on its key's line)")
    no_part_of_the_key(outcome.output)

    before_section = tmp_path / "nosection.ini"
    before_section.write_text(f"_STORAGE_ACCOUNT_KEY = {FAKE_KEY}\n[DEFAULT]\n")
    outcome = dms("--config", before_section, "config", "show")
    assert outcome.exit_code == 2 and "line 1: a setting before any section; start the file with [DEFAULT]" in outcome.stderr
    no_part_of_the_key(outcome.output)


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
    from shared.status import read_status
    from tests.conftest import wait_until

    spec = tmp_path / "slow.yaml"
    spec.write_text("name: slow\ncommand: for i in $(seq 1 30); do echo \"step $i\"; sleep 1; done\n")
    run_id = dms("submit", spec, stack=stack).stdout.splitlines()[0]
    wait_until(lambda: (read_status(store, run_id) or {}).get("state") == "running", 60, what="the run to start")
    ini = ini_for(stack, tmp_path / "badbatch.ini", batch_key=NOT_BASE64)
    for argv in (["logs", run_id], ["logs", run_id, "--follow"]):
        outcome = dms_process("--config", ini, *argv, timeout=60)
        assert outcome.exit_code == 2, outcome
        assert outcome.stderr.startswith(f"error: INI file {ini}: _BATCH_ACCOUNT_KEY is not valid base64"), outcome
        assert "Traceback" not in outcome.output
        no_part_of_the_key(outcome.output, NOT_BASE64)
    assert dms("cancel", run_id, stack=stack).exit_code == 0
