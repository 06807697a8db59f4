"""Static checks of infra/: the Bicep parses and the templates agree with the code.

No Azure account is involved: the templates are parsed with pycep (the parser checkov
uses) and compared with dmscontract/settings.py, shared/provision.py and the trigger bindings
in functions/*.py. What runs a process (checkov, packaging, infra/deploy.sh against a fake
``az``): tests/e2e/test_infra_e2e.py.
"""
from __future__ import annotations

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from shared.provision import ensure_storage
from dmscontract.settings import Settings
from tests.support.infra import REPO_ROOT, INFRA, PackagingError, set_blob_source, MAIN, BICEP_FILES, parsed, main_template, blob_trigger_functions


CODE_DIRS = (REPO_ROOT / "shared", REPO_ROOT / "dmscontract", REPO_ROOT / "functions")

# Settings the code can read but that Azure must not have: each is a key or holds one.
NOT_IN_AZURE = {
    "DataStorage": "a connection string carries the account key; the app uses DataStorage__* with its identity",
    "BATCH_ACCOUNT_NAME": "only used with BATCH_ACCOUNT_KEY",
    "BATCH_ACCOUNT_KEY": "the Batch account is in AAD mode; the app uses its identity",
}
# Read by the Functions platform, not by the code.
PLATFORM_PREFIXES = ("AzureWebJobsStorage__", "APPLICATIONINSIGHTS_", "FUNCTIONS_", "WEBSITE_")

