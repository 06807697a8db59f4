"""The REST spec extract in local/batch/web/rest_spec/ is faithful to the azure-batch SDK.

local/batch/web/rest_spec/batch-2025-06-01.json is a hand transcription (no
descriptions, examples or response schemas) of BatchService.json, api-version
2025-06-01, from Azure/azure-rest-api-specs.  The azure-batch SDK installed in
.venv was generated from the same TypeSpec/Swagger, so the two must agree on:

* the operations: every (method, path template) pair, the query and header
  parameter names each request builder sends, the success status codes the
  client accepts, and the request body (its schema and whether it is
  required, from the client method's signature);
* the models: for every definition with an SDK model class, the JSON property
  names, and which properties are required (a field whose type hint is not
  Optional); for enum definitions, the set of values;
* each property's type (type/format/$ref/items, mapped to the Python type the
  SDK annotates it with) and readOnly (the SDK gives read-only fields
  visibility ["read"]).

Where the SDK legitimately differs from the spec the difference is listed
explicitly below, each with the reason; nothing is silently skipped: every
definition in the extract is either compared or named in one of those lists.
All mismatches are collected and reported in one assertion message per test.

What the SDK cannot confirm (it is checked only against the spec text): the
types, defaults and bounds of query parameters, "consumes", property
formats that all map to str (uri, arm-id, password), defaults and the
x-ms-enum modelAsString flags.

No services are needed.
"""
from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from pathlib import Path

import pytest

import azure.batch.models as sdk_models_public
from azure.batch._operations import _operations as sdk_operations
from azure.batch._utils.model_base import Model as SdkModel
from azure.batch.models import _enums as sdk_enums
from azure.batch.models import _models as sdk_models

EXTRACT_PATH = Path(__file__).resolve().parents[2] / "local" / "batch" / "web" / "rest_spec" / "batch-2025-06-01.json"

# --- Where the SDK legitimately differs from the spec ------------------------

# Definitions the SDK generates under another class name (TypeSpec client
# customisations renamed them for Python).
SDK_CLASS_RENAMES = {
    "BatchNodeUserUpdateOptions": "BatchNodeUserReplaceOptions",
    "OutputFileUploadConfig": "OutputFileUploadConfiguration",
}

# "...Update" definitions are the PATCH/replace shapes of a model: same
# properties, nothing required.  The SDK has no separate class for them; it
# reuses the base model (e.g. BatchJobScheduleUpdateOptions.job_specification
# is typed BatchJobSpecification).  For these we compare the property names
# with the base class and check the spec requires nothing.
SDK_UPDATE_VARIANT_OF = {
    "BatchAutoPoolSpecificationUpdate": "BatchAutoPoolSpecification",
    "BatchContainerConfigurationUpdate": "BatchContainerConfiguration",
    "BatchJobManagerTaskUpdate": "BatchJobManagerTask",
    "BatchJobNetworkConfigurationUpdate": "BatchJobNetworkConfiguration",
    "BatchJobPreparationTaskUpdate": "BatchJobPreparationTask",
    "BatchJobReleaseTaskUpdate": "BatchJobReleaseTask",
    "BatchJobSpecificationUpdate": "BatchJobSpecification",
    "BatchPoolEndpointConfigurationUpdate": "BatchPoolEndpointConfiguration",
    "BatchPoolInfoUpdate": "BatchPoolInfo",
    "BatchPoolSpecificationUpdate": "BatchPoolSpecification",
    "BatchStartTaskUpdate": "BatchStartTask",
    "BatchTaskContainerSettingsUpdate": "BatchTaskContainerSettings",
    "BatchTaskSchedulingPolicyUpdate": "BatchTaskSchedulingPolicy",
    "NetworkConfigurationUpdate": "NetworkConfiguration",
    "ServiceArtifactReferenceUpdate": "ServiceArtifactReference",
    "UpgradePolicyUpdate": "UpgradePolicy",
    "VirtualMachineConfigurationUpdate": "VirtualMachineConfiguration",
}

