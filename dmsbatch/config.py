"""Where the command and the Python API find the backend: a config file, env vars, or the local stack.

Every source is mapped onto the app settings the backend itself reads
(``dmscontract/settings.py``: ``DataStorage``, ``BATCH_ACCOUNT_URL``, ...), and
``Settings.from_env`` builds the settings from that mapping, so the client and the
Functions app can never disagree on what a name means. The mapping is kept, so
``dmsbatch config show`` can say what each key became (secrets masked).

Sources, first match wins:

1. ``--config FILE`` (or ``DMSBATCH_CONFIG``): the modellers' INI file (a ``[DEFAULT]``
   section with ``_BATCH_ACCOUNT_NAME``, ``_BATCH_ACCOUNT_KEY``, ``_BATCH_ACCOUNT_URL``,
   ``_STORAGE_ACCOUNT_NAME``, ``_STORAGE_ACCOUNT_KEY``) or a YAML file with the same keys
   in lower case without the underscore (``batch_account_url: ...``);
2. ``--data-dir DIR`` (or ``DMSBATCH_DATA_DIR``): the local stack kept in that directory;
3. the app settings in the environment (``DataStorage`` or ``DataStorage__blobServiceUri``,
   ``BATCH_ACCOUNT_URL``, ...), e.g. after ``eval "$(./dev env)"``;
4. ``~/.config/dmsbatch/config.yaml`` or ``config.ini`` (``$XDG_CONFIG_HOME`` if set);
5. the local stack in the nearest ``.local-stack`` (a checkout's, where ``dmsbatch up`` starts it),
   found from the ``client.json`` it writes there while it runs.

No key: ``DefaultAzureCredential`` (``dmscontract/clients.py`` decides, as in the backend).
"""
from __future__ import annotations

import base64
import binascii
import configparser
import ipaddress
import json
import os
import re
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

from dmsbatch.errors import ServiceUnreachable, UsageProblem

CONFIG_ENV = "DMSBATCH_CONFIG"
DATA_DIR_ENV = "DMSBATCH_DATA_DIR"
MASK = "****"
APP_SETTING_NAMES = ("DataStorage", "DataStorage__blobServiceUri", "DataStorage__queueServiceUri", "BATCH_ACCOUNT_URL")

# Normalised keys (lower case, leading underscores dropped) and the aliases accepted for them.
ALIASES = {
    "datastorage": "storage_connection_string",
    "datastorage__blobserviceuri": "storage_blob_url",
    "datastorage__queueserviceuri": "storage_queue_url",
}
SECRET_KEYS = ("batch_account_key", "storage_account_key", "storage_connection_string")
_SECRET_IN_TEXT = re.compile(r"(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|sig)=[^;&\s]*")


