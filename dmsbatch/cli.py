"""The ``dmsbatch`` command: a thin layer over the Python API (``dmsbatch.session``), for modellers.

Output goes where scripts expect it: what a command produces (a run id, a table, a
log) on stdout; progress and notes on stderr. So ``run=$(dmsbatch submit study/)``
captures the run id alone. Expected failures print ``error: ...`` and the lines a
modeller needs (spec errors with their field paths), never a traceback, and exit with
the code their kind carries (``dmsbatch.errors``): 1 run failed, 2 usage or spec, 3
service unreachable or credentials refused.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from dmsbatch.config import describe_sources
from dmsbatch.errors import DmsbatchError, RunFailed, ServiceUnreachable, UsageProblem

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---- output helpers ---------------------------------------------------------------------

def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console.width = 200  # a pipe or a file: do not cut table cells at 80 columns
    return console


def note(message: str) -> None:
    click.echo(message, err=True)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _show_error(error: DmsbatchError) -> None:
    click.echo(f"error: {error}", err=True)
    for line in error.lines:
        click.echo(f"  {line}", err=True)


class DmsGroup(click.Group):
    """Every subcommand's expected failures become a message and an exit code, here, once."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DmsbatchError as error:
            _show_error(error)
            ctx.exit(error.exit_code)
        except TimeoutError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(1)


def _session(ctx: click.Context):
    """The session for the group's --config/--data-dir, built on first use (``up`` and ``validate --profiles`` need none)."""
    root = ctx.find_root()
    if "session" not in root.meta:
        from dmsbatch.session import Session

        root.meta["session"] = Session.connect(config=root.params.get("config"), data_dir=root.params.get("data_dir"))
    return root.meta["session"]


# ---- the group ----------------------------------------------------------------------------

@click.group(name="dmsbatch", cls=DmsGroup, context_settings=CONTEXT, epilog=describe_sources())
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), envvar="DMSBATCH_CONFIG",
              help="A config file: the modellers' INI ([DEFAULT] with _BATCH_ACCOUNT_* and _STORAGE_ACCOUNT_*) or YAML.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="DMSBATCH_DATA_DIR",
              help="Use the local stack kept in this directory (default: the repository's .local-stack).")
@click.version_option(package_name="dmsbatch", prog_name="dmsbatch")
def cli(config: Path | None, data_dir: Path | None) -> None:
    """Run DSM2, PTM, SCHISM and PEST studies on Azure Batch (or the local stack) and fetch their results.

    \b
    dmsbatch up                                  start the local stack
    dmsbatch submit examples/historical --wait   zip, upload, run, wait
    dmsbatch logs RUN_ID                         the task's stdout
    dmsbatch results RUN_ID --download out/      outputs, size and MD5 checked
    """
    import logging

    # the SDKs log failed attempts (credential probes, retries) as warnings; the command reports the outcome itself
    azure_log = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in azure_log.handlers):
        azure_log.addHandler(logging.NullHandler())


# ---- the local stack ----------------------------------------------------------------------

def _port(name: str, default: int, envvar: str):
    return click.option(f"--{name}-port", default=default, show_default=True, envvar=envvar, help=f"0 picks a free port ({envvar})")


def _local_stack(ctx: click.Context, *args: str) -> None:
    """Run the local stack's own command (``python -m local ...``) of the checkout the stack lives in.

    The local stack is part of a dmsbatch checkout, not of this installed command, which never imports it:
    the checkout is the one holding the stack's folder (``--data-dir``, ``DMSBATCH_DATA_DIR``, or the
    nearest ``.local-stack``), the working directory, or the one this command runs from (an editable
    install), whichever has ``local/stack.py`` at or above it first."""
    import dmsbatch
    from dmsbatch.config import local_stack_dir

    given = ctx.find_root().params.get("data_dir") or os.environ.get("DMSBATCH_DATA_DIR")
    data_dir = Path(given).expanduser().resolve() if given else local_stack_dir()
    starts = (data_dir, Path.cwd().resolve(), Path(dmsbatch.__file__).resolve().parent)
    checkout = next((folder for start in starts for folder in (start, *start.parents)
                     if (folder / "local" / "stack.py").is_file()), None)
    if checkout is None:
        raise UsageProblem("the local stack comes with a dmsbatch checkout: run this inside one "
                           "(or `./dev up` there), or point --data-dir at a stack kept in one")
    done = subprocess.run([sys.executable, "-m", "local", "--data-dir", str(data_dir), *args], cwd=checkout)
    if done.returncode:
        raise SystemExit(done.returncode)