# Definitions with no SDK class at all.
SDK_NO_CLASS = {
    # Scalar aliases (type string); the SDK uses str.
    "Azure.Core.eTag": "scalar alias",
    "Azure.Core.ipV4Address": "scalar alias",
    "Azure.Core.ipV6Address": "scalar alias",
    # Paged list envelopes ({value, odata.nextLink}); the SDK's pagers read the
    # JSON directly and yield the item models.
    "BatchAccountListSupportedImagesResult": "list envelope",
    "BatchApplicationListResult": "list envelope",
    "BatchJobListResult": "list envelope",
    "BatchJobPreparationAndReleaseTaskStatusListResult": "list envelope",
    "BatchJobScheduleListResult": "list envelope",
    "BatchNodeFileListResult": "list envelope",
    "BatchNodeListResult": "list envelope",
    "BatchNodeVMExtensionListResult": "list envelope",
    "BatchPoolListResult": "list envelope",
    "BatchPoolListUsageMetricsResult": "list envelope",
    "BatchPoolNodeCountsListResult": "list envelope",
    "BatchTaskListResult": "list envelope",
    "BatchTaskListSubtasksResult": "list envelope",
    # The Python SDK leaves out task authentication tokens entirely (see
    # SDK_OMITTED_PROPERTIES), so it has neither of these.
    "AuthenticationTokenSettings": "authenticationTokenSettings not exposed by the Python SDK",
    "BatchAccessScope": "authenticationTokenSettings not exposed by the Python SDK",
}

# Spec properties the SDK model does not have.
SDK_OMITTED_PROPERTIES = {
    ("BatchTask", "authenticationTokenSettings"),
    ("BatchTaskCreateOptions", "authenticationTokenSettings"),
    ("BatchJobManagerTask", "authenticationTokenSettings"),
    ("BatchJobManagerTaskUpdate", "authenticationTokenSettings"),
    # DataDisk.storageAccountType is in the 2025-06-01 spec, but azure-batch
    # 15.x's DataDisk model has no field for it (lun, caching, diskSizeGB,
    # managedDisk only): the SDK cannot send it.
    ("DataDisk", "storageAccountType"),
}

# Request headers the SDK sets that the spec expresses elsewhere
# (content-type from "consumes", Accept from "produces").
SDK_EXTRA_HEADERS = {"content-type", "accept"}

# Spec header parameters the request builders do not take: the client sets
# client-request-id through azure-core's RequestIdPolicy
# (request_id_header_name="client-request-id" in azure/batch/_client.py) and
# never sends return-client-request-id.
SDK_POLICY_HEADERS = {"client-request-id", "return-client-request-id"}

PLACEHOLDER = re.compile(r"\{[^}]+\}")


# --- helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def extract() -> dict:
    with EXTRACT_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def _sdk_classes() -> dict[str, type]:
    """Every model and enum class of azure.batch.models, exported or not."""
    found: dict[str, type] = {}
    for module in (sdk_models, sdk_enums):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                found[name] = obj
    return found


def _type_hint_namespace() -> dict:
    # The generated models annotate fields as "_models.X" under TYPE_CHECKING.
    merged = {**vars(sdk_enums), **vars(sdk_models), **vars(sdk_models_public)}
    return {"_models": types.SimpleNamespace(**merged)}


def _rest_fields(cls: type) -> dict[str, str]:
    """attribute name -> JSON (rest) name; the mapping is built on first __new__."""
    cls.__new__(cls)
    return {attr: rf._rest_name for attr, rf in cls._attr_to_rest_field.items()}


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _sdk_required(cls: type) -> set[str]:
    hints = typing.get_type_hints(cls, localns=_type_hint_namespace())
    return {rest for attr, rest in _rest_fields(cls).items() if not _is_optional(hints[attr])}


def _norm(path: str) -> str:
    return PLACEHOLDER.sub("{}", path)


def _build_functions() -> dict[str, typing.Callable]:
    return {
        name: fn
        for name, fn in vars(sdk_operations).items()
        if name.startswith("build_batch_") and name.endswith("_request") and inspect.isfunction(fn)
    }


def _call_builder(fn) -> tuple[str, str]:
    """Call a request builder with dummy arguments; return (method, path template)."""
    kwargs = {}
    tokens = {}
    for i, (name, p) in enumerate(inspect.signature(fn).parameters.items()):
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.default is not p.empty:
            continue
        token = f"zzarg{i}zz"
        tokens[token] = name
        kwargs[name] = token
    if 'kwargs.pop("content_type")' in inspect.getsource(fn):
        kwargs["content_type"] = "application/json"
    request = fn(**kwargs)
    path = request.url.split("?", 1)[0]
    for token in tokens:
        path = path.replace(token, "{}")
    assert "zzarg" not in path, (fn.__name__, path)
    return request.method, path


def _builder_source_names(fn) -> tuple[set[str], set[str]]:
    src = inspect.getsource(fn)
    return set(re.findall(r'_params\["([^"]+)"\]', src)), set(re.findall(r'_headers\["([^"]+)"\]', src))