def mask(text: str) -> str:
    """``text`` with account keys and SAS signatures replaced by ``****`` (connection strings, URLs)."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}={MASK}", text)


@dataclass(frozen=True)
class MappedSetting:
    """One app setting and the source keys it came from; ``shown`` is safe to print."""

    setting: str
    sources: tuple[str, ...]
    value: str
    secret: bool = False

    @property
    def shown(self) -> str:
        if not self.secret:
            return mask(self.value)
        is_connection_string = ";" in self.value and "=" in self.value.split(";", 1)[0]
        return mask(self.value) if is_connection_string else f"{MASK} (hidden)"


@dataclass
class Config:
    """A resolved configuration: the app settings it maps to, and where they came from."""

    source: str
    app_settings: dict[str, str]
    mapped: list[MappedSetting] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # unknown keys that look like setting names
    ignored_lines: list[int | None] = field(default_factory=list)  # unknown "keys" that do not (never printed)
    local_data_dir: Path | None = None  # set when this is the local stack's configuration
    local_running: bool | None = None

    # ---- what it means -----------------------------------------------------------------
    def settings(self):
        """``dmscontract.settings.Settings`` built by the backend's own parser; Batch may be left unconfigured."""
        from dmscontract.settings import Settings, SettingsError

        env = dict(self.app_settings)
        try:
            if env.get("BATCH_ACCOUNT_URL"):
                return Settings.from_env(env)
            # storage alone serves most verbs; the ones that need Batch call require_batch()
            return replace(Settings.from_env({**env, "BATCH_ACCOUNT_URL": "unset:"}), batch_account_url="")
        except SettingsError as exc:
            raise UsageProblem(f"the configuration from {self.source} is incomplete: {exc}") from None
        except ValueError as exc:  # an int setting that is not a number
            raise UsageProblem(f"the configuration from {self.source} has a bad value: {exc}") from None

    @property
    def blob_endpoint(self) -> str:
        from azure.storage.blob import BlobServiceClient

        s = self.app_settings
        if s.get("DataStorage"):
            try:
                return BlobServiceClient.from_connection_string(s["DataStorage"]).url.rstrip("/")
            except ValueError as exc:
                raise UsageProblem(f"the storage connection string from {self.source} is not usable: {mask(str(exc))}") from None
        return (s.get("DataStorage__blobServiceUri") or "").rstrip("/")

    @property
    def is_local(self) -> bool:
        """Whether storage is on this machine (the local stack, or any emulator on loopback)."""
        return is_loopback(self.blob_endpoint)

    def storage_credential_kind(self) -> str:
        if self.app_settings.get("DataStorage"):
            text = self.app_settings["DataStorage"]
            return "shared access signature" if "SharedAccessSignature=" in text else "account key (connection string)"
        return "DefaultAzureCredential (no storage key given)"

    def batch_credential_kind(self) -> str:
        if not self.app_settings.get("BATCH_ACCOUNT_URL"):
            return "not configured (only logs of a running task, and `apps publish` on the local stack, need it)"
        return "shared key" if self.app_settings.get("BATCH_ACCOUNT_KEY") else "DefaultAzureCredential (no Batch key given)"

    def require_batch(self) -> None:
        if not self.app_settings.get("BATCH_ACCOUNT_URL"):
            raise UsageProblem(f"the Batch account is not configured in {self.source}: set _BATCH_ACCOUNT_URL "
                               "(INI), batch_account_url (YAML) or BATCH_ACCOUNT_URL (environment)")

    def check_reachable(self, timeout: float = 1.0) -> None:
        """For storage on loopback, a TCP connect (milliseconds) instead of the SDK's retries (seconds) to say there is none."""
        if self.local_data_dir is not None and not self.app_settings:
            raise ServiceUnreachable(f"no local stack in {self.local_data_dir}; start it with `dmsbatch up`")
        endpoint = self.blob_endpoint
        if not is_loopback(endpoint):
            return
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                return
        except OSError:
            raise ServiceUnreachable(no_stack_message(endpoint, self)) from None

    def describe(self) -> list[str]:
        """What ``dmsbatch config show`` prints: source, each mapping, credentials; never a secret."""
        lines = [f"source: {self.source}"]
        width = max((len(", ".join(m.sources)) for m in self.mapped), default=0)
        for item in self.mapped:
            lines.append(f"  {', '.join(item.sources):<{width}}  ->  {item.setting} = {item.shown}")
        lines.append(f"storage: {self.blob_endpoint or '(none)'} ({self.storage_credential_kind()})")
        batch_url = self.app_settings.get("BATCH_ACCOUNT_URL")
        lines.append(f"batch: {batch_url or '(none)'} ({self.batch_credential_kind()})")
        if self.local_data_dir is not None:
            state = "running" if self.local_running else "not running: start it with `dmsbatch up`"
            lines.append(f"local stack: {self.local_data_dir} ({state})")
        for key in self.ignored:
            lines.append(f"ignored: {key} (not a setting dmsbatch reads)")
        for number in self.ignored_lines:
            where = f"line {number}" if number else "a key"
            lines.append(f"ignored: {where} (not a setting name; a value wrapped onto the next line? write each value on "
                         "its key's line)")
        return lines


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def no_stack_message(endpoint: str, config: Config | None = None) -> str:
    parts = urlsplit(endpoint)
    where = f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.port else endpoint
    if config is not None and config.local_data_dir is None:
        return f"nothing answers at {where} (storage from {config.source}); is the emulator running? (`dmsbatch up` starts the local stack)"
    return f"no local stack at {where}; start it with `dmsbatch up`"


# ---- loading ------------------------------------------------------------------------------

