"""``dmsbatch.connect()``: the verbs bound to one configuration, for notebooks and the command.

Each method is a thin call to the function of the same verb (``dmsbatch.submit``, ``dmsbatch.runs``, ...),
inside ``translating(config)``, which turns the Azure SDK's connection and
authentication errors into the same actionable ``DmsbatchError`` messages the
command prints (``no local stack at http://127.0.0.1:10000; start it with
`dmsbatch up```).
"""
from __future__ import annotations

import contextlib
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from dmsbatch.config import Config, load_config, mask, no_stack_message
from dmsbatch.errors import CredentialsRefused, DmsbatchError, ServiceUnreachable, UsageProblem

if TYPE_CHECKING:
    from dmscontract.run_spec import RunSpec


@contextlib.contextmanager
def translating(config: Config) -> Iterator[None]:
    """Azure SDK failures a modeller can act on, as ``DmsbatchError``s naming the endpoint and the setting to check."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, ServiceRequestError

    try:
        yield
    except DmsbatchError:
        raise
    except ServiceRequestError as exc:  # nothing answered: connection refused, name not found, TLS
        endpoint = _endpoint_of(exc) or config.blob_endpoint
        if config.is_local or (endpoint and _is_local(endpoint)):
            raise ServiceUnreachable(no_stack_message(endpoint, config)) from None
        raise ServiceUnreachable(f"cannot reach {endpoint} ({_first_line(exc)}); check the account name in {config.source} "
                                 "and the network") from None
    except ClientAuthenticationError as exc:
        raise CredentialsRefused(_refused(config, exc)) from None
    except ResourceNotFoundError as exc:
        code = getattr(exc, "error_code", None)
        if code in ("ContainerNotFound", "QueueNotFound"):
            raise UsageProblem(f"{_endpoint_of(exc) or config.blob_endpoint} has no {'container' if code == 'ContainerNotFound' else 'queue'} "
                               f"the backend uses ({code}): is it the dmsbatch data account? (the local stack and the "
                               "Azure deployment create them)") from None
        raise
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise CredentialsRefused(_refused(config, exc)) from None
        raise


def _first_line(exc: BaseException) -> str:
    return mask(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


def _endpoint_of(exc: Any) -> str | None:
    from urllib.parse import urlsplit

    request = getattr(getattr(exc, "response", None), "request", None) or getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _is_local(url: str) -> bool:
    from dmsbatch.config import is_loopback

    return is_loopback(url)


def _refused(config: Config, exc: Any) -> str:
    endpoint = _endpoint_of(exc) or config.blob_endpoint
    batch_url = config.app_settings.get("BATCH_ACCOUNT_URL") or ""
    is_batch = bool(batch_url) and endpoint and batch_url.startswith(endpoint)
    code = getattr(exc, "error_code", None) or getattr(getattr(exc, "response", None), "status_code", "")
    code = getattr(code, "value", code)  # the storage SDK's StorageErrorCode enum
    if "DefaultAzureCredential" in str(exc) or type(exc).__name__ == "CredentialUnavailableError":
        return (f"no Azure credential is available for {endpoint} ({config.source} gives no key, so "
                "DefaultAzureCredential is used): sign in with `az login`, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and "
                "AZURE_CLIENT_SECRET, or give the account key in the config file")
    if is_batch:
        what = "the Batch account name and key (_BATCH_ACCOUNT_NAME, _BATCH_ACCOUNT_KEY / BATCH_ACCOUNT_NAME, BATCH_ACCOUNT_KEY)"
        service = "Batch"
    else:
        what = "the storage account name and key (_STORAGE_ACCOUNT_NAME, _STORAGE_ACCOUNT_KEY / DataStorage)"
        service = "storage"
    return (f"{service} at {endpoint} refused the credentials ({code or 'authentication failed'}): check {what} in "
            f"{config.source}; `dmsbatch config show` prints what is in use")


class Session:
    """One configuration's clients and the verbs over them."""

    def __init__(self, config: Config):
        self.config = config

    @classmethod
    def connect(cls, config: str | Path | None = None, data_dir: str | Path | None = None) -> "Session":
        return cls(load_config(config, data_dir))

    @classmethod
    def from_app_settings(cls, app_settings: Mapping[str, str]) -> "Session":
        """A session on the backend whose app settings these are (the local stack's, a pipeline's environment)."""
        from dmsbatch.config import from_app_settings

        return cls(from_app_settings(app_settings))

    @cached_property
    def clients(self):
        """The SDK clients, once storage has answered one request: a wrong key or an absent stack is said at once,
        not after the SDK's retries (``retry_total=0`` on that one request)."""
        from dmscontract import telemetry
        from dmscontract.clients import Clients

        self.config.check_reachable()
        # the client's spans (submit, upload, post) go where the backend's do on the local stack; against Azure
        # nothing is exported from here (operators cannot ingest into Application Insights), but the run's trace
        # context still travels with the request
        path = self.config.app_settings.get(telemetry.FILE_SETTING)
        if path:  # set up once per process (OpenTelemetry's providers are global): only by a session that exports,
            # so that one without a destination (Azure, a config file) does not leave a later local one exporting nothing
            telemetry.setup({telemetry.FILE_SETTING: path}, service_name="dmsbatch-client")
        clients = Clients(self.config.settings())
        with translating(self.config):
            clients.runs().get_container_properties(retry_total=0)
        return clients

    def call(self, verb: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``verb(clients, *args, **kwargs)`` with the SDK's errors translated."""
        with translating(self.config):
            return verb(self.clients, *args, **kwargs)

    # ---- the verbs -------------------------------------------------------------------
    def submit(self, path: str | Path, **options: Any):
        """Validate and send a study folder, study zip or spec; returns a ``Submission`` (``str()`` is the run id)."""
        from dmsbatch.submit import submit

        return self.call(submit, path, **options)

    def validate(self, path: str | Path, profiles_dir: str | Path | None = None) -> "RunSpec":
        """The normalised spec of a study, zip or spec file, as the backend would load it (``RunSpec``: typed
        fields, ``to_json()`` the request.json form); ``SpecProblem`` if invalid."""
        from dmsbatch.study import LocalProfiles, open_study, validate

        study = open_study(path)
        if profiles_dir is not None:
            return validate(study, LocalProfiles(Path(profiles_dir)), self.max_sweep_members())
        if not study.document.get("profile"):
            return validate(study, None, self.max_sweep_members())  # offline: no storage call, no stack needed
        from dmscontract.profiles import ProfileStore

        return self.call(lambda clients: validate(study, ProfileStore.for_clients(clients), clients.settings.sweep_max_members))

    def max_sweep_members(self) -> int:
        """The sweep limit from the configuration if it is readable, else the backend's default (offline validation)."""
        from dmscontract.spec import DEFAULT_MAX_SWEEP_MEMBERS

        try:
            return self.config.settings().sweep_max_members
        except DmsbatchError:
            return DEFAULT_MAX_SWEEP_MEMBERS

    def status(self, run_id: str | None = None, limit: int | None = 20):
        """One run's ``status.json``, or the most recent runs' (newest first) when no run id is given."""
        from dmsbatch.runs import list_runs, status

        return self.call(status, run_id) if run_id else self.call(list_runs, limit)

    def wait(self, run_id: str, timeout: float | None = None, check: bool = True, **options: Any) -> dict[str, Any]:
        """Wait for the run to end; its final status. Raises ``RunFailed`` if it did not succeed (unless ``check=False``),
        with ``task_id`` and ``stderr_tail`` of its first failed task. Options: ``on_update(status)``, ``poll``,
        ``on_note(text)`` (told at once when the run id has no trace yet; it is waited for 30 s)."""
        from dmsbatch.runs import wait

        return self.call(wait, str(run_id), timeout=timeout, check=check, **options)

    def logs(self, run_id: str, task_id: str | None = None, stream: str = "stdout") -> str:
        """A task's stdout (or stderr) as text: the uploaded log, or the live file while the task runs."""
        from dmsbatch.logs import read_log

        return self.call(read_log, str(run_id), task_id, stream).decode("utf-8", errors="replace")

    def follow(self, run_id: str, task_id: str | None = None, stream: str = "stdout", poll: float = 1.0,
               on_note: Callable[[str], None] | None = None) -> Iterator[str]:
        """The log as it grows, until the task has ended (``for text in dms.follow(run): print(text, end="")``).

        ``on_note(text)`` hears at once when the run id has no trace yet (it is waited for 30 s)."""
        from dmsbatch.logs import follow_log

        with translating(self.config):
            for chunk in follow_log(self.clients, str(run_id), task_id, stream, poll=poll, on_note=on_note):
                yield chunk.decode("utf-8", errors="replace")

    def results(self, run_id: str, download: str | Path | None = None) -> list[Any]:
        """The manifest's outputs; with ``download``, the files downloaded and verified under that folder."""
        from dmsbatch.results import download_results, results

        if download is not None:
            return self.call(download_results, str(run_id), download)
        return self.call(results, str(run_id))

    def rerun(self, run_id: str, members: list[str] | None = None, new_run_id: str | None = None) -> str:
        """A new run of some members of an ended sweep (``members`` None: the ones that did not succeed), with its spec,
        inputs and profile; nothing is uploaded again. Returns the new run's id (``wait`` it as any run)."""
        from dmsbatch.rerun import rerun

        return self.call(rerun, str(run_id), list(members) if members else None, new_run_id)

    def report(self, run_id: str, output: str | Path | None = None) -> Path:
        """The run's report as a standalone HTML file (default ``report-<run_id>.html`` here): from its manifest once
        it ended, or marked provisional from what Batch shows of a run still going. Returns the file."""
        from dmsbatch.report import report

        return self.call(report, str(run_id), output)[0]

    def delete(self, run_id: str, cancel: bool = False, on_note: Callable[[str], None] | None = None):
        """Delete the run's Batch job and blobs (``dmsbatch.retention.Deleted``); a run still going only with ``cancel``."""
        from dmsbatch.retention import delete_run

        return self.call(delete_run, str(run_id), cancel, on_note)

    def prune_candidates(self, older_than, state: str | None = None, name: str | None = None):
        """(ended runs older than ``older_than`` (a timedelta), of ``state`` and named like the glob ``name`` if given;
        runs kept as still going)."""
        from dmsbatch.retention import prune_candidates

        return self.call(prune_candidates, older_than, state, name)

    def prune(self, docs):
        """Delete the runs ``prune_candidates`` chose."""
        from dmsbatch.retention import prune

        return self.call(prune, list(docs))

    def members(self, run_id: str, state: str | None = None, merged: bool = False) -> list[dict[str, Any]]:
        """A finished sweep's members, one dict per member: ``member``, ``index``, each parameter, ``state``,
        ``exit_code``, times, ``node_id``, ``retries``, ``requeues``, ``outputs``, logs (as in its members.csv;
        ``pandas.DataFrame(rows)`` makes the table). ``state`` keeps only members that ended so; ``merged``
        adds a re-run's parent's succeeded members, with ``origin`` naming the run of each row."""
        from dmsbatch.results import members

        return self.call(members, str(run_id), state, merged)

    def trace(self, run_id: str, app_insights: str | None = None, days: int = 7):
        """The spans of the run's trace (``dmsbatch.trace.RunTrace``): from Application Insights when ``app_insights``
        names the resource (its ARM id), else from the local stack's telemetry file."""
        from dmsbatch import trace as traces

        if app_insights:
            return _from_app_insights(app_insights, str(run_id), days)
        path = self.config.app_settings.get("TELEMETRY_FILE")
        if not path:
            raise UsageProblem(f"the configuration from {self.config.source} has no telemetry file (only the local stack "
                               "writes one): against Azure give --app-insights RESOURCE_ID (the Application Insights "
                               "resource), or run the query `dmsbatch trace RUN_ID --kql` prints in its Logs")
        found = traces.from_file(Path(path), str(run_id))
        if not found.spans:
            raise UsageProblem(f"no spans of run {run_id!r} in {path}: is the run id right? (a run's spans appear as it "
                               "goes; runs from before telemetry was set up have none)")
        return found

    def manifest(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``manifest.json`` (written once, when it ends), or None while there is none."""
        from dmscontract.run_layout import MANIFEST_BLOB
        from dmscontract.run_store import RunStore

        return self.call(lambda clients: RunStore(clients.runs()).read(str(run_id), MANIFEST_BLOB).document)

    def cancel(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Ask the backend to cancel the run (``run-control``); returns its status before the request."""
        from dmsbatch.runs import cancel

        return self.call(cancel, str(run_id), reason)


def _from_app_insights(resource_id: str, run_id: str, days: int):
    """``dmsbatch.trace.from_app_insights``, its failures said as the command says others'."""
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError

    from dmsbatch import trace as traces

    try:
        found = traces.from_app_insights(resource_id, run_id, days)
    except ClientAuthenticationError as exc:
        raise CredentialsRefused(f"no Azure credential could query Application Insights ({_first_line(exc)}): sign in with "
                                 "`az login`") from None
    except HttpResponseError as exc:
        if exc.status_code in (401, 403):
            raise CredentialsRefused(f"Application Insights refused the query ({exc.status_code}): the signed-in identity "
                                     f"needs read access (Log Analytics Reader, or Reader) on {resource_id}") from None
        raise UsageProblem(f"Application Insights could not run the query ({exc.status_code}): {_first_line(exc)}; "
                           "is RESOURCE_ID the resource's full ARM id?") from None
    except ServiceRequestError as exc:
        raise ServiceUnreachable(f"cannot reach Azure Monitor ({_first_line(exc)})") from None
    if not found.spans:
        raise UsageProblem(f"Application Insights has no spans of run {run_id!r} in the last {days} days (ingestion "
                           "takes a few minutes; --days looks further back)")
    return found