def _sdk_success_codes() -> dict[str, list[int]]:
    """build function name -> status codes the client method accepts."""
    src = inspect.getsource(sdk_operations)
    codes = {}
    for m in re.finditer(r"_request = (build_batch_\w+_request)\(.*?status_code not in \[([\d, ]+)\]", src, re.S):
        codes[m.group(1)] = [int(c) for c in m.group(2).split(",")]
    return codes


# --- tests -------------------------------------------------------------------


def test_extract_provenance_and_shape(extract):
    assert extract["source"] == {
        "repo": "Azure/azure-rest-api-specs",
        "path": "specification/batch/data-plane/Azure.Batch/stable/2025-06-01/BatchService.json",
        "commit": "1609891d8df58f4f7bbf901258d33ef4a6622cc2",
        "apiVersion": "2025-06-01",
    }
    problems = []
    for op in extract["operations"]:
        keys = set(op)
        if keys != {"operationId", "method", "path", "query", "headers", "pathParams", "body", "consumes", "successStatus"}:
            problems.append(f"{op.get('operationId')}: keys {sorted(keys)}")
        if PLACEHOLDER.findall(op["path"]) != ["{%s}" % p for p in op["pathParams"]]:
            problems.append(f"{op['operationId']}: pathParams {op['pathParams']} vs {op['path']}")
        if op["body"] and "schema" in op["body"] and op["body"]["schema"] not in extract["definitions"]:
            problems.append(f"{op['operationId']}: body schema {op['body']['schema']} undefined")
        api = [q for q in op["query"] if q["name"] == "api-version"]
        if api != [{"name": "api-version", "type": "string", "required": True, "minLength": 1}]:
            problems.append(f"{op['operationId']}: api-version parameter {api}")

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(extract["definitions"]):
        if ref not in extract["definitions"]:
            problems.append(f"dangling $ref {ref}")
    for name, d in extract["definitions"].items():
        for req in d.get("required", []):
            if req not in d.get("properties", {}):
                problems.append(f"{name}: required {req} is not a property")
    assert not problems, "\n".join(problems)


def test_operations_match_sdk_request_builders(extract):
    spec_ops = {(op["method"], _norm(op["path"])): op for op in extract["operations"]}
    assert len(spec_ops) == len(extract["operations"]), "duplicate (method, path) in the extract"

    builders = _build_functions()
    sdk_ops = {}
    for name, fn in builders.items():
        key = _call_builder(fn)
        assert key not in sdk_ops, f"{name} and {sdk_ops[key]} build the same request"
        sdk_ops[key] = name

    problems = []
    for key in sorted(set(spec_ops) - set(sdk_ops)):
        problems.append(f"in the extract, not in the SDK: {key} ({spec_ops[key]['operationId']})")
    for key in sorted(set(sdk_ops) - set(spec_ops)):
        problems.append(f"in the SDK, not in the extract: {key} ({sdk_ops[key]})")

    codes = _sdk_success_codes()
    assert set(codes) == set(builders), "could not find the status check of every SDK operation"
    for key in sorted(set(spec_ops) & set(sdk_ops)):
        op, fn_name = spec_ops[key], sdk_ops[key]
        sdk_query, sdk_headers = _builder_source_names(builders[fn_name])
        spec_query = {q["name"] for q in op["query"]}
        spec_headers = {h.lower() for h in op["headers"]}
        if sdk_query != spec_query:
            problems.append(f"{op['operationId']}: query extract {sorted(spec_query)} vs SDK {sorted(sdk_query)}")
        sdk_h = {h.lower() for h in sdk_headers} - SDK_EXTRA_HEADERS
        spec_h = spec_headers - SDK_POLICY_HEADERS
        if sdk_h != spec_h:
            problems.append(f"{op['operationId']}: headers extract {sorted(spec_h)} vs SDK {sorted(sdk_h)}")
        if not SDK_POLICY_HEADERS <= spec_headers:
            problems.append(f"{op['operationId']}: extract lacks {sorted(SDK_POLICY_HEADERS - spec_headers)}")
        sends_body = "content-type" in {h.lower() for h in sdk_headers}
        if sends_body != (op["body"] is not None):
            problems.append(f"{op['operationId']}: SDK body={sends_body}, extract body={op['body']}")
        if sorted(codes[fn_name]) != sorted(op["successStatus"]):
            problems.append(f"{op['operationId']}: SDK accepts {codes[fn_name]}, extract says {op['successStatus']}")
    assert not problems, "\n".join(problems)


