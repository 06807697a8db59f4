"""Every resource in infra/ against the ARM JSON schema of its type and API version.

No Bicep compiler runs here, so nothing else notices a misspelt property, a string where
Azure wants a boolean, or an API version Azure does not have until a deployment fails. The
schemas are vendored from Azure/azure-resource-manager-schemas (tests/arm_schemas/README.md);
each test id names the schema file the resource was checked against.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.support.arm_schema_check import ARM_SCHEMAS, Result, check_resource, default_store
from tests.support.bicep_resources import Expression, Resource, parse_file, parse_text
from tests.support.paths import REPO_ROOT

INFRA = REPO_ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
DATA_STORAGE = INFRA / "modules" / "data-storage.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
APP_ROLES = INFRA / "modules" / "app-roles.bicep"
STORAGE_SCHEMA = "schemas/2023-05-01/Microsoft.Storage.json"


def infra_resources() -> list[Resource]:
    return [resource for path in BICEP_FILES for resource in parse_file(path)]


def _id(resource: Resource) -> str:
    definition = default_store().find(resource.type, resource.api_version, resource.target_scope)
    schema = definition.doc.removeprefix("schemas/") if definition else "NO-SCHEMA"
    kind = "existing " if resource.existing else ""
    return f"{resource.file.relative_to(INFRA)}:{kind}{resource.symbol}@{schema}"


RESOURCES = infra_resources()


@pytest.mark.parametrize("resource", RESOURCES, ids=[_id(r) for r in RESOURCES])
def test_resource_matches_its_arm_schema(resource: Resource):
    result = check_resource(resource)
    declared = f"{resource.type}@{resource.api_version}"
    assert result.schema is not None, result.report(REPO_ROOT)
    assert not result.problems, (f"{declared} checked against tests/arm_schemas/{result.schema}:\n"
                                 + result.report(REPO_ROOT))


# --- the reader sees every declaration ---------------------------------------------------------

def test_reader_finds_every_resource_pycep_finds():
    """The checker reads pycep's tree itself; it must not skip a declaration pycep's JSON has."""
    ours = {(r.file, r.symbol, r.type, r.api_version, r.existing) for r in RESOURCES if not r.nested}
    pycep = {(path, name, res["type"], res["api_version"], res["existing"])
             for path in BICEP_FILES for name, res in BicepParser().parse(file_path=path).get("resources", {}).items()}
    assert ours == pycep
    assert len(ours) >= 40


def test_literals_and_expressions_are_told_apart():
    [account] = [r for r in parse_file(DATA_STORAGE) if r.symbol == "account"]
    assert account.body["kind"] == "StorageV2"
    assert account.body["sku"] == {"name": Expression("skuName")}
    assert account.body["properties"]["allowSharedKeyAccess"] is False
    [site] = [r for r in parse_file(FUNCTION_APP) if r.symbol == "site"]
    assert site.body["properties"]["siteConfig"]["appSettings"] == Expression("concat(platformSettings, appSettings)")
    scale = site.body["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert isinstance(scale["alwaysReady"], Expression) and scale["alwaysReady"].text.startswith("blobAlwaysReady > 0 ?")
    [ftp] = [r for r in parse_file(FUNCTION_APP) if r.symbol == "ftpCredentials"]
    assert ftp.parent == "site" and ftp.arm_body()["name"] == Expression("format('{0}/{1}', site.name, 'ftp')")


# --- the checker fails when it should ---------------------------------------------------------

def mutated(path: Path, symbol: str, old: str, new: str) -> Resource:
    """A copy of the real declaration ``symbol`` in ``path`` with ``old`` replaced by ``new``
    once, inside that declaration only."""
    text = path.read_text()
    start = re.search(rf"^resource {symbol} '", text, re.M).start()
    end = text.find("\nresource ", start + 1)
    end = len(text) if end < 0 else end
    assert old in text[start:end], f"{old!r} is not in {path.name}:{symbol}; the fixture needs updating"
    text = text[:start] + text[start:end].replace(old, new, 1) + text[end:]
    [resource] = [r for r in parse_text(text, path) if r.symbol == symbol]
    return resource


def only_problem(result: Result) -> str:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def test_a_misspelt_property_is_reported_with_file_symbol_path_and_schema():
    resource = mutated(DATA_STORAGE, "account", "allowSharedKeyAccess: false", "allowSharedKeyAcess: false")
    result = check_resource(resource)
    assert result.schema == STORAGE_SCHEMA
    assert only_problem(result) == (
        "properties.allowSharedKeyAcess: 'allowSharedKeyAcess' is not a property the schema knows; "
        f"did you mean 'allowSharedKeyAccess'? [{STORAGE_SCHEMA}#/definitions/StorageAccountPropertiesCreateParameters]")
    report = result.report(REPO_ROOT)
    assert report.startswith("infra/modules/data-storage.bicep:32 account: properties.allowSharedKeyAcess:")


def test_a_misspelt_property_deep_in_a_literal_object_is_reported():
    resource = mutated(DATA_STORAGE, "account", "keyType: 'Account'", "keyTyp: 'Account'")
    assert only_problem(check_resource(resource)) == (
        "properties.encryption.services.blob.keyTyp: 'keyTyp' is not a property the schema knows; "
        f"did you mean 'keyType'? [{STORAGE_SCHEMA}#/definitions/EncryptionService]")


def test_a_string_where_the_schema_wants_a_boolean_is_reported():
    resource = mutated(DATA_STORAGE, "account", "supportsHttpsTrafficOnly: true", "supportsHttpsTrafficOnly: 'true'")
    assert only_problem(check_resource(resource)) == (
        "properties.supportsHttpsTrafficOnly: string 'true' where the schema wants boolean "
        f"[{STORAGE_SCHEMA}#/definitions/StorageAccountPropertiesCreateParameters"
        "/properties/supportsHttpsTrafficOnly/oneOf/0]")


def test_an_integer_where_the_schema_wants_a_string_and_an_unknown_enum_value_are_reported():
    runtime = mutated(FUNCTION_APP, "site", "version: '3.11'", "version: 3")
    assert only_problem(check_resource(runtime)).startswith(
        "properties.functionAppConfig.runtime.version: integer 3 where the schema wants string "
        "[schemas/2024-04-01/Microsoft.Web.json#/definitions/FunctionsRuntime")
    tls = mutated(DATA_STORAGE, "account", "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_4'")
    assert only_problem(check_resource(tls)).startswith(
        "properties.minimumTlsVersion: 'TLS1_4' is not one of ['TLS1_0', 'TLS1_1', 'TLS1_2', 'TLS1_3']")


def test_a_wrong_api_version_is_reported():
    resource = mutated(DATA_STORAGE, "account", "storageAccounts@2023-05-01", "storageAccounts@2023-05-02")
    result = check_resource(resource)
    assert result.schema is None
    assert only_problem(result) == (
        "no schema for Microsoft.Storage/storageAccounts@2023-05-02: none of ['(no vendored file for that API "
        "version)'] in tests/arm_schemas defines it; vendored API versions of Microsoft.Storage/storageAccounts: "
        "2023-05-01")
    # an API version whose folder is vendored for another namespace, on an existing resource
    existing = mutated(APP_ROLES, "dataAccount", "storageAccounts@2023-05-01", "storageAccounts@2024-07-01")
    assert existing.existing
    assert only_problem(check_resource(existing)).startswith(
        "no schema for Microsoft.Storage/storageAccounts@2024-07-01: none of ['schemas/2024-07-01/Microsoft.Batch.json']")


def test_a_wrong_child_name_and_a_missing_required_property_are_reported():
    ftp = mutated(FUNCTION_APP, "ftpCredentials", "name: 'ftp'", "name: 'ftps'")
    assert only_problem(check_resource(ftp)).startswith("name: 'ftps' is not one of ['ftp']")
    role = mutated(APP_ROLES, "appBatch", "    principalId: appPrincipalId\n", "")
    assert only_problem(check_resource(role)) == (
        "properties.principalId: required by the schema but not given "
        "[schemas/2022-04-01/Microsoft.Authorization.json#/definitions/RoleAssignmentProperties]")


def test_under_an_expression_only_the_property_name_is_checked():
    as_parameter = mutated(DATA_STORAGE, "account", "supportsHttpsTrafficOnly: true", "supportsHttpsTrafficOnly: softDeleteDays")
    assert check_resource(as_parameter).problems == []
    ternary = mutated(FUNCTION_APP, "site", "alwaysReady: blobAlwaysReady", "alwaysReadyy: blobAlwaysReady")
    assert only_problem(check_resource(ternary)).startswith(
        "properties.functionAppConfig.scaleAndConcurrency.alwaysReadyy: 'alwaysReadyy' is not a property")


def test_the_discriminated_destination_is_checked_as_a_webhook():
    events = INFRA / "modules" / "inbox-events.bicep"
    misspelt = mutated(events, "inboxSubscription", "maxEventsPerBatch: 1", "maxEventsPerBatc: 1")
    assert only_problem(check_resource(misspelt)).startswith(
        "properties.destination.properties.maxEventsPerBatc: 'maxEventsPerBatc' is not a property the schema "
        "knows; did you mean 'maxEventsPerBatch'? "
        "[schemas/2022-06-15/Microsoft.EventGrid.json#/definitions/WebHookEventSubscriptionDestinationProperties]")


NESTED = """
param name string
param location string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }

  resource blobs 'blobServices' = {
    name: 'default'

    resource runs 'containers' = {
      name: 'runs'
      properties: {
        publicAcess: 'None'
      }
    }
  }

  resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
    name: 'defaults'
  }
}
"""


def test_nested_children_get_their_parents_type_and_version_and_are_checked():
    resources = {r.symbol: r for r in parse_text(NESTED, Path("nested.bicep"))}
    runs = resources["runs"]
    assert (runs.type, runs.api_version, runs.parent, runs.nested) == (
        "Microsoft.Storage/storageAccounts/blobServices/containers", "2023-05-01", "blobs", True)
    assert check_resource(resources["account"]).problems == check_resource(resources["blobs"]).problems == []
    assert only_problem(check_resource(runs)).startswith(
        "properties.publicAcess: 'publicAcess' is not a property the schema knows; did you mean 'publicAccess'?")
    assert only_problem(check_resource(resources["queues"])).startswith("name: 'defaults' is not one of ['default']")


# --- the vendored schemas are upstream's, and all are used -------------------------------------

def _readme_rows() -> dict[str, str]:
    text = (ARM_SCHEMAS / "README.md").read_text()
    return dict(re.findall(r"^\| `(schemas/[^`]+)` \| ([0-9a-f]{40}) \|", text, re.M))


def _git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_vendored_schemas_are_the_upstream_files_listed_in_the_readme():
    rows = _readme_rows()
    vendored = {p.relative_to(ARM_SCHEMAS).as_posix(): p for p in ARM_SCHEMAS.rglob("*.json")}
    assert set(rows) == set(vendored), "tests/arm_schemas/README.md and the files there disagree"
    for name, path in vendored.items():
        assert _git_blob_id(path) == rows[name], f"{name} differs from the upstream blob the README names"


def test_every_vendored_namespace_file_is_used_by_infra():
    used = {check_resource(r).schema for r in RESOURCES}
    namespaces = {name for name in _readme_rows() if not name.startswith(("schemas/common/", "schemas/2019-04-01/deploy"))}
    assert namespaces - used == set(), "vendored schema files nothing in infra/ uses"