@cli.command(context_settings=CONTEXT)
@_port("blob", 10000, "DMSBATCH_BLOB_PORT")
@_port("queue", 10001, "DMSBATCH_QUEUE_PORT")
@_port("batch", 10100, "DMSBATCH_BATCH_PORT")
@click.option("--functions-host/--no-functions-host", default=True, show_default=True,
              help="Start the local Functions host; without it, run the app with `func start`.")
@click.pass_context
def up(ctx: click.Context, blob_port: int, queue_port: int, batch_port: int, functions_host: bool) -> None:
    """Start the local stack (Azurite, local Batch, local Functions host); nothing happens if it is running."""
    _local_stack(ctx, "up", "--blob-port", str(blob_port), "--queue-port", str(queue_port), "--batch-port", str(batch_port),
                 "--functions-host" if functions_host else "--no-functions-host")
    note("`dmsbatch down` stops it")


@cli.command(context_settings=CONTEXT)
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the local stack and every process it started."""
    _local_stack(ctx, "down")


# ---- configuration --------------------------------------------------------------------------

@cli.group(cls=DmsGroup, context_settings=CONTEXT)
def config() -> None:
    """What configuration is in force, and what it maps to."""


@config.command("show", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="As JSON (secrets masked all the same).")
@click.pass_context
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print where the configuration comes from and the app settings each key maps to; keys are never printed."""
    from dmsbatch.config import as_dict

    session = _session(ctx)
    if as_json:
        click.echo(json.dumps(as_dict(session.config), indent=2))
        return
    for line in session.config.describe():
        click.echo(line)


# ---- validate and submit --------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Read profiles from this folder (e.g. profiles/) instead of the profiles container: no storage needed.")
@click.option("--json", "as_json", is_flag=True, help="Print the normalised spec as JSON.")
@click.pass_context
def validate(ctx: click.Context, path: Path, profiles_dir: Path | None, as_json: bool) -> None:
    """Check a run spec, study folder or study zip with the backend's schemas and messages.

    A spec that names a profile is merged with it first, from the profiles container
    (or --profiles DIR). Problems are listed as `field.path: reason`; exit code 2.
    """
    from dmsbatch.study import LocalProfiles, open_study
    from dmsbatch.study import validate as validate_study

    if profiles_dir is not None:
        from dmscontract.spec import DEFAULT_MAX_SWEEP_MEMBERS

        spec = validate_study(open_study(path), LocalProfiles(profiles_dir), DEFAULT_MAX_SWEEP_MEMBERS)
    else:
        study = open_study(path)
        if study.document.get("profile"):
            try:
                spec = _session(ctx).validate(path)
            except ServiceUnreachable as error:
                raise ServiceUnreachable(f"{error} (the spec names profile {study.document['profile']!r}, read from the "
                                         "profiles container; --profiles DIR reads it from a folder instead)") from None
        else:
            spec = validate_study(study, None, _max_members(ctx))
    if as_json:
        click.echo(json.dumps(spec.to_json(), indent=2))
    else:
        tasks = f", {spec.kind}" + (f" on {spec.pool.id}" if spec.pool.id else "")
        click.echo(f"{path}: valid ({spec.name or 'unnamed'}{tasks})")


def _max_members(ctx: click.Context) -> int:
    """The sweep limit from the configuration if one is readable, else the backend's default (offline validation)."""
    from dmscontract.spec import DEFAULT_MAX_SWEEP_MEMBERS

    try:
        return _session(ctx).max_sweep_members()
    except DmsbatchError:
        return DEFAULT_MAX_SWEEP_MEMBERS