def load_config(path: str | Path | None = None, data_dir: str | Path | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """The configuration in force, by the order in the module docstring."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    if path:
        return from_file(Path(path).expanduser())
    data_dir = data_dir or env.get(DATA_DIR_ENV) or None
    if data_dir:
        return from_local_stack(Path(data_dir).expanduser())
    if any(env.get(name) for name in APP_SETTING_NAMES):
        return from_app_settings(env)
    user_file = user_config_file(env)
    if user_file is not None:
        return from_file(user_file)
    return from_local_stack(None)


def user_config_file(env: Mapping[str, str]) -> Path | None:
    base = Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config") / "dmsbatch"
    return next((base / name for name in ("config.yaml", "config.yml", "config.ini") if (base / name).is_file()), None)


def from_file(path: Path) -> Config:
    if not path.is_file():
        raise UsageProblem(f"no config file at {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".ini", ".cfg", ".conf") or text.lstrip().startswith("["):
        return _from_ini(path, text)
    return _from_yaml(path, text)


def _from_ini(path: Path, text: str) -> Config:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the keys as written, for the mapping shown back to the modeller
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise UsageProblem(f"{path} is not a readable INI file: {_ini_problem(exc)}") from None
    values = {key: _unquote(value) for key, value in parser.defaults().items()}
    if not values:
        raise UsageProblem(f"{path} has no [DEFAULT] section with _BATCH_ACCOUNT_* and _STORAGE_ACCOUNT_* keys")
    return map_keys(values, f"INI file {path}", lines=text.splitlines())


def _ini_problem(exc: configparser.Error) -> str:
    """What is wrong and where, never the line itself (it may hold a key; configparser's messages quote it)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: a setting before any section; start the file with [DEFAULT]"
    if isinstance(exc, configparser.ParsingError):
        numbers = ", ".join(str(number) for number, _ in exc.errors)
        return (f"line {numbers}: not `NAME = value` (a value wrapped onto the next line? write each value on its "
                "key's line)")
    if isinstance(exc, configparser.DuplicateOptionError):
        name = exc.option if looks_like_setting_name(exc.option) else "a name"
        return f"line {exc.lineno}: {name} is given twice"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: a section is given twice"
    return type(exc).__name__


def _from_yaml(path: Path, text: str) -> Config:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageProblem(f"{path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(document, dict):
        raise UsageProblem(f"{path} must hold a mapping (batch_account_url: ..., storage_account_name: ...)")
    return map_keys({str(k): "" if v is None else str(v) for k, v in document.items()}, f"config file {path}",
                    lines=text.splitlines())


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Line, column and what is wrong; never the offending line (PyYAML's message prints it, key included)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "not YAML"
    # the problem names tokens ('<stream end>', ',') but may quote a tag or an alias taken from the text: not those
    problem = _QUOTED.sub(lambda m: m.group(0) if len(m.group(1) or m.group(2) or "") <= 2 or
                          (m.group(1) or m.group(2) or "").startswith("<") else "'...'", str(problem))
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem + (f" ({context})" if context and context != problem else "")


_SETTING_NAME = re.compile(r"_*[A-Z][A-Z0-9]*(?:_+[A-Z0-9]+)+|_*[a-z][a-z0-9]*(?:_+[a-z0-9]+)+")


def looks_like_setting_name(name: str) -> bool:
    """Whether an unknown key may be echoed: words in one case joined by ``_`` (``_POOL_SIZE``, ``runs_container``).

    Standard base64 has no ``_``, so no piece of an account key looks like this: a key wrapped onto
    the next line of an INI file is read as a name of its own, and is never printed.
    """
    return bool(_SETTING_NAME.fullmatch(name))


_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def check_key(value: str, name: str, source: str, hint: str = "") -> None:
    """``UsageProblem`` naming ``name`` (never showing the value) unless ``value`` is base64, as account keys are.

    The SDKs decode keys only when they sign a request: a malformed one would be a traceback from
    deep in the Batch SDK, or a storage "authentication failed" for a request never sent.
    """
    if any(c.isspace() for c in value):
        why = "it spans lines or holds spaces (write it on one line, as copied)"
    elif not _BASE64.fullmatch(value):
        why = "it holds characters other than A-Z, a-z, 0-9, '+', '/' and a final '='"
    else:
        try:
            base64.b64decode(value, validate=True)
            return
        except (binascii.Error, ValueError):
            why = f"its {len(value)} characters do not make whole base64 groups (an account key is 88, ending in '==')"
    raise UsageProblem(f"{source}: {name} is not valid base64, so it cannot be an account key: {why}{hint}; copy the "
                       "key again (the account's keys in the Azure portal); nothing was sent")


def check_connection_string_key(value: str, name: str, source: str, hint: str = "") -> None:
    """``check_key`` for a connection string's ``AccountKey`` (SAS and endpoint-only strings have none)."""
    for part in value.split(";"):
        key, _, rest = part.partition("=")
        if key.strip().lower() == "accountkey":
            check_key(rest.strip(), f"{name} (its AccountKey)", source, hint)


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _normal(key: str) -> str:
    key = key.strip().lstrip("_").lower()
    return ALIASES.get(key, key)


def map_keys(values: Mapping[str, str], source: str, lines: list[str] | None = None) -> Config:
    """Map modeller-facing keys (INI or YAML) onto app settings; see the module docstring.

    Account keys must be base64 (``check_key``). ``lines`` (the file's text) only place an ignored
    name that does not look like a setting name, which is reported by its line number alone.
    """
    from dmscontract.settings import Settings

    by_key: dict[str, tuple[str, str]] = {}
    for key, value in values.items():
        if value != "":
            by_key[_normal(key)] = (key, value)
    settings_fields = {f.name for f in fields(Settings)} - {
        "storage_connection_string", "blob_service_url", "queue_service_url", "batch_account_url", "batch_account_name",
        "batch_account_key"}
    known = {"batch_account_url", "batch_account_name", "batch_account_key", "storage_account_name", "storage_account_key",
             "storage_connection_string", "storage_blob_url", "storage_queue_url"} | settings_fields
    app: dict[str, str] = {}
    mapped: list[MappedSetting] = []

    def src(*keys: str) -> tuple[str, ...]:
        return tuple(by_key[k][0] for k in keys if k in by_key)

    def val(key: str) -> str | None:
        return by_key[key][1] if key in by_key else None

    # storage
    name, key, conn = val("storage_account_name"), val("storage_account_key"), val("storage_connection_string")
    blob_url, queue_url = val("storage_blob_url"), val("storage_queue_url")
    # keys: base64, or said now (with any line that may be the rest of one, wrapped)
    unknown = [original for k, (original, _) in by_key.items() if k not in known]
    ignored = sorted(name for name in unknown if looks_like_setting_name(name))
    ignored_lines = sorted((_line_of(name, lines) for name in unknown if not looks_like_setting_name(name)),
                           key=lambda n: n or 0)
    hint = ""
    if ignored_lines:
        numbers = ", ".join(str(n) for n in ignored_lines if n) or "a line"
        hint = f" (line {numbers} of the file is no setting: the rest of a key, wrapped onto the next line?)"
    if conn:
        check_connection_string_key(conn, src("storage_connection_string")[0], source, hint)
    elif key:
        check_key(key, src("storage_account_key")[0], source, hint)
    if val("batch_account_key"):
        check_key(val("batch_account_key"), src("batch_account_key")[0], source, hint)  # type: ignore[arg-type]
    if conn:
        app["DataStorage"] = conn
        mapped.append(MappedSetting("DataStorage", src("storage_connection_string"), conn, secret=True))
    elif name and key:
        if blob_url or queue_url:
            scheme = urlsplit(blob_url or queue_url or "https://").scheme or "https"
            endpoints = ";".join(f"{kind}Endpoint={url.rstrip('/')}" for kind, url in (("Blob", blob_url), ("Queue", queue_url)) if url)
            conn = f"DefaultEndpointsProtocol={scheme};AccountName={name};AccountKey={key};{endpoints}"
        else:
            conn = f"DefaultEndpointsProtocol=https;AccountName={name};AccountKey={key};EndpointSuffix=core.windows.net"
        app["DataStorage"] = conn
        mapped.append(MappedSetting("DataStorage", src("storage_account_name", "storage_account_key", "storage_blob_url",
                                                       "storage_queue_url"), conn, secret=True))
    elif name or blob_url:
        if key and not name:
            raise UsageProblem(f"{source}: a storage account key needs the account's name (_STORAGE_ACCOUNT_NAME)")
        app["DataStorage__blobServiceUri"] = (blob_url or f"https://{name}.blob.core.windows.net").rstrip("/")
        app["DataStorage__queueServiceUri"] = (queue_url or f"https://{name}.queue.core.windows.net").rstrip("/")
        mapped.append(MappedSetting("DataStorage__blobServiceUri", src("storage_account_name", "storage_blob_url"),
                                    app["DataStorage__blobServiceUri"]))
        mapped.append(MappedSetting("DataStorage__queueServiceUri", src("storage_account_name", "storage_queue_url"),
                                    app["DataStorage__queueServiceUri"]))
    elif key:
        raise UsageProblem(f"{source}: a storage account key needs the account's name (_STORAGE_ACCOUNT_NAME)")
    else:
        raise UsageProblem(f"{source} names no storage account: set _STORAGE_ACCOUNT_NAME (INI), storage_account_name (YAML), "
                           "or a connection string")
    # batch
    batch_url = val("batch_account_url")
    if batch_url:
        batch_url = batch_url.rstrip("/") if "://" in batch_url else "https://" + batch_url.rstrip("/")
        app["BATCH_ACCOUNT_URL"] = batch_url
        mapped.append(MappedSetting("BATCH_ACCOUNT_URL", src("batch_account_url"), batch_url))
    for k, setting, secret in (("batch_account_name", "BATCH_ACCOUNT_NAME", False), ("batch_account_key", "BATCH_ACCOUNT_KEY", True)):
        if val(k):
            app[setting] = val(k)  # type: ignore[assignment]
            mapped.append(MappedSetting(setting, src(k), val(k), secret=secret))  # type: ignore[arg-type]
    if val("batch_account_key") and not val("batch_account_name"):
        raise UsageProblem(f"{source}: a Batch account key needs the account's name (_BATCH_ACCOUNT_NAME)")
    # any other backend setting, by its own name (RUNS_CONTAINER, PROFILES_CONTAINER, ...)
    for k in sorted(by_key):
        if k in settings_fields:
            app[k.upper()] = by_key[k][1]
            mapped.append(MappedSetting(k.upper(), src(k), by_key[k][1]))
    return Config(source=source, app_settings=app, mapped=mapped, ignored=ignored, ignored_lines=ignored_lines)


def _line_of(name: str, lines: list[str] | None) -> int | None:
    """The number of the line where ``name`` is given (``NAME =``, ``NAME:``), if the text is known."""
    for number, line in enumerate(lines or [], 1):
        text = line.strip()
        if text.startswith(name) and text[len(name):].lstrip()[:1] in ("=", ":", ""):
            return number
    return None


def from_app_settings(env: Mapping[str, str]) -> Config:
    """The backend's own app settings, as in the environment (names unchanged)."""
    from dmscontract.settings import Settings

    names = list(APP_SETTING_NAMES) + ["BATCH_ACCOUNT_NAME", "BATCH_ACCOUNT_KEY"]
    names += [f.name.upper() for f in fields(Settings) if f.name.upper() not in names
              and f.name not in ("storage_connection_string", "blob_service_url", "queue_service_url")]
    app = {name: env[name] for name in names if env.get(name)}
    if app.get("DataStorage"):
        check_connection_string_key(app["DataStorage"], "DataStorage", "the environment")
    if app.get("BATCH_ACCOUNT_KEY"):
        check_key(app["BATCH_ACCOUNT_KEY"], "BATCH_ACCOUNT_KEY", "the environment")
    mapped = [MappedSetting(name, (name,), value, secret=name in ("DataStorage", "BATCH_ACCOUNT_KEY"))
              for name, value in app.items()]
    return Config(source="environment variables", app_settings=app, mapped=mapped)


LOCAL_STACK_DIR = ".local-stack"  # where ./dev and `dmsbatch up` keep the local stack, at a checkout's root
LOCAL_STACK_FILE = "client.json"  # written there by the local stack while it runs (local/stack.py: RunningStack.save)


def local_stack_dir(start: Path | None = None) -> Path:
    """The local stack's folder: the nearest ``.local-stack`` in the working directory or one above it
    (a checkout and its examples), else ``./.local-stack``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / LOCAL_STACK_DIR).is_dir():
            return folder / LOCAL_STACK_DIR
    return here / LOCAL_STACK_DIR


def _alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            continue  # it exists, owned by someone else
    return bool(pids)


def from_local_stack(data_dir: Path | None) -> Config:
    """The local stack's settings (well-known dev credentials) from the file it writes while it runs
    (``client.json``: its app settings and its processes); none if it never ran there."""
    data_dir = (data_dir or local_stack_dir()).resolve()
    try:
        state = json.loads((data_dir / LOCAL_STACK_FILE).read_text())
    except (OSError, ValueError):
        state = {}
    app = {k: str(v) for k, v in (state.get("app_settings") or {}).items()}
    alive = _alive(list(state.get("pids") or []))
    mapped = [MappedSetting(k, ("local stack",), v, secret=k in ("DataStorage", "BATCH_ACCOUNT_KEY")) for k, v in app.items()]
    return Config(source=f"the local stack in {data_dir}", app_settings=app, mapped=mapped,
                  local_data_dir=data_dir, local_running=alive)


def describe_sources() -> str:
    """One paragraph for ``--help``."""
    return ("Configuration: --config FILE (INI with _BATCH_ACCOUNT_* and _STORAGE_ACCOUNT_* keys, or YAML), "
            "--data-dir (a local stack), the backend's app settings in the environment, "
            "~/.config/dmsbatch/config.yaml, else the local stack started by `dmsbatch up`.")


def as_dict(config: Config) -> dict[str, Any]:
    """The masked mapping, for ``config show --json``."""
    return {"source": config.source,
            "settings": {m.setting: m.shown for m in config.mapped},
            "from": {m.setting: list(m.sources) for m in config.mapped},
            "storage": config.storage_credential_kind(), "batch": config.batch_credential_kind(),
            "ignored": config.ignored, "ignored_lines": config.ignored_lines}