def test_sdk_api_version_is_the_extracts(extract):
    src = inspect.getsource(sdk_operations)
    versions = set(re.findall(r'_params\.pop\("api-version", "([^"]+)"\)', src))
    assert versions == {extract["source"]["apiVersion"]}


def test_definitions_match_sdk_models(extract):
    definitions = extract["definitions"]
    classes = _sdk_classes()
    problems = []
    covered_sdk_classes = set()

    for name, d in definitions.items():
        if name in SDK_NO_CLASS:
            if name in classes:
                problems.append(f"{name}: listed as having no SDK class, but the SDK has one")
            continue
        base = SDK_UPDATE_VARIANT_OF.get(name)
        cls_name = _sdk_class_for(name)
        cls = classes.get(cls_name)
        if cls is None:
            problems.append(f"{name}: no SDK class {cls_name}")
            continue
        covered_sdk_classes.add(cls_name)

        if "enum" in d:
            if not issubclass(cls, enum.Enum):
                problems.append(f"{name}: spec enum, SDK class {cls_name} is not an Enum")
                continue
            sdk_values = {e.value for e in cls}
            if sdk_values != set(d["enum"]):
                problems.append(f"{name}: enum values extract {sorted(d['enum'])} vs SDK {sorted(sdk_values)}")
            continue

        if not issubclass(cls, SdkModel):
            problems.append(f"{name}: SDK class {cls_name} is not a model")
            continue
        spec_props = set(d.get("properties", {}))
        omitted = {p for (n, p) in SDK_OMITTED_PROPERTIES if n == name}
        sdk_props = set(_rest_fields(cls).values())
        missing = spec_props - omitted - sdk_props
        if missing:
            problems.append(f"{name}: properties not in SDK {cls_name}: {sorted(missing)}")
        extra = sdk_props - spec_props
        if extra:
            problems.append(f"{name}: SDK {cls_name} has properties the extract lacks: {sorted(extra)}")
        for p in omitted:
            if p not in spec_props or p in sdk_props:
                problems.append(f"{name}: SDK_OMITTED_PROPERTIES entry {p} is stale")

        spec_required = set(d.get("required", []))
        if base:
            if spec_required:
                problems.append(f"{name}: an Update variant should require nothing, extract says {sorted(spec_required)}")
            continue
        sdk_required = _sdk_required(cls)
        if spec_required != sdk_required:
            problems.append(
                f"{name}: required extract {sorted(spec_required)} vs SDK {cls_name} non-Optional {sorted(sdk_required)}"
            )

    for cls_name in sorted(set(classes) - covered_sdk_classes):
        problems.append(f"SDK class {cls_name} matches no definition in the extract")
    assert not problems, "\n".join(problems)


def _sdk_class_for(name: str) -> str:
    return SDK_CLASS_RENAMES.get(name, SDK_UPDATE_VARIANT_OF.get(name, name))


def _expected_type(schema: dict, definitions: dict):
    """What the SDK should annotate a spec property schema as (Optional stripped)."""
    if "$ref" in schema:
        target = definitions[schema["$ref"]]
        if "enum" in target:
            return ("enum", _sdk_class_for(schema["$ref"]), frozenset(target["enum"]))
        if target.get("type") == "string":  # scalar alias such as Azure.Core.eTag
            return "str"
        return ("model", _sdk_class_for(schema["$ref"]))
    t, fmt = schema.get("type"), schema.get("format")
    if t == "array":
        return ("list", _expected_type(schema["items"], definitions))
    if t == "object" and "additionalProperties" in schema:
        return ("dict", _expected_type(schema["additionalProperties"], definitions))
    if "enum" in schema:  # inline enum: the SDK names the enum class after x-ms-enum
        return ("enum", None, frozenset(schema["enum"]))
    if t == "boolean":
        return "bool"
    if t == "integer" or (t == "string" and fmt == "int64"):
        return "int"
    if t == "number":
        return "float"
    if t == "string":
        return {"date-time": "datetime", "duration": "timedelta"}.get(fmt, "str")
    return ("unknown", t, fmt)