@cli.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--wait", "wait_", is_flag=True, help="Then wait for the run to end (exit 1 unless it succeeds).")
@click.option("--run-id", help="Choose the run id (1-56 of a-z, 0-9, '-', '_'); default: the spec's run_id or a new one.")
@click.option("--via", type=click.Choice(["inbox", "queue"]),
              help="inbox: drop the zip for intake (default for studies and zips); queue: upload inputs, post run-requests.")
@click.option("--zip-name", help="The zip's name as the run's input (default: <folder>.zip).")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Leave files or folders out of the zip (glob; repeatable).")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.pass_context
def submit(ctx: click.Context, path: Path, wait_: bool, run_id: str | None, via: str | None, zip_name: str | None,
           exclude: tuple[str, ...], timeout: float | None) -> None:
    """Send a study folder (zipped while it uploads), a study zip, or a spec file; print the run id.

    \b
    A folder with run.yaml at its root is zipped as it is uploaded and dropped in the
    inbox. A spec without inputs gets <folder>.zip, which the command unpacks; a spec
    that lists inputs (files of the folder) gets exactly those. A folder whose spec
    names blobs kept in its inputs/ folder has each file uploaded as that blob instead,
    and the spec posted to run-requests (as the repository's examples do).
    """
    session = _session(ctx)
    bar = _ByteProgress()

    def described(study) -> None:
        what = {"zip": f"{len(study.files)} files, {human_bytes(study.total_bytes)}, zipped as {study.zip_name}"
                if study.form == "folder" else f"the zip {study.source.name} ({human_bytes(study.total_bytes)})",
                "inputs": f"{len(study.input_files)} input files ({human_bytes(study.total_bytes)}) from {study.source / 'inputs'}",
                "spec": "a spec file (no uploads)"}[study.layout]
        note(f"{study.source}: {what}")
        bar.start(study.total_bytes if study.layout != "spec" else 0)

    try:
        submission = session.submit(path, run_id=run_id, via=via, zip_name=zip_name, exclude=exclude,
                                    progress=bar.advance, on_study=described)
    finally:
        bar.stop()
    rate = submission.bytes_uploaded / submission.seconds / 1e6 if submission.seconds > 0 else 0
    where = (f"dropped in {submission.blob}" if submission.via == "inbox"
             else "posted to run-requests" + (f" after uploading {submission.blob}" if submission.blob else ""))
    # a rate says something only for an upload that takes a while; "0.0 MB/s" for a small study reads as a fault
    shown_rate = f" ({rate:.1f} MB/s)" if submission.bytes_uploaded >= 10_000_000 else ""
    sent = f": {human_bytes(submission.bytes_uploaded)} in {submission.seconds:.1f} s{shown_rate}" if submission.bytes_uploaded else ""
    note(where + sent)
    click.echo(submission.run_id)
    if wait_:
        _wait(session, submission.run_id, timeout, just_sent=True)


