"""Stage and zip the Functions app for publishing (used by infra/deploy.sh).

    python infra/package_app.py OUT_DIR [--blob-source EventGrid|LogsAndContainerScan]

Copies only what the app runs (function_app.py, host.json, requirements.txt, functions/,
shared/, dmsreport/, dmscontract/) to OUT_DIR/app/ and zips it to OUT_DIR/app.zip; the Python packages are installed
by the remote build from requirements.txt.

Flex Consumption runs only the Event Grid-based blob trigger, while the local Functions
host runs only the polling one, so the repository declares blob triggers without a source
and this step is the deployment-time switch: with ``--blob-source EventGrid`` (the default)
every ``blob_trigger(...)`` decorator in the staged copy gets
``source=func.BlobSource.EVENT_GRID``. A trigger that already names a source is left alone.
The repository itself is never modified.
"""
from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_FILES = ("function_app.py", "host.json", "requirements.txt")
APP_PACKAGES = ("functions", "shared", "dmsreport", "dmscontract")
SKIP_PARTS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}
SOURCES = {"EventGrid": "EVENT_GRID", "LogsAndContainerScan": "LOGS_AND_CONTAINER_SCAN"}
DECORATOR = re.compile(r"@(?P<obj>\w+)\.blob_trigger\(")


class PackagingError(RuntimeError):
    """The app cannot be staged as asked; the message says why."""


def blob_trigger_calls(source: str) -> list[ast.Call]:
    """The ``<obj>.blob_trigger(...)`` calls used as decorators in a module."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                        and deco.func.attr == "blob_trigger"):
                    calls.append(deco)
    return calls


def functions_alias(source: str) -> str | None:
    """The name ``azure.functions`` is imported as in a module (``func`` by convention)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "azure.functions":
                    return alias.asname or "azure.functions"
    return None


def set_blob_source(source: str, blob_source: str, path: str = "<module>") -> tuple[str, int]:
    """Add ``source=<alias>.BlobSource.<X>`` to every blob trigger that names no source.

    Returns the new text and how many triggers were switched.
    """
    calls = blob_trigger_calls(source)
    named = [c for c in calls if any(k.arg == "source" for k in c.keywords)]
    if len(named) == len(calls):
        return source, 0
    if named:
        raise PackagingError(f"{path}: some blob triggers name a source and some do not; switch the source by hand")
    alias = functions_alias(source)
    if alias is None:
        raise PackagingError(f"{path}: has a blob trigger but does not `import azure.functions as <name>`")
    member = SOURCES[blob_source]
    switched, count = DECORATOR.subn(lambda m: f"{m.group(0)}source={alias}.BlobSource.{member}, ", source)
    if count != len(calls):
        raise PackagingError(f"{path}: found {len(calls)} blob triggers but {count} `@<name>.blob_trigger(` decorators; "
                             "switch the source by hand")
    for call in blob_trigger_calls(switched):
        if not any(k.arg == "source" for k in call.keywords):
            raise PackagingError(f"{path}: could not switch a blob trigger's source")
    return switched, count


def stage(out_dir: Path, blob_source: str = "EventGrid", repo_root: Path = REPO_ROOT) -> tuple[Path, Path, int]:
    """Stage the app in ``out_dir/app`` and zip it to ``out_dir/app.zip``.

    Returns (staged directory, zip path, number of blob triggers switched).
    """
    if blob_source not in SOURCES:
        raise PackagingError(f"unknown blob source {blob_source!r}: one of {', '.join(SOURCES)}")
    app_dir = out_dir / "app"
    if app_dir.exists():
        shutil.rmtree(app_dir)
    app_dir.mkdir(parents=True)
    files: list[Path] = []
    for name in APP_FILES:
        if not (repo_root / name).is_file():
            raise PackagingError(f"{repo_root / name} is missing")
        files.append(Path(name))
    for package in APP_PACKAGES:
        root = repo_root / package
        if not root.is_dir():
            raise PackagingError(f"{root} is missing")
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(repo_root)
            if path.is_file() and not SKIP_PARTS & set(rel.parts) and path.suffix not in SKIP_SUFFIXES:
                files.append(rel)
    switched = 0
    for rel in files:
        target = app_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "functions" and rel.suffix == ".py" and blob_source == "EventGrid":
            text, count = set_blob_source((repo_root / rel).read_text(), blob_source, str(rel))
            target.write_text(text)
            switched += count
        else:
            shutil.copy2(repo_root / rel, target)
    zip_path = out_dir / "app.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(app_dir / rel, rel.as_posix())
    return app_dir, zip_path, switched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="where to write app/ and app.zip")
    parser.add_argument("--blob-source", default="EventGrid", choices=sorted(SOURCES),
                        help="blob trigger source in Azure (default: EventGrid, the only one Flex Consumption runs)")
    args = parser.parse_args(argv)
    try:
        app_dir, zip_path, switched = stage(args.out_dir, args.blob_source)
    except PackagingError as exc:
        print(f"package_app: {exc}", file=sys.stderr)
        return 1
    print(f"staged {app_dir}, zipped {zip_path}; blob triggers switched to {args.blob_source}: {switched}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
