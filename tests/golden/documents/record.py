"""How the golden status documents here were recorded: the run lives of tests/unit/test_status_documents.py,
replayed with the status code as it was before ``RunStatus`` (status_before_runstatus.py, from commit 8cf000c:
dicts changed in place by functions), the clock fixed.

    .venv/bin/python tests/golden/documents/record.py tests/golden/documents
"""
import json, sys, importlib.util, pathlib
sys.path.insert(0, ".")
from dmscontract.run_store import Versioned

spec = importlib.util.spec_from_file_location("old_status", pathlib.Path(__file__).with_name("status_before_runstatus.py"))
old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
NOW = "2026-12-07T12:00:00Z"
old.now_iso = lambda: NOW

class MemoryStore:
    def __init__(self): self.docs = {}
    def read(self, run_id, name):
        raw = self.docs.get((run_id, name))
        return Versioned(json.loads(raw), str(len(raw))) if raw is not None else Versioned(None, None)
    def write(self, run_id, name, document, etag):
        self.docs[(run_id, name)] = json.dumps(document, indent=2, sort_keys=False); return "e"
    def text(self, run_id): return self.docs[(run_id, "status.json")]

U = old.update_status
def claim(s):
    if s.get("event_sent_at"): return
    s["event_claim"] = {"token": "t", "at": NOW}
def sent(s):
    s.setdefault("event_sent_at", NOW); s.pop("event_claim", None)
def submitted(s, tasks=1):
    s.update(job_id="run-r", pool_id="dmsbatch-default", deadline="2026-12-07T13:00:00+00:00")
    s.setdefault("timestamps", {}).setdefault("submitted", NOW)
    s.setdefault("tasks", {"total": tasks, "active": tasks, "running": 0, "succeeded": 0, "failed": 0})
def final(state, reason, total, ok, bad, started=NOW):
    def f(s):
        if s.get("state") == state: s["reason"] = reason
        s.update(manifest_url="http://127.0.0.1:10000/devstoreaccount1/runs/r/manifest.json", finished_at=NOW)
        if started: s.setdefault("timestamps", {}).setdefault("running", started)
        s["tasks"] = {"total": total, "active": 0, "running": 0, "succeeded": ok, "failed": bad}
    return f
def tasks(total, active, running, ok=0, bad=0):
    return lambda s: s.update(tasks={"total": total, "active": active, "running": running, "succeeded": ok, "failed": bad})

flows = {}
st = MemoryStore()
U(st, "r", "accepted", lambda s: s.update(name="hello", kind="single")); U(st, "r", "submitted", submitted)
U(st, "r", "running", tasks(1, 0, 1)); U(st, "r", "succeeded", final("succeeded", None, 1, 1, 0))
U(st, "r", None, claim); U(st, "r", None, sent); flows["single-succeeded"] = st.text("r")

st = MemoryStore()
def end(s):
    s.setdefault("reason", "the run request is invalid"); s.setdefault("errors", ["command: Missing data for required field."])
U(st, "r", "failed", end); U(st, "r", None, claim); U(st, "r", None, sent); flows["rejected"] = st.text("r")

st = MemoryStore()
U(st, "r", "accepted", lambda s: s.update(name="sweep", kind="sweep")); U(st, "r", "submitted", lambda s: submitted(s, 12))
U(st, "r", "running", tasks(12, 8, 4)); U(st, "r", None, tasks(12, 6, 4, 2))
def mark(s):
    s.setdefault("cancel_requested_at", NOW); s.setdefault("cancel_reason", "wrong boundary file")
U(st, "r", None, mark); U(st, "r", "cancelled", final("cancelled", "cancelled: wrong boundary file", 12, 2, 10))
U(st, "r", None, claim); U(st, "r", None, sent); flows["sweep-cancelled"] = st.text("r")

st = MemoryStore()
U(st, "r", "accepted", lambda s: s.update(name="pest", kind="beopest")); U(st, "r", "submitted", submitted)
def chained(s):
    if not (s.get("beopest") or {}).get("master"): s["beopest"] = {"master": "127.0.2.3:4004", "workers": 2, "found_at": NOW}
U(st, "r", "running", tasks(1, 0, 1)); U(st, "r", None, chained); U(st, "r", None, tasks(3, 0, 3))
U(st, "r", "succeeded", final("succeeded", None, 3, 2, 1))
U(st, "r", None, claim); U(st, "r", None, sent); flows["beopest-chained"] = st.text("r")

st = MemoryStore()
U(st, "r", "accepted", lambda s: s.update(name="pest", kind="beopest")); U(st, "r", "submitted", submitted)
U(st, "r", "running", tasks(1, 0, 1))
def fail(s):
    section = s.setdefault("beopest", {})
    if not section.get("error"): section.update(error="beopest: the master ended", failed_at=NOW)
U(st, "r", None, fail); U(st, "r", "failed", final("failed", "beopest: the master ended", 1, 0, 1))
U(st, "r", None, claim); U(st, "r", None, sent); flows["beopest-failed"] = st.text("r")

st = MemoryStore()
U(st, "r", "accepted", lambda s: s.update(name="slow", kind="single")); U(st, "r", "submitted", submitted)
U(st, "r", None, lambda s: s.setdefault("waiting_for_nodes", "pool 'p' has no nodes and this run's spec gives it none"))
U(st, "r", None, lambda s: s.update(check_failures={"attempts": 1, "last_error": "ValueError: x", "last_at": NOW, "next_at": NOW}))
U(st, "r", None, lambda s: s.pop("check_failures", None))
U(st, "r", None, lambda s: s.setdefault("deadline_passed_at", NOW))
U(st, "r", None, lambda s: s.update(check_failures={"attempts": 4, "last_error": "ValueError: y", "last_at": NOW, "next_at": NOW}))
def gave(s):
    s.setdefault("reason", "the reconciler could not handle the run (5 attempts): ValueError: y"); s.setdefault("gave_up_at", NOW); s.pop("check_failures", None)
U(st, "r", "failed", gave); U(st, "r", None, claim); U(st, "r", None, sent); flows["given-up"] = st.text("r")

# run-events messages, as shared/events.py built them before RunEvent (commit 8cf000c), sent as json.dumps(event)
STATUS_URL = "http://127.0.0.1:10000/devstoreaccount1/runs/r/status.json"
def event(status, reason, manifest_url, errors=None):
    event = {"schema_version": 1, "run_id": "r", "status": status, "reason": reason, "manifest_url": manifest_url,
             "status_url": STATUS_URL, "emitted_at": NOW}
    if errors:
        event["errors"] = errors
    return json.dumps(event)
messages = {"succeeded": event("succeeded", None, "http://127.0.0.1:10000/devstoreaccount1/runs/r/manifest.json"),
            "rejected": event("failed", "the run request is invalid", None, ["command: Missing data for required field."])}

out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for name, text in messages.items():
    (out / f"run-event-{name}.json").write_text(text)
for name, text in flows.items():
    (out / f"status-{name}.json").write_text(text)
    print(name, len(text))
