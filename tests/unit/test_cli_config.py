"""Where the command finds the backend (INI, YAML, environment, local stack) and the errors a modeller can act on.

Keys must never be printed: every test that shows a configuration checks that the
key it wrote is nowhere in the output.
"""
from __future__ import annotations

import json
import re

import pytest

from dmsbatch.config import load_config, map_keys
from tests.support.cli import dms
from tests.support.cli_config import AZURITE_KEY, WRONG_KEY, no_secrets, FAKE_KEY, no_part_of_the_key


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
FIRST_HALF, SECOND_HALF = FAKE_KEY[:48], FAKE_KEY[48:]


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