def _actual_type(hint):
    """The SDK annotation in the same vocabulary as _expected_type."""
    import datetime

    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:
        args = tuple(a for a in args if a is not type(None))
        if len(args) == 1:
            return _actual_type(args[0])
        enums = [a for a in args if inspect.isclass(a) and issubclass(a, enum.Enum)]
        if set(args) == {str, *enums} and len(enums) == 1:
            return ("enum", enums[0].__name__, frozenset(e.value for e in enums[0]))
        return ("union", args)
    if typing.get_origin(hint) is list:
        return ("list", _actual_type(args[0]))
    if typing.get_origin(hint) is dict:
        assert args[0] is str, hint
        return ("dict", _actual_type(args[1]))
    simple = {bool: "bool", int: "int", float: "float", str: "str",
              datetime.datetime: "datetime", datetime.timedelta: "timedelta"}
    if hint in simple:
        return simple[hint]
    if inspect.isclass(hint) and issubclass(hint, SdkModel):
        return ("model", hint.__name__)
    return ("unknown", hint)


def _same_type(expected, actual) -> bool:
    if isinstance(expected, tuple) and expected[0] == "enum" and isinstance(actual, tuple) and actual[0] == "enum":
        return expected[2] == actual[2] and expected[1] in (None, actual[1])
    if isinstance(expected, tuple) and isinstance(actual, tuple) and expected[0] == actual[0] in ("list", "dict"):
        return _same_type(expected[1], actual[1])
    return expected == actual


def test_property_types_and_readonly_match_sdk(extract):
    definitions = extract["definitions"]
    classes = _sdk_classes()
    namespace = _type_hint_namespace()
    problems = []
    compared = 0
    for name, d in definitions.items():
        if name in SDK_NO_CLASS or "properties" not in d:
            continue
        cls = classes[_sdk_class_for(name)]
        hints = typing.get_type_hints(cls, localns=namespace)
        cls.__new__(cls)
        by_rest = {rf._rest_name: (attr, rf) for attr, rf in cls._attr_to_rest_field.items()}
        for prop, schema in d["properties"].items():
            if prop not in by_rest:
                continue  # reported by test_definitions_match_sdk_models
            attr, rf = by_rest[prop]
            compared += 1
            expected, actual = _expected_type(schema, definitions), _actual_type(hints[attr])
            if not _same_type(expected, actual):
                problems.append(f"{name}.{prop}: extract {schema} means {expected}, SDK has {actual}")
            if name in SDK_UPDATE_VARIANT_OF:
                continue  # the base class's visibility is checked under the base definition
            sdk_read_only = list(rf._visibility or []) == ["read"]
            if bool(schema.get("readOnly")) != sdk_read_only:
                problems.append(f"{name}.{prop}: readOnly extract {bool(schema.get('readOnly'))}, SDK visibility {rf._visibility}")
    assert compared > 800, compared
    assert not problems, "\n".join(problems)


def _client_methods_by_builder() -> dict[str, typing.Callable]:
    """request builder name -> the client method that calls it."""
    mixins = [
        c for n, c in vars(sdk_operations).items() if inspect.isclass(c) and n.endswith("OperationsMixin")
    ]
    found = {}
    for mixin in mixins:
        for method in vars(mixin).values():
            if inspect.isfunction(method):
                m = re.search(r"\b(build_batch_\w+_request)\(", inspect.getsource(method))
                if m:
                    found[m.group(1)] = method
    return found


def test_request_bodies_match_sdk_client_methods(extract):
    spec_ops = {(op["method"], _norm(op["path"])): op for op in extract["operations"]}
    methods = _client_methods_by_builder()
    namespace = _type_hint_namespace()
    problems = []
    for name, fn in _build_functions().items():
        op = spec_ops[_call_builder(fn)]
        method = methods[name]
        src = inspect.getsource(method)
        m = re.search(r"_content = json\.dumps\((\w+)", src)
        if op["body"] is None:
            if m:
                problems.append(f"{op['operationId']}: SDK {method.__name__} sends a JSON body, extract has none")
            continue
        if not m:
            problems.append(f"{op['operationId']}: extract has a body, SDK {method.__name__} sends none")
            continue
        param = inspect.signature(method).parameters[m.group(1)]
        sdk_required = param.default is inspect.Parameter.empty
        if sdk_required != op["body"]["required"]:
            problems.append(f"{op['operationId']}: body required extract {op['body']['required']}, SDK {sdk_required}")
        hint = typing.get_type_hints(method, localns=namespace)[param.name]
        body_models = {
            a.__name__
            for a in (typing.get_args(hint) or (hint,))
            if inspect.isclass(a) and issubclass(a, SdkModel)
        }
        if body_models != {_sdk_class_for(op["body"]["schema"])}:
            problems.append(f"{op['operationId']}: body schema {op['body']['schema']}, SDK takes {sorted(body_models)}")
    assert not problems, "\n".join(problems)