class _ByteProgress:
    """A byte progress bar on stderr while uploading (only on a terminal: logs and pipes get the summary line)."""

    def __init__(self) -> None:
        self.progress = None
        self.task = None

    def start(self, total: int) -> None:
        console = _console(stderr=True)
        if not total or not console.is_terminal:
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress("uploading", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("upload", total=total)
        self.progress.start()

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


# ---- following runs -----------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("run_id", required=False)
@click.option("--limit", default=20, show_default=True, help="How many recent runs to list (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print status.json (or the list of them) as JSON.")
@click.pass_context
def status(ctx: click.Context, run_id: str | None, limit: int, as_json: bool) -> None:
    """Show one run's status.json, or a table of the most recently updated runs."""
    from dmsbatch.runs import progress

    session = _session(ctx)
    found = session.status(run_id, limit=limit or None)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if run_id:
        for line in _status_lines(found):
            click.echo(line)
        return
    if not found:
        click.echo("no runs yet")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("run", "name", "kind", "state", "tasks", "updated", "reason"):
        table.add_column(column, no_wrap=column in ("run", "updated"))
    for doc in found:
        done, total = progress(doc)
        table.add_row(doc.get("run_id", ""), doc.get("name") or "", doc.get("kind") or "", doc.get("state") or "",
                      f"{done}/{total}" if total else "", (doc.get("updated_at") or ""), doc.get("reason") or "")
    _console().print(table)


# the moments of a run's life, in the order they happen, as `status RUN` shows them
MOMENTS = (("accepted", "accepted"), ("submitted", "submitted"), ("running", "running"), ("cancel requested", "cancel_requested_at"),
           ("deadline passed", "deadline_passed_at"), ("finished", "finished_at"), ("deadline", "deadline"))


def _moment(text: str | None) -> str | None:
    """One format for people: ISO 8601 in UTC to the second (``2026-12-08T02:03:04Z``), whatever the document wrote."""
    from datetime import datetime, timezone

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _status_lines(doc: dict[str, Any]) -> list[str]:
    from dmsbatch.runs import progress

    done, total = progress(doc)
    tasks = doc.get("tasks") or {}
    run_id = doc.get("run_id")
    lines = [f"run {run_id}: {doc.get('state')}"]
    if doc.get("name") or doc.get("kind"):
        lines.append(f"  name: {doc.get('name') or '-'}   kind: {doc.get('kind') or '-'}   pool: {doc.get('pool_id') or '-'}")
    if total:
        states = ("active", "running", "succeeded", "failed", "cancelled")
        lines.append(f"  tasks: {done}/{total} done ({', '.join(f'{k} {tasks.get(k, 0)}' for k in states)})")
        lines.append(f"  retries: {tasks.get('retries', 0)}   requeues (node preempted or lost): {tasks.get('requeues', 0)}")
    stamps = {**(doc.get("timestamps") or {}), **{k: doc.get(k) for _, k in MOMENTS if doc.get(k)}}
    width = max(len(label) for label, _ in MOMENTS)
    for label, key in MOMENTS:
        if stamps.get(key):
            lines.append(f"  {label + ':':<{width + 1}} {_moment(stamps[key])}")
    if doc.get("cancel_reason"):
        lines.append(f"  cancelled because: {doc['cancel_reason']}")
    if doc.get("reason"):
        lines.append(f"  reason: {doc['reason']}")
    for error in doc.get("errors") or []:
        lines.append(f"  error: {error}")
    if doc.get("manifest_url"):
        lines.append(f"  results: `dmsbatch results {run_id}` (--members, --download DIR); its manifest.json, members.csv "
                     f"and report.html are in the runs container under {run_id}/")
    if doc.get("state") == "pending":
        lines.append("  (its inputs are uploaded; the backend has not taken the request in yet)")
    return lines


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 1).")
@click.pass_context
def wait(ctx: click.Context, run_id: str, timeout: float | None) -> None:
    """Wait for a run to end, with a progress bar of tasks done; exit 0 only if it succeeded."""
    _wait(_session(ctx), run_id, timeout)


WAIT_GRACE = 3  # seconds `wait` gives a run id with no trace at all (none in status, inbox or queue) before saying so


