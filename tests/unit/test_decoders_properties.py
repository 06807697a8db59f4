"""Every decoder of outside input raises only its documented error, whatever it is fed (hypothesis).

Run-request and cancel messages (queue bodies), spec text (a zip's run.yaml, a spec blob),
profiles, specs themselves, spec blob names and run ids: each is fed arbitrary and hostile
documents (deep nesting, huge numbers, odd types, YAML anchors and tags, bytes that are not
text) and must either decode or raise the one error its callers turn into a failed status or
a poison entry. Anything else escaping (RecursionError, TypeError, OverflowError...) would be
retried by the Functions host until the message is poisoned, with no status written. Pure: no
service runs.
"""
from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.cancel import decode_cancel
from dmscontract.errors import PermanentRunError, UnusableMessageError
from dmscontract.ids import is_valid_run_id
from dmscontract.messages import RunRequest, decode_run_request, spec_blob_problem, trace_of
from dmscontract.profiles import ProfileError, parse_profile
from dmscontract.spec import SpecError, load_spec
from dmscontract.spec_text import parse_spec_text

FIELDS = ["run_id", "name", "command", "inputs", "outputs", "environment", "sweep", "pool", "constraints", "mpi", "beopest",
          "kind", "profile", "shared_inputs", "blob", "mode", "max_wall_clock", "spec_blob", "action", "reason",
          "traceparent", "parameters", "csv", "dedicated_nodes", "vm_size", "x"]
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=False)
           | st.text(max_size=30) | st.sampled_from(["cancel", "run-1", "../../x", "10m", "P1D", "output/*", "a" * 300]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=6),
                           max_leaves=40)
DEEP = st.integers(min_value=60, max_value=3000).map(lambda n: "[" * n + "]" * n) | st.integers(min_value=60, max_value=3000).map(
    lambda n: '{"a":' * n + "1" + "}" * n) | st.integers(min_value=1000, max_value=6000).map(lambda n: "[" * n)
BODY_TEXT = JSON_VALUES.map(json.dumps) | DEEP | st.text(max_size=200)
BODIES = (BODY_TEXT.map(lambda t: base64.b64encode(t.encode()))
          | st.binary(max_size=300) | BODY_TEXT.map(str.encode))
# PyYAML is pure Python: nesting deep enough to exhaust its recursion takes it ~0.3 s, so fewer and shallower here
SHALLOWER_DEEP = st.integers(min_value=60, max_value=1200).map(lambda n: "[" * n + "]" * n)
YAML_TEXT = st.sampled_from([
    "a: &x [1, 2]\nb: [*x, *x, *x]\n", "command: !!python/object/apply:os.system ['true']\n", "- [" * 200,
    "command: ./hydro\noutputs: [a, b\n", "? [a, b]\n: c\n", "x: 2026-01-01\n", "\ufeffcommand: x\n", "a: 1e999999\n",
    "b: !!binary AAAA\n", "- " * 500 + "x\n",
]) | JSON_VALUES.map(json.dumps) | SHALLOWER_DEEP | st.text(max_size=200)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(BODIES, st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40))
def test_a_run_request_body_decodes_or_fails_with_a_permanent_error(body, message_id):
    try:
        request = decode_run_request(body, message_id)
    except PermanentRunError as exc:
        assert exc.errors and is_valid_run_id(exc.run_id), "a failed status can be recorded, with what is wrong"
    except UnusableMessageError as exc:
        assert str(exc)
    else:
        assert isinstance(request, RunRequest) and is_valid_run_id(request.run_id)
    run_id, trace = trace_of(body, message_id)  # the span's run id: never raises
    assert run_id is None or is_valid_run_id(run_id)
    assert all(isinstance(v, str) for v in trace.values())


@SETTINGS
@given(BODIES)
def test_a_cancel_message_decodes_or_is_unusable(body):
    try:
        run_id, reason = decode_cancel(body)
    except UnusableMessageError as exc:
        assert str(exc)
    else:
        assert is_valid_run_id(run_id) and (reason is None or isinstance(reason, str))


@SETTINGS
@given(st.sampled_from(["run.yaml", "run.json", "spec.json", "profile.yaml"]), YAML_TEXT.map(str.encode) | st.binary(max_size=300))
def test_spec_text_parses_or_says_what_is_wrong(name, raw):
    document, problems = parse_spec_text(name, raw)
    assert all(isinstance(p, str) and p.startswith(f"{name}: ") for p in problems), "each problem names the file"
    if problems:
        assert document is None, "a document with problems is not handed on"


@SETTINGS
@given(YAML_TEXT.map(str.encode) | st.binary(max_size=300))
def test_a_profile_parses_or_raises_a_profile_error(raw):
    try:
        document = parse_profile("dsm2", raw)
    except ProfileError as exc:
        assert exc.errors and all(e.startswith("profile: profile 'dsm2'") for e in exc.errors), exc.errors
    else:
        assert isinstance(document, dict)


@SETTINGS
@given(JSON_VALUES)
def test_any_spec_document_loads_or_raises_a_spec_error_listing_its_problems(document):
    try:
        spec = load_spec(document)
    except SpecError as exc:
        assert str(exc)
    else:
        assert isinstance(spec, dict) and spec["kind"] in ("single", "sweep", "mpi", "beopest")


@SETTINGS
@given(SCALARS | JSON_VALUES, st.sampled_from(["run-1", "r"]))
def test_a_spec_blob_name_is_accepted_or_refused_with_a_reason(name, run_id):
    problem = spec_blob_problem(name, run_id)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        assert name.startswith(f"{run_id}/") and ".." not in name.split("/")


@SETTINGS
@given(SCALARS | JSON_VALUES)
def test_a_run_id_is_valid_or_not_never_an_error(value):
    assert is_valid_run_id(value) in (True, False)


CHECK_FIELDS = st.sampled_from(["run_id", "reason", "attempt", "job", "pool", "state", "metadata", "job_id", "pool_id",
                                "created_at", "no_nodes_to_come", "start_task_failure", "x"])
CHECK_VALUES = st.recursive(SCALARS | st.sampled_from(["progress", "log", "active", "completed", "2026-12-07T12:00:00+00:00"]),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(CHECK_FIELDS | st.text(max_size=6), inner, max_size=6),
                            max_leaves=30)
CHECK_BODIES = BODIES | st.dictionaries(CHECK_FIELDS, CHECK_VALUES, max_size=6).map(lambda d: base64.b64encode(json.dumps(d).encode()))


@SETTINGS
@given(CHECK_BODIES)
def test_a_run_work_message_decodes_into_a_check_or_is_unusable(body):
    from shared.run_checks import CheckRequest, decode_check, encode_check

    try:
        request = decode_check(body)
    except UnusableMessageError as exc:
        assert str(exc), "the poison entry says why"
    else:
        assert isinstance(request, CheckRequest) and is_valid_run_id(request.run_id)
        assert decode_check(base64.b64encode(encode_check(request).encode())) == request, "what the backend sends, it reads back"


@SETTINGS
@given(st.text(max_size=120) | st.sampled_from(["r-1/logs/main/stdout.txt", "../x/logs/main/stderr.txt", "r-1/logs/stdout.txt",
                                                 "r-1/logs/m-00001/sub/stderr.txt", "r-1/outputs/main/stdout.txt"]))
def test_a_blob_name_is_a_tasks_log_of_a_valid_run_or_nothing(name):
    from shared.run_checks import run_of_log_blob

    run_id = run_of_log_blob(name)
    assert run_id is None or (is_valid_run_id(run_id) and name.startswith(f"{run_id}/logs/") and name.endswith((".txt")))
