"""The whole local stack, started and stopped as one: Azurite, local Batch, local Functions host.

State (pids, ports) is kept in ``<data_dir>/stack.json`` so ``down`` can stop
what ``up`` started from another process; each service runs in its own
process group, so stopping it leaves nothing behind.

``keyless``: the path a deployment takes, with no account key anywhere in the
Functions app's environment. A certificate made at start-up puts Azurite
(``--oauth basic``) and the local Batch service (Entra-only: shared key refused)
behind HTTPS; a local managed identity endpoint (``local.identity``) gives the
app tokens through ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` as App Service does;
the app's connections are identity-based (``DataStorage__blobServiceUri``...),
so the backend signs its SAS with a user delegation key. The header secret lives
only in the processes' environments, never in ``stack.json``; the process that
starts a keyless stack trusts its certificate from then on, as its clients must.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from local import identity
from local.azurite import AzuriteEndpoints, start_azurite
from local.batch import DEV_BATCH_ACCOUNT_KEY, DEV_BATCH_ACCOUNT_NAME
from local.processes import free_port, start_group, stop_group, wait_for_port
from local.tls import Certificate, make_certificate

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / ".local-stack"
# the file a client reads to find a running stack (dmsbatch.config.from_local_stack), beside stack.json
CLIENT_FILE = "client.json"
CLIENT_SETTINGS = ("DataStorage", "BATCH_ACCOUNT_URL", "BATCH_ACCOUNT_NAME", "BATCH_ACCOUNT_KEY", "RUN_REQUESTS_QUEUE",
                   "RUN_EVENTS_QUEUE", "RUN_CONTROL_QUEUE", "INBOX_CONTAINER", "TELEMETRY_FILE")
LOOPBACK = "127.0.0.1"


@dataclass
class StackConfig:
    """Ports and places; 0 picks a free port. Defaults mirror Azurite's and sit beside them."""

    data_dir: Path = DEFAULT_DATA_DIR
    blob_port: int = 10000
    queue_port: int = 10001
    batch_port: int = 10100
    node_network: str = "127.0.1.0/24"
    reconcile_schedule: str = "*/1 * * * * *"
    app_root: Path = REPO_ROOT
    functions_host: bool = True  # False leaves the app to `func start` (Core Tools)
    keyless: bool = False  # HTTPS, Entra tokens from a local managed identity, no keys in the app (module docstring)
    identity_port: int = 0
    # Put the storage fault proxy (local.storage_faults) between every client and Azurite: the app
    # settings, SAS URLs and the Batch account's auto-storage then name its ports, not Azurite's.
    storage_faults: bool = False
    proxy_blob_port: int = 0  # the proxy's ports (0 picks free ones); used only with storage_faults
    proxy_queue_port: int = 0
    # functions the host does not run (the app setting AzureWebJobs.<name>.Disabled, as in Azure): a
    # benchmark or test that needs a path switched off, e.g. the reconciler without its log events
    disabled_functions: tuple[str, ...] = ()

    def resolved(self) -> "StackConfig":
        return StackConfig(
            data_dir=Path(self.data_dir).resolve(),
            blob_port=self.blob_port or free_port(),
            queue_port=self.queue_port or free_port(),
            batch_port=self.batch_port or free_port(),
            node_network=self.node_network,
            reconcile_schedule=self.reconcile_schedule,
            app_root=Path(self.app_root).resolve(),
            functions_host=self.functions_host,
            keyless=self.keyless,
            identity_port=(self.identity_port or free_port()) if self.keyless else 0,
            storage_faults=self.storage_faults,
            disabled_functions=tuple(self.disabled_functions),
            proxy_blob_port=(self.proxy_blob_port or free_port()) if self.storage_faults else 0,
            proxy_queue_port=(self.proxy_queue_port or free_port()) if self.storage_faults else 0,
        )