def _wait(session, run_id: str, timeout: float | None, just_sent: bool = False) -> None:
    """The progress bar, then the run's end; a failed run's ``RunFailed`` carries its first failed task's stderr tail.
    A run id with no trace yet is said at once (not for a run ``just_sent``, which has none for a moment)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dmsbatch.runs import describe_end, progress

    console = _console(stderr=True)
    bar = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                   TimeElapsedColumn(), console=console, transient=console.is_terminal)
    task = bar.add_task("pending", total=None)

    def update(doc: dict[str, Any]) -> None:
        done, total = progress(doc)
        bar.update(task, description=str(doc.get("state")), completed=done, total=total or None)

    def said(text: str) -> None:
        console.print(text, markup=False, highlight=False)  # above the bar while it is live

    try:
        with bar:
            final = session.wait(run_id, timeout=timeout, on_update=update, on_note=None if just_sent else said,
                                 appear_within=30 if just_sent else WAIT_GRACE)
    except KeyboardInterrupt:
        click.echo(f"stopped waiting; run {run_id} goes on without you.\n"
                   f"  wait again:  dmsbatch wait {run_id}\n"
                   f"  cancel it:   dmsbatch cancel {run_id}", err=True)
        sys.exit(130)
    click.echo(describe_end(final))


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.argument("task_id", required=False)
@click.option("--stderr", "stream", flag_value="stderr", help="stderr instead of stdout.")
@click.option("--stdout", "stream", flag_value="stdout", default=True, help="stdout (the default).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the task runs (read from its node through Batch).")
@click.option("--poll", default=1.0, show_default=True, help="With --follow: seconds between reads.")
@click.pass_context
def logs(ctx: click.Context, run_id: str, task_id: str | None, stream: str, follow: bool, poll: float) -> None:
    """Print a task's stdout (or stderr): TASK_ID defaults to main (single, MPI) or master (BeoPEST); a sweep names one."""
    session = _session(ctx)
    if follow:
        for text in session.follow(run_id, task_id, stream, poll=poll, on_note=note):
            click.echo(text, nl=False)
            sys.stdout.flush()
        return
    click.echo(session.logs(run_id, task_id, stream), nl=False)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--download", "download", type=click.Path(file_okay=False, path_type=Path),
              help="Download every output to DIR/<task>/<path>, checking size and MD5 against the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest's outputs (or with --members, the members) as JSON.")