BUILT_IN_ROLES = {
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "6aaa78f1-f7de-44ca-8722-c64a23943cae": "Azure Batch Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def param_defaults(template: dict[str, Any]) -> dict[str, Any]:
    return {name: spec.get("default") for name, spec in template.get("parameters", {}).items()}


def resolve(value: Any, params: dict[str, Any]) -> Any:
    """The value of a simple expression: a literal, a parameter (its default), ``string(p)``
    or an interpolation of parameters. None when it depends on anything else."""
    if isinstance(value, bool) or isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if value in params:
            return params[value]
        if "${" in value:
            def sub(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in params or params[name] is None:
                    raise KeyError(name)
                return str(params[name])
            try:
                return re.sub(r"\$\{(\w+)\}", sub, value)
            except KeyError:
                return None
        return value
    if isinstance(value, dict) and "function" in value and value["function"].get("type") == "string":
        inner = resolve(value["function"]["parameters"].get("value_to_convert"), params)
        return None if inner is None else str(inner)
    return None


def template_app_settings() -> dict[str, Any]:
    """Every app setting the templates give the Function App, name -> resolved value (or None)."""
    main = main_template()
    params = param_defaults(main)
    settings = {item["name"]: resolve(item["value"], params) for item in main["variables"]["appSettings"]["value"]}
    app_module = parsed(INFRA / "modules" / "function-app.bicep")
    for item in app_module["variables"]["platformSettings"]["value"]:
        assert item["name"] not in settings, f"{item['name']} is set twice"
        settings[item["name"]] = item["value"] if isinstance(item["value"], str) else None
    # the module must hand both lists to the site
    site = app_module["resources"]["site"]["config"]
    assert site["properties"]["siteConfig"]["appSettings"] == {
        "function": {"type": "concat", "parameters": {"arg_1": "platformSettings", "arg_2": "appSettings"}}
    }, "function-app.bicep no longer sets siteConfig.appSettings to concat(platformSettings, appSettings)"
    assert main["modules"]["functionApp"]["config"]["params"]["appSettings"] == "appSettings"
    return settings


def settings_defaults() -> dict[str, Any]:
    """App-setting name -> default, for every Settings field with a default (from_env reads NAME.upper())."""
    return {f.name.upper(): f.default for f in fields(Settings) if f.default is not MISSING}


def module_constants(source: str) -> dict[str, str]:
    constants = {}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            constants[node.targets[0].id] = node.value.value
    return constants


def code_sources() -> dict[Path, str]:
    return {path: path.read_text() for d in CODE_DIRS for path in sorted(d.glob("*.py"))}


def env_reads() -> set[str]:
    """Names the code reads with env.get / os.environ / os.getenv (f-strings of module constants resolved)."""
    names: set[str] = set()
    call = r"(?:\benv\.get\(|os\.environ\.get\(|os\.getenv\(|os\.environ\[|\benv\[)\s*"
    literal = re.compile(call + r"""(f?)(["'])(.+?)\2""")
    constant = re.compile(call + r"([A-Z_][A-Z0-9_]*)\s*[,)\]]")
    for path, source in code_sources().items():
        constants = module_constants(source)
        for is_f, _, text in literal.findall(source):
            if is_f:
                text = re.sub(r"\{(\w+)\}", lambda m: constants.get(m.group(1), m.group(0)), text)
            assert "{" not in text, f"{path}: cannot resolve the setting name {text!r}"
            names.add(text)
        for name in constant.findall(source):
            assert name in constants, f"{path}: cannot resolve the setting name {name}"
            names.add(constants[name])
    return names


def binding_expressions() -> set[str]:
    """The %NAME% app settings the trigger bindings in functions/*.py resolve (the host needs them set)."""
    return {name for source in (p.read_text() for p in (REPO_ROOT / "functions").glob("*.py"))
            for name in re.findall(r"%(\w+)%", source)}


def binding_connections() -> set[str]:
    return {name for source in (p.read_text() for p in (REPO_ROOT / "functions").glob("*.py"))
            for name in re.findall(r"""connection\s*=\s*["'](\w+)["']""", source)}


def all_resources() -> list[tuple[Path, str, dict[str, Any]]]:
    """(file, symbolic name, resource) for every resource in every template; loops unwrapped."""
    found = []
    for path in BICEP_FILES:
        for name, resource in parsed(path).get("resources", {}).items():
            config = resource["config"]
            if "loop_type" in config or "condition" in config and "config" in config:
                config = config["config"]
            found.append((path, name, {**resource, "config": config}))
    return found


def provisioned_names() -> tuple[set[str], set[str]]:
    """Containers and queues shared/provision.py creates with the default settings."""
    created: dict[str, set[str]] = {"containers": set(), "queues": set()}

    class Recorder:
        def __init__(self, kind: str):
            self.kind = kind

        def create_container(self, name: str) -> None:
            created[self.kind].add(name)

        create_queue = create_container

    class FakeClients:
        settings = Settings(storage_connection_string=None, blob_service_url="https://example", queue_service_url="https://example",
                            batch_account_url="https://example", batch_account_name=None, batch_account_key=None)
        blob_service = Recorder("containers")
        queue_service = Recorder("queues")

    ensure_storage(FakeClients())  # type: ignore[arg-type]
    return created["containers"], created["queues"]


# --- the templates parse ---------------------------------------------------------------

def test_every_bicep_file_parses_with_pycep():
    assert MAIN in BICEP_FILES and len(BICEP_FILES) > 1
    for path in BICEP_FILES:
        template = parsed(path)
        assert template.get("resources") or template.get("modules"), f"{path} declares nothing"
    modules = main_template()["modules"]
    referenced = {INFRA / m["detail"]["path"] for m in modules.values()}
    assert referenced == set(BICEP_FILES) - {MAIN}, "every module file is used by main.bicep, and only those"


# --- names and settings agree with the code ---------------------------------------------

def test_containers_and_queues_are_the_ones_the_code_provisions():
    params = param_defaults(main_template())
    data = main_template()["modules"]["data"]["config"]["params"]
    containers = {resolve(v, params) for v in data["containers"]}
    queues = {resolve(v, params) for v in data["queues"]}
    expected_containers, expected_queues = provisioned_names()
    assert containers == expected_containers
    assert queues == expected_queues
    # and the containers are the Settings defaults
    defaults = settings_defaults()
    assert containers == {defaults["RUNS_CONTAINER"], defaults["INBOX_CONTAINER"], defaults["PROFILES_CONTAINER"]}


def test_app_settings_have_the_code_defaults():
    settings = template_app_settings()
    defaults = settings_defaults()
    compared = 0
    for name, value in settings.items():
        if name in defaults:
            assert value is not None, f"{name}: the template's value is not a literal or a parameter default"
            assert str(value) == str(defaults[name]), f"{name}: template {value!r}, code default {defaults[name]!r}"
            compared += 1
    assert compared >= 10


def test_every_setting_the_code_reads_is_set_or_has_a_default():
    settings = template_app_settings()
    defaults = settings_defaults()
    reads = env_reads()
    assert {"BATCH_ACCOUNT_URL", "DataStorage__blobServiceUri", "DataStorage__queueServiceUri"} <= reads
    missing = sorted(n for n in reads if n not in settings and n not in defaults and n not in NOT_IN_AZURE)
    assert not missing, f"read by the code, not set by the templates and without a default: {missing}"
    # the host resolves %NAME% binding expressions from app settings: code defaults do not help
    unset = sorted(binding_expressions() - set(settings))
    assert not unset, f"binding expressions the templates do not set: {unset}"
    for connection in binding_connections():
        for part in ("blobServiceUri", "queueServiceUri", "credential"):
            assert f"{connection}__{part}" in settings, f"connection {connection}: {connection}__{part} is not set"


def test_every_app_setting_is_read_by_something():
    settings = template_app_settings()
    readers = env_reads() | set(settings_defaults()) | binding_expressions()
    connections = tuple(f"{c}__" for c in binding_connections())
    unread = sorted(n for n in settings
                    if n not in readers and not n.startswith(PLATFORM_PREFIXES) and not n.startswith(connections))
    assert not unread, f"app settings nothing reads: {unread}"
    keyed = sorted(set(settings) & set(NOT_IN_AZURE))
    assert not keyed, f"settings that carry keys must not be set in Azure: {keyed}"
    assert settings["DataStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"


def test_settings_the_readme_documents_are_set():
    """The README's Settings table is what operators are told they can tune: Azure gets each one."""
    table = re.search(r"^## Settings\n(.*?)^## ", (REPO_ROOT / "README.md").read_text(), re.S | re.M)
    assert table, "README.md has no Settings section"
    documented = {name for row in table.group(1).splitlines() if row.startswith("| `")
                  for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", row.split("|")[1])}
    settings = template_app_settings()
    missing = sorted(n for n in documented if n not in settings and n not in NOT_IN_AZURE)
    assert not missing, f"documented in README's Settings table but not set by infra/main.bicep: {missing}"


def test_the_event_grid_subscriptions_name_the_blob_triggers():
    triggers = blob_trigger_functions()
    for param in ("inboxFunctionName", "logsFunctionName"):  # the inbox's zips, the tasks' log uploads
        name = param_defaults(main_template())[param]
        assert re.fullmatch(r"[A-Za-z_]\w*", name)
        assert name in triggers, f"{param} {name!r} is none of the blob triggers {sorted(triggers)}"


# --- identity, not keys ---------------------------------------------------------------------

def test_storage_accounts_are_identity_only_and_hardened():
    accounts = [(p, n, r) for p, n, r in all_resources()
                if r["type"] == "Microsoft.Storage/storageAccounts" and not r["existing"]]
    assert len(accounts) == 3, "data, Functions host and Batch auto-storage"
    for path, name, resource in accounts:
        props = resource["config"]["properties"]
        where = f"{path.name}:{name}"
        assert props["allowSharedKeyAccess"] is False, where
        assert props["allowBlobPublicAccess"] is False, where
        assert props["minimumTlsVersion"] == "TLS1_2", where
        assert props["supportsHttpsTrafficOnly"] is True, where
    blob_services = [(p, r) for p, n, r in all_resources()
                     if r["type"] == "Microsoft.Storage/storageAccounts/blobServices" and not r["existing"]]
    assert len(blob_services) == 3
    for path, resource in blob_services:
        props = resource["config"]["properties"]
        assert props["deleteRetentionPolicy"]["enabled"] is True, path.name
        assert props["containerDeleteRetentionPolicy"]["enabled"] is True, path.name


def test_batch_account_is_aad_only_with_identity_based_auto_storage():
    [(path, name, batch)] = [(p, n, r) for p, n, r in all_resources()
                             if r["type"] == "Microsoft.Batch/batchAccounts" and not r["existing"]]
    props = batch["config"]["properties"]
    assert props["allowedAuthenticationModes"] == ["AAD"]
    assert props["autoStorage"]["authenticationMode"] == "BatchAccountManagedIdentity"
    assert batch["config"]["identity"]["type"] == "UserAssigned"


def test_no_keys_anywhere():
    for path in [*BICEP_FILES, INFRA / "deploy.sh"]:
        text = path.read_text()
        for needle in ("AccountKey", "DefaultEndpointsProtocol", "SharedAccessSignature", "listKeys/", "@secure"):
            assert needle.lower() not in text.lower(), f"{path.name}: {needle}"
        calls = re.findall(r"listKeys\(.*", text)
        if path.name == "inbox-events.bicep":
            assert len(calls) == 1 and ".systemKeys.blobs_extension" in calls[0]
        else:
            assert not calls, f"{path.name}: listKeys outside the Event Grid webhook"
        if path.suffix == ".bicep":
            for output in parsed(path).get("outputs", {}):
                assert not re.search(r"key|secret|password|sas", output, re.I), f"{path.name}: output {output}"


def role_of(path: Path, role_definition_id: Any) -> str:
    """The role GUID of ``subscriptionResourceId('...roleDefinitions', <guid | var | roles.x>)``."""
    function = role_definition_id["function"]
    assert function["type"] == "subscription_resource_id", f"{path.name}: use subscriptionResourceId for roles"
    argument = function["parameters"]["resource_name_1"]
    variables = {name: spec["value"] for name, spec in parsed(path).get("variables", {}).items()}
    if isinstance(argument, dict):  # roles.someRole
        operands = argument["operator"]["operands"]
        argument = variables[operands["operand_1"]][operands["operand_2"]]
    elif argument in variables:
        argument = variables[argument]
    assert GUID.fullmatch(argument), f"{path.name}: {argument!r} is not a role id"
    return argument


def test_role_assignments_are_built_in_least_privilege_roles():
    used: dict[str, str] = {}
    for path, name, resource in all_resources():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        role = role_of(path, resource["config"]["properties"]["roleDefinitionId"])
        assert role in BUILT_IN_ROLES, f"{path.name}:{name}: role {role} is not in the reviewed list"
        assert resource["config"]["properties"]["principalType"] in ("ServicePrincipal", "operatorPrincipalType")
        used[f"{path.name}:{name}"] = BUILT_IN_ROLES[role]
    assert used["app-roles.bicep:appBatch"] == "Azure Batch Data Contributor"
    assert used["app-roles.bicep:appDataBlobs"] == "Storage Blob Data Contributor"
    assert used["app-roles.bicep:appDataQueues"] == "Storage Queue Data Contributor"
    assert used["app-roles.bicep:poolRuns"] == "Storage Blob Data Contributor"
    assert used["app-roles.bicep:appHostBlobs"] == "Storage Blob Data Owner"
    assert "Storage Blob Data Owner" not in {r for k, r in used.items() if k != "app-roles.bicep:appHostBlobs"}
    roles = parsed(INFRA / "modules" / "app-roles.bicep")["resources"]
    assert roles["poolRuns"]["config"]["config"]["scope"] == "runs", "the pool identity's scope is the runs container"
    assert roles["runs"]["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert roles["runs"]["config"]["name"] == "runsContainer"


def test_resource_names_fit_azure_naming_rules():
    main = main_template()
    prefix = next(d["argument"] for d in main["parameters"]["prefix"]["decorators"] if d["type"] == "max_length")
    names = main["variables"]["names"]["value"]
    longest = {n: t.replace("${prefix}", "a" * prefix).replace("${suffix}", "x" * 6) for n, t in names.items()}
    assert "take(uniqueString" in MAIN.read_text() and ", 6)" in MAIN.read_text()
    for key in ("dataStorage", "hostStorage", "batchStorage", "batchAccount"):
        assert re.fullmatch(r"[a-z0-9]{3,24}", longest[key]), f"{key}: {longest[key]}"
    # the Functions host id is the app name cut to 32 characters: keep names unique within that
    assert len(longest["functionApp"]) <= 32
    deploy = (INFRA / "deploy.sh").read_text()
    assert "^[a-z][a-z0-9]{1,%d}$" % (prefix - 1) in deploy, "deploy.sh checks the prefix as main.bicep limits it"


def test_set_blob_source_edge_cases():
    source = ("import azure.functions as func\nbp = func.Blueprint()\n\n"
              "@bp.blob_trigger(arg_name='b', path='inbox/{name}', connection='DataStorage')\ndef f(b): pass\n")
    switched, count = set_blob_source(source, "EventGrid")
    assert count == 1 and "source=func.BlobSource.EVENT_GRID, arg_name='b'" in switched
    assert set_blob_source(switched, "EventGrid") == (switched, 0)
    with pytest.raises(PackagingError):
        set_blob_source(source.replace("import azure.functions as func", "from azure import functions"), "EventGrid")


def test_the_runs_lifecycle_rule_deletes_old_runs_blobs_only_when_a_retention_is_set():
    [(path, _, rule)] = [(p, n, r) for p, n, r in all_resources() if r["type"] == "Microsoft.Storage/storageAccounts/managementPolicies"]
    [policy] = rule["config"]["properties"]["policy"]["rules"]
    assert policy["definition"]["filters"]["prefixMatch"] == ["${runsContainer}/"], "the runs container alone"
    assert policy["definition"]["actions"]["baseBlob"]["delete"] == {"daysAfterModificationGreaterThan": "runsRetentionDays"}
    text = path.read_text()
    assert "= if (runsRetentionDays > 0) {" in text, "off unless a retention is given"
    main = (REPO_ROOT / "infra" / "main.bicep").read_text()
    assert "param runsRetentionDays int = 0" in main and "runsRetentionDays: runsRetentionDays" in main, "off by default"