@dataclass
class RunningStack:
    config: StackConfig
    pids: dict[str, int]
    identity_secret: str | None = field(default=None, repr=False)  # in memory and in the processes' env only

    @property
    def scheme(self) -> str:
        return "https" if self.config.keyless else "http"

    @property
    def certificate(self) -> Certificate | None:
        tls = self.config.data_dir / "tls"
        return Certificate(tls / "stack-cert.pem", tls / "stack-key.pem") if self.config.keyless else None

    @property
    def azurite(self) -> AzuriteEndpoints:
        return AzuriteEndpoints(LOOPBACK, self.config.blob_port, self.config.queue_port, scheme=self.scheme)

    @property
    def storage(self) -> AzuriteEndpoints:
        """Where clients send storage requests: the fault proxy when the stack has one, else Azurite itself."""
        if self.config.storage_faults:
            return AzuriteEndpoints(LOOPBACK, self.config.proxy_blob_port, self.config.proxy_queue_port)
        return self.azurite

    @property
    def storage_faults_url(self) -> str | None:
        """The storage fault proxy's admin endpoint (``local.storage_faults.admin``), if the stack has a proxy."""
        return f"http://{LOOPBACK}:{self.config.proxy_blob_port}" if self.config.storage_faults else None

    @property
    def batch_url(self) -> str:
        return f"{self.scheme}://{LOOPBACK}:{self.config.batch_port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.config.identity_port}/msi/token"

    def operator_storage_connection(self) -> str:
        """The storage account with its key, for whoever operates the stack (provisioning, tests' checks), never the app's."""
        return self.azurite.connection_string

    def app_settings(self) -> dict[str, str]:
        """The app settings the Functions app and clients read: well-known dev credentials, or, keyless,
        identity-based connections and the managed identity endpoint (no key at all)."""
        if self.config.keyless:
            assert self.certificate is not None
            credentials = {
                "AzureWebJobsStorage__blobServiceUri": self.azurite.blob_url,
                "AzureWebJobsStorage__queueServiceUri": self.azurite.queue_url,
                "DataStorage__blobServiceUri": self.azurite.blob_url,
                "DataStorage__queueServiceUri": self.azurite.queue_url,
                "BATCH_ACCOUNT_URL": self.batch_url,
                "IDENTITY_ENDPOINT": self.identity_endpoint,
                **({"IDENTITY_HEADER": self.identity_secret} if self.identity_secret else {}),
                **self.certificate.trust_environment(),
            }
        else:
            credentials = {
                "AzureWebJobsStorage": self.storage.connection_string,
                "DataStorage": self.storage.connection_string,
                "BATCH_ACCOUNT_URL": self.batch_url,
                "BATCH_ACCOUNT_NAME": DEV_BATCH_ACCOUNT_NAME,
                "BATCH_ACCOUNT_KEY": DEV_BATCH_ACCOUNT_KEY,
            }
        return {
            **credentials,
            "RUN_REQUESTS_QUEUE": "run-requests",
            "RUN_EVENTS_QUEUE": "run-events",
            "RUN_CONTROL_QUEUE": "run-control",
            "RUN_WORK_QUEUE": "run-work",
            "RUNS_CONTAINER": "runs",
            "INBOX_CONTAINER": "inbox",
            # the local timer ticks every second: look at each active run's progress every 5 s (Azure: 30 s)
            "RECONCILE_PROGRESS_SECONDS": "5",
            "RECONCILE_SCHEDULE": self.config.reconcile_schedule,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            # spans, metrics and logs of the app and its clients, as JSON lines (shared/telemetry.py, `dmsbatch trace`)
            "TELEMETRY_FILE": str(self.config.data_dir / "telemetry.jsonl"),
            **{f"AzureWebJobs.{name}.Disabled": "true" for name in self.config.disabled_functions},
        }

    def save(self) -> None:
        state = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()}, "pids": self.pids}
        (self.config.data_dir / "stack.json").write_text(json.dumps(state, indent=2))
        (self.config.data_dir / CLIENT_FILE).write_text(json.dumps(self.client_view(), indent=2))

    def client_view(self) -> dict[str, object]:
        """What a client (``dmsbatch``, installed anywhere) needs to reach the stack: the app settings a client
        reads (dev credentials only: never the managed identity's secret) and the processes that must be alive."""
        app = self.app_settings()
        return {"app_settings": {k: app[k] for k in CLIENT_SETTINGS if k in app}, "pids": sorted(self.pids.values())}

    @classmethod
    def load(cls, data_dir: Path = DEFAULT_DATA_DIR) -> "RunningStack | None":
        path = Path(data_dir) / "stack.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        config = StackConfig(**{k: Path(v) if k in ("data_dir", "app_root") else v for k, v in state["config"].items()})
        return cls(config, state["pids"])

    def alive(self) -> bool:
        for pid in self.pids.values():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
        return bool(self.pids)


def start_batch_service(data_dir: Path, port: int, node_network: str, log_path: Path,
                        auto_storage_connection: str | None = None, tls: Certificate | None = None,
                        entra_jwks: Path | None = None) -> subprocess.Popen:
    """The local Batch service as its own process (``python -m local.batch``), listening when this returns.
    With ``tls`` it serves HTTPS (and trusts that certificate for its downloads and uploads); with
    ``entra_jwks`` it is an Entra-only account trusting the local identity's tokens."""
    argv = [sys.executable, "-m", "local.batch", "--host", LOOPBACK, "--port", str(port),
            "--data-dir", str(data_dir), "--node-network", node_network]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert_path), "--tls-key", str(tls.key_path)]
        env.update(tls.trust_environment())
    if entra_jwks is not None:
        argv += ["--entra-jwks", str(entra_jwks), "--entra-issuer", identity.ISSUER, "--entra-only"]
    if auto_storage_connection:  # linked to an Azurite as the account's auto-storage; passed by env, never argv
        argv += ["--auto-storage-connection-env", "LOCAL_BATCH_AUTO_STORAGE"]
        env["LOCAL_BATCH_AUTO_STORAGE"] = auto_storage_connection
    proc = start_group(argv, cwd=REPO_ROOT, log_path=log_path, env=env)
    try:
        wait_for_port(LOOPBACK, port, proc=proc)
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc


def start_storage_faults(azurite: AzuriteEndpoints, listen: AzuriteEndpoints, log_path: Path) -> subprocess.Popen:
    """The storage fault proxy as its own process, relaying ``listen``'s ports to Azurite's; listening when this returns."""
    argv = [sys.executable, "-m", "local.storage_faults", "--host", listen.host,
            "--blob-port", str(listen.blob_port), "--queue-port", str(listen.queue_port),
            "--blob-upstream", f"{azurite.host}:{azurite.blob_port}", "--queue-upstream", f"{azurite.host}:{azurite.queue_port}"]
    proc = start_group(argv, cwd=REPO_ROOT, log_path=log_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        wait_for_port(listen.host, listen.blob_port, proc=proc)
        wait_for_port(listen.host, listen.queue_port, proc=proc)
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc


def up(config: StackConfig | None = None) -> RunningStack:
    """Start all three services and create the contract's containers and queues."""
    config = (config or StackConfig()).resolved()
    existing = RunningStack.load(config.data_dir)
    if existing and existing.alive():
        return existing
    config.data_dir.mkdir(parents=True, exist_ok=True)
    logs = config.data_dir / "logs"
    stack = RunningStack(config, {})
    try:
        if config.keyless and config.storage_faults:
            raise ValueError("the storage fault proxy speaks plain HTTP; it cannot stand in front of the keyless stack's HTTPS Azurite")
        tls, jwks = None, None
        if config.keyless:
            tls = make_certificate(config.data_dir / "tls", LOOPBACK)
            os.environ.update(tls.trust_environment())  # this process's own clients (provisioning) trust it too
            stack.identity_secret = secrets.token_urlsafe(24)
            jwks = config.data_dir / "identity" / "jwks.json"
            stack.pids["identity"] = start_identity(stack, jwks, logs / "identity.log").pid
        stack.pids["azurite"] = start_azurite(stack.azurite, config.data_dir / "azurite", logs / "azurite.log",
                                              tls=(tls.cert_path, tls.key_path) if tls else None).pid
        if config.storage_faults:
            stack.pids["storage_faults"] = start_storage_faults(stack.azurite, stack.storage, logs / "storage-faults.log").pid
        batch = start_batch_service(config.data_dir / "batch", config.batch_port, config.node_network, logs / "batch.log",
                                    auto_storage_connection=stack.storage.connection_string, tls=tls, entra_jwks=jwks)
        stack.pids["batch"] = batch.pid
        _provision(stack)
        if not config.functions_host:
            stack.save()
            return stack
        start_functions_host(stack)
        return stack
    except BaseException:
        down_stack(stack)
        raise


def start_identity(stack: RunningStack, jwks: Path, log_path: Path) -> subprocess.Popen:
    """The local managed identity endpoint (``python -m local.identity``), its secret passed by env only."""
    proc = start_group(
        [sys.executable, "-m", "local.identity", "--host", LOOPBACK, "--port", str(stack.config.identity_port), "--jwks-file", str(jwks)],
        cwd=REPO_ROOT, log_path=log_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "IDENTITY_HEADER": stack.identity_secret or ""},
    )
    try:
        wait_for_port(LOOPBACK, stack.config.identity_port, proc=proc)
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc


def start_functions_host(stack: RunningStack) -> int:
    """Start the local Functions host for ``stack`` (also to restart it after ``stop_group``); returns its pid."""
    config = stack.config
    host = start_group(
        [sys.executable, "-m", "local.funchost", "--app-root", str(config.app_root), "--host-id", "dmsbatch-local"],
        cwd=config.app_root, log_path=config.data_dir / "logs" / "funchost.log",
        env={**os.environ, **stack.app_settings(), "PYTHONPATH": str(REPO_ROOT)},
    )
    stack.pids["funchost"] = host.pid
    stack.save()
    return host.pid


def _provision(stack: RunningStack) -> None:
    sys.path.insert(0, str(stack.config.app_root))
    from dmscontract.clients import Clients
    from dmscontract.profiles import seed_repo_profiles
    from shared.provision import ensure_storage
    from dmscontract.settings import Settings

    operator = {**stack.app_settings(), "DataStorage": stack.operator_storage_connection()}  # the operator provisions, with the key
    clients = Clients(Settings.from_env(operator))
    ensure_storage(clients)
    seed_repo_profiles(clients, stack.config.app_root / "profiles")  # the repo's profiles/*.yaml, new or changed ones


def down_stack(stack: RunningStack) -> None:
    for name in ("funchost", "batch", "storage_faults", "azurite", "identity"):
        pid = stack.pids.get(name)
        if pid:
            stop_group(pid)
    state = stack.config.data_dir / "stack.json"
    if state.exists():
        state.unlink()


def down(data_dir: Path = DEFAULT_DATA_DIR) -> bool:
    stack = RunningStack.load(data_dir)
    if stack is None:
        return False
    down_stack(stack)
    return True