@click.option("--members", "show_members", is_flag=True, help="A sweep's members: their parameters and how each ended.")
@click.option("--state", type=click.Choice(["succeeded", "failed", "cancelled"]), help="With --members: only those that ended so.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --members: write the table as CSV to this file ('-': standard output).")
@click.option("--merged", is_flag=True, help="With --members, for a re-run: its parent's succeeded members too, marked by origin.")
@click.pass_context
def results(ctx: click.Context, run_id: str, download: Path | None, as_json: bool, show_members: bool, state: str | None,
            csv_path: Path | None, merged: bool) -> None:
    """List a finished run's outputs from its manifest, or download and verify them; or its members (--members)."""
    session = _session(ctx)
    if show_members or state or csv_path or merged:
        _members_table(session.members(run_id, state=state, merged=merged), run_id, as_json, csv_path)
        return
    if download is not None:
        files = session.results(run_id, download=download)
        checked = sum(1 for f in files if f.md5_checked)
        for item in files:
            click.echo(str(item.path))
        note(f"{len(files)} files ({human_bytes(sum(f.size for f in files))}) in {download}: sizes match the manifest, "
             f"MD5 checked for {checked}")
        return
    outputs = session.results(run_id)
    if as_json:
        click.echo(json.dumps(outputs, indent=2))
        return
    if not outputs:
        click.echo(f"run {run_id} has no outputs")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("task", "path", "size", "md5", "blob"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for output in outputs:
        table.add_row(output["task_id"], output["path"], f"{output['size']:,}", "yes" if output.get("content_md5") else "-",
                      output["blob"])
    _console().print(table)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--failed", "failed", is_flag=True, help="The members that did not succeed (the default).")
@click.option("--members", "members", metavar="IDS", help="These members, by task id: m-00004,m-00017.")
@click.option("--run-id", "new_run_id", help="The new run's id (default: <name>-rerun-<time>-<hex>).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait for the new run to end (exit 1 unless it succeeds).")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.pass_context
def rerun(ctx: click.Context, run_id: str, failed: bool, members: str | None, new_run_id: str | None, wait_: bool,
          timeout: float | None) -> None:
    """Run some members of an ended sweep again, as a new run with the same spec, inputs and profile.

    
    Nothing is uploaded: the new run reads the inputs the ended one uploaded. Its manifest
    names the ended run as its parent; `dmsbatch results NEW --members --merged` shows the
    parent's succeeded members with the new run's, marked by origin.
    """
    if failed and members:
        raise UsageProblem("give --failed or --members, not both")
    chosen = [m.strip() for m in members.split(",") if m.strip()] if members else None
    session = _session(ctx)
    child = session.rerun(run_id, chosen, new_run_id)
    note(f"re-running {'the failed members' if chosen is None else f'{len(chosen)} members'} of {run_id} as a new run")
    click.echo(child)
    if wait_:
        _wait(session, child, timeout, just_sent=True)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write it (default: report-RUN_ID.html here).")
@click.option("--open", "open_it", is_flag=True, help="Then open it in the default browser.")
@click.pass_context
def report(ctx: click.Context, run_id: str, output: Path | None, open_it: bool) -> None:
    """Write a run's report (timeline, outcomes, failed tasks, members, cost) to a standalone HTML file.

    
    An ended run's is drawn from its manifest (as the report.html beside it); a run still
    going is drawn from what Batch shows now, marked provisional.
    """
    from dmsbatch.report import report as write_report

    session = _session(ctx)
    path, provisional = session.call(write_report, run_id, output)
    note(f"{'provisional report (the run is still going)' if provisional else 'report'} written to {path}")
    click.echo(str(path))
    if open_it:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


def _confirm(question: str, yes: bool) -> None:
    """Ask before deleting; without a terminal to ask on, only --yes deletes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem(f"{question} Nothing was deleted: there is no terminal to ask on; add --yes")
    if not click.confirm(question, default=False):
        raise UsageProblem("nothing was deleted")


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@click.option("--cancel", "cancel_first", is_flag=True, help="A run still going: cancel it, wait for it to end, then delete it.")
@click.pass_context
def delete(ctx: click.Context, run_id: str, yes: bool, cancel_first: bool) -> None:
    """Delete a run: its Batch job and every blob under runs/RUN_ID/ (inputs, outputs, logs, documents)."""
    session = _session(ctx)
    current = session.status(run_id)  # says at once if there is no such run
    _confirm(f"Delete run {run_id} ({current.get('state')}) with all its inputs, outputs and logs?", yes)
    done = session.delete(run_id, cancel=cancel_first, on_note=note)
    click.echo(f"deleted run {run_id}: {done.blobs} blobs" + (", its Batch job" if done.job_deleted else ""))


@cli.command(context_settings=CONTEXT)
@click.option("--older-than", "older_than", required=True, metavar="AGE", help="Runs that ended longer ago than this (90d, 12h).")
@click.option("--state", type=click.Choice(["succeeded", "failed", "cancelled", "timed_out"]), help="Only runs that ended so.")
@click.option("--name", "name", metavar="GLOB", help="Only runs whose name or run id matches (ptm-*).")
@click.option("--delete", "really", is_flag=True, help="Delete them (without it: only list what would be deleted).")
@click.option("--yes", "-y", is_flag=True, help="With --delete: do not ask first.")
@click.pass_context
def prune(ctx: click.Context, older_than: str, state: str | None, name: str | None, really: bool, yes: bool) -> None:
    """Delete ended runs older than AGE (a dry run unless --delete); runs still going are never pruned."""
    from datetime import timedelta

    from dmscontract.spec_fields import parse_duration_seconds
    from marshmallow import ValidationError

    try:
        age = timedelta(seconds=parse_duration_seconds(older_than))
    except ValidationError as error:
        raise UsageProblem(f"--older-than {older_than!r}: {error.messages[0]}") from None
    session = _session(ctx)
    chosen, active = session.prune_candidates(age, state, name)
    for doc in active:
        note(f"kept {doc['run_id']}: still {doc.get('state')}")
    if not chosen:
        click.echo(f"no ended run{f' ({state})' if state else ''} is older than {older_than}")
        return
    for doc in chosen:
        click.echo(f"{'deleting' if really else 'would delete'} {doc['run_id']}  {doc.get('state')}  "
                   f"ended {doc.get('finished_at') or doc.get('updated_at')}")
    if not really:
        note(f"{len(chosen)} runs would be deleted; add --delete to delete them")
        return
    _confirm(f"Delete these {len(chosen)} runs with all their inputs, outputs and logs?", yes)
    done = session.prune(chosen)
    click.echo(f"deleted {len(done)} runs ({sum(d.blobs for d in done)} blobs)")


def _members_table(rows: list[dict[str, Any]], run_id: str, as_json: bool, csv_path: Path | None) -> None:
    from dmscontract.members import columns_of, to_csv

    if csv_path is not None:
        text = to_csv(rows)
        if str(csv_path) == "-":
            click.echo(text, nl=False)
        else:
            csv_path.write_text(text, encoding="utf-8", newline="")
            note(f"{len(rows)} members written to {csv_path}")
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"run {run_id}: no members to show")
        return
    from rich.table import Table

    shown = [c for c in columns_of(rows) if c not in ("outputs", "stdout", "stderr", "started_at", "ended_at")]
    table = Table(box=None, pad_edge=False)
    for column in shown:
        table.add_column(column, no_wrap=True, justify="right" if column in ("index", "exit_code", "duration_s", "retries",
                                                                                "requeues") else "left")
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row[c]) for c in shown))
    _console().print(table)


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--reason", help="Recorded in status.json and the manifest (`cancelled: <reason>`).")
@click.option("--wait", "wait_", is_flag=True, help="Then wait for the run to end.")
@click.pass_context
def cancel(ctx: click.Context, run_id: str, reason: str | None, wait_: bool) -> None:
    """Cancel a run: a run-control message; the backend ends its tasks and finishes it as cancelled."""
    from dmscontract.status import TERMINAL_STATES

    session = _session(ctx)
    before = session.cancel(run_id, reason)
    if before.get("state") in TERMINAL_STATES:
        click.echo(f"run {run_id} has already ended ({before['state']}); nothing to cancel")
        return
    click.echo(f"cancel requested for run {run_id} ({before.get('state')})")
    if wait_:
        try:
            _wait(session, run_id, None)
        except RunFailed as ended:
            if ended.status.get("state") != "cancelled":
                raise


@cli.command(context_settings=CONTEXT)
@click.argument("run_id")
@click.option("--all", "show_all", is_flag=True, help="Every span, also each task's when there are more than 10.")
@click.option("--json", "as_json", is_flag=True, help="Print the spans and phases as JSON.")
@click.option("--kql", is_flag=True, help="Print the Application Insights (Log Analytics) query for the run's spans instead.")
@click.option("--app-insights", "app_insights", metavar="RESOURCE_ID", envvar="DMSBATCH_APP_INSIGHTS",
              help="Azure: read the spans from this Application Insights resource (its ARM id; DMSBATCH_APP_INSIGHTS).")
@click.option("--days", default=7, show_default=True, help="With --app-insights or --kql: how many days back to look.")
@click.pass_context
def trace(ctx: click.Context, run_id: str, show_all: bool, as_json: bool, kql: bool, app_insights: str | None,
          days: int) -> None:
    """Where a run's time went: the spans of its trace in order, with durations, then its phases.

    \b
    On the local stack the spans come from its telemetry file; against Azure from
    Application Insights (--app-insights RESOURCE_ID, signed in with `az login`), or
    --kql prints the query to run in the portal.
    """
    from dmsbatch import trace as traces

    if kql:
        click.echo(traces.kql_for(run_id, days))
        return
    found = _session(ctx).trace(run_id, app_insights=app_insights, days=days)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
        return
    for line in _trace_lines(found, show_all):
        click.echo(line)


# what the listing shows of a span's attributes, when it has them
_TRACE_DETAILS = ("via", "layout", "bytes_uploaded", "queue_age_s", "dequeue_count", "redelivery", "tasks_added", "pool_id",
                  "exit_code", "result", "node_id", "beopest_master", "beopest_workers", "run_state",
                  "failure_kind", "manifest_latency_s", "zip_bytes", "existed")


def _trace_lines(found, show_all: bool) -> list[str]:
    from dmsbatch import trace as traces

    spans, hidden = traces.spans_to_show(found, show_all)
    origin = min(s.start for s in found.spans)
    kinds = sorted({str(s.attributes["run_kind"]) for s in found.spans if s.attributes.get("run_kind")})
    ids = ", ".join(found.trace_ids)
    lines = [f"run {found.run_id}{' (' + ', '.join(kinds) + ')' if kinds else ''}: {len(found.spans)} spans in trace {ids}, "
             f"{found.seconds:.1f} s from the first to the last"]
    lines.append(f"  {'start':>9}  {'took':>9}  span")
    for span in spans:
        name = span.name.removeprefix("dmsbatch.")
        if span.name == traces.TASK_SPAN and span.attributes.get("task_id"):
            name = f"task {span.attributes['task_id']}"
        details = traces.describe(span, _TRACE_DETAILS)
        where = f"[{span.service.removeprefix('dmsbatch-')}]" if span.service else ""
        label = f"{'  ' * min(found.depth(span), 6)}{name}"
        lines.append(f"  {'+' + _secs((span.start - origin).total_seconds()):>9}  {_secs(span.seconds):>9}  "
                     f"{label:<40} {where:<12}{' FAILED' if span.failed else ''} {details}".rstrip())
    if hidden:
        lines.append(f"  ({hidden} task spans not shown; --all shows them)")
    lines.append("where the time went:")
    for phase, seconds in found.phases():
        lines.append(f"  {phase:<18} {_secs(seconds) if seconds is not None else '-':>9}")
    return lines


def _secs(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds < 10 else f"{seconds:.1f}s"


# ---- profiles and application packages -------------------------------------------------------

@cli.group(cls=DmsGroup, context_settings=CONTEXT)
def profiles() -> None:
    """Reusable model definitions in the profiles container (docs/profiles.md)."""


@profiles.command("push", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...", type=click.Path(path_type=Path))
@click.pass_context
def profiles_push(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Check and upload profile files (<name>.yaml, or folders of them); unchanged ones are left alone."""
    from dmsbatch.profilestore import push

    session = _session(ctx)
    for name, outcome in session.call(push, list(paths)):
        click.echo(f"{name}: {outcome}")


@profiles.command("list", context_settings=CONTEXT)
@click.pass_context
def profiles_list(ctx: click.Context) -> None:
    """List the profiles in the profiles container."""
    from rich.table import Table

    from dmsbatch.profilestore import list_profiles

    found = _session(ctx).call(list_profiles)
    if not found:
        click.echo("no profiles")
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("profile", no_wrap=True)
    table.add_column("modified", no_wrap=True)
    table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=80)
    for item in found:
        table.add_row(item.name, item.last_modified, item.description)
    _console().print(table)


@cli.group(cls=DmsGroup, context_settings=CONTEXT)
def apps() -> None:
    """Application packages (model executables) for pools to reference."""


@apps.command("publish", context_settings=CONTEXT)
@click.argument("name")
@click.argument("version")
@click.argument("zip_path", metavar="ZIP", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--default", "default", is_flag=True, help="Make this version the application's default.")
@click.option("--resource-group", help="Azure: the Batch account's resource group, for the printed commands.")
@click.pass_context
def apps_publish(ctx: click.Context, name: str, version: str, zip_path: Path, default: bool, resource_group: str | None) -> None:
    """Publish ZIP as package VERSION of application NAME.

    On the local stack the package goes into the local Batch service's package store.
    For Azure Batch, the `az` commands that upload and activate it are printed.
    """
    from dmsbatch.apps import azure_commands, is_local_batch, publish_local

    session = _session(ctx)
    if is_local_batch(session.config):
        application = publish_local(session.config, name, version, zip_path, default=default)
        click.echo(f"published {name} {version}{' as the default version' if default else ''} to the local Batch service "
                   f"(versions: {', '.join(application.get('versions') or [])})")
        note(f"a spec's pool uses it with application_packages: [{{id: {name}, version: \"{version}\"}}]")
        return
    note("Azure Batch: application packages are managed through Azure Resource Manager; run:")
    for command in azure_commands(session.config, name, version, zip_path, default=default, resource_group=resource_group):
        click.echo(command)


def main(argv: list[str] | None = None) -> None:
    """The console script; also ``python -m dmsbatch``."""
    try:
        cli.main(args=argv, prog_name="dmsbatch")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
