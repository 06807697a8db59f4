"""``python -m local``: start, stop and use the local stack.

    python -m local up            # Azurite + local Batch + local Functions host
    python -m local example hello # run examples/hello end to end, print its manifest
    python -m local down
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from local import stack as local_stack

REPO_ROOT = Path(__file__).resolve().parent.parent


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), default=local_stack.DEFAULT_DATA_DIR, show_default=True,
              help="Where the stack keeps storage, node directories, logs and its state file.")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path) -> None:
    """The local stack: Azurite, a local Batch service and a local Functions host, on loopback."""
    ctx.obj = data_dir


def port_options(command):
    """The stack's ports, for every command that may start it."""
    command = click.option("--batch-port", default=10100, show_default=True)(command)
    command = click.option("--queue-port", default=10001, show_default=True)(command)
    return click.option("--blob-port", default=10000, show_default=True, help="0 picks a free port")(command)


@cli.command()
@port_options
@click.option("--functions-host/--no-functions-host", default=True, show_default=True,
              help="start the local Functions host; --no-functions-host leaves the app to `func start`")
@click.option("--storage-faults", is_flag=True,
              help="put the storage fault proxy (local.storage_faults) between every client and Azurite; docs/faults.md")
@click.option("--keyless", is_flag=True,
              help="run as deployed: HTTPS, a managed identity endpoint, no key in the app (docs/security.md)")
@click.pass_obj
def up(data_dir: Path, blob_port: int, queue_port: int, batch_port: int, functions_host: bool, storage_faults: bool,
       keyless: bool) -> None:
    """Start the stack (no-op if it is already running)."""
    running = local_stack.up(local_stack.StackConfig(
        data_dir=data_dir, blob_port=blob_port, queue_port=queue_port, batch_port=batch_port, functions_host=functions_host,
        storage_faults=storage_faults, keyless=keyless))
    click.echo(f"local stack up: blob {running.storage.blob_url}, queue {running.storage.queue_url}, batch {running.batch_url}")
    if running.storage_faults_url:
        click.echo(f"storage fault proxy in front of Azurite (blob {running.azurite.blob_url}); "
                   f"admin: StorageFaultsAdmin({running.storage_faults_url!r})")
    if running.certificate is not None:
        click.echo(f"keyless: trust {running.certificate.cert_path} (REQUESTS_CA_BUNDLE); tokens from {running.identity_endpoint}")
    click.echo(f"logs in {running.config.data_dir / 'logs'}", err=True)


@cli.command()
@click.pass_obj
def down(data_dir: Path) -> None:
    """Stop the stack and every process it started."""
    click.echo("local stack stopped" if local_stack.down(data_dir) else "local stack was not running")


@cli.command()
@click.pass_obj
def env(data_dir: Path) -> None:
    """Print the app settings of the running stack as shell exports (dev credentials only)."""
    running = local_stack.RunningStack.load(data_dir)
    if running is None or not running.alive():
        raise click.ClickException("the local stack is not running: start it with `python -m local up`")
    for name, value in running.app_settings().items():
        click.echo(f"export {name}='{value}'")


@cli.command()
@click.argument("name")
@click.option("--timeout", default=600, show_default=True, help="seconds to wait for the run to finish")
@port_options
@click.pass_obj
def example(data_dir: Path, name: str, timeout: int, blob_port: int, queue_port: int, batch_port: int) -> None:
    """Run examples/NAME end to end on the local stack and print its manifest's location."""
    from dmsbatch.session import Session

    study = REPO_ROOT / "examples" / name
    if not study.is_dir():
        raise click.ClickException(f"no example named {name!r} in {REPO_ROOT / 'examples'}")
    was_running = (running := local_stack.RunningStack.load(data_dir)) is not None and running.alive()
    started = time.monotonic()
    if not was_running:
        click.echo("starting the local stack: Azurite, the local Batch service, the Functions host...")
    running = local_stack.up(local_stack.StackConfig(data_dir=data_dir, blob_port=blob_port, queue_port=queue_port, batch_port=batch_port))
    try:
        session = Session.from_app_settings(running.app_settings())
        run_id = session.submit(study).run_id  # an inputs/ folder uploaded blob by blob, or the study zipped (dmsbatch.study)
        click.echo(f"submitted run {run_id}; waiting for it to finish...")
        status = session.wait(run_id, timeout=timeout, check=False)
        manifest = session.manifest(run_id)
        click.echo(f"run {run_id}: {status['state']}" + (f" ({status['reason']})" if status.get("reason") else ""))
        if manifest:
            _summarise(manifest)
            container = running.app_settings().get("RUNS_CONTAINER", "runs")
            click.echo(f"results: dmsbatch results {run_id}   (--members for a sweep's table, --download DIR for the files)")
            click.echo(f"  in the {container} container: {run_id}/manifest.json, {run_id}/report.html"
                       + (f", {run_id}/members.csv" if manifest.get("files", {}).get("members_csv") else ""))
        click.echo(f"wall time {time.monotonic() - started:.1f}s")
        if status["state"] != "succeeded":
            sys.exit(1)
    finally:
        if not was_running:
            local_stack.down(data_dir)


def _summarise(manifest: dict, shown: int = 5) -> None:
    """A few lines per run: every task and output of a small run, totals and a sample of a big one."""
    totals = manifest["totals"]
    click.echo(f"  {totals['tasks']} tasks ({totals['succeeded']} succeeded, {totals['failed']} failed), "
               f"{totals['outputs']} outputs ({totals['output_bytes']} bytes)")
    for task in manifest["tasks"][:shown]:
        click.echo(f"  task {task['id']}: exit code {task['exit_code']}, {task['started_at']} -> {task['ended_at']}, "
                   f"node {task['node_id']}, logs {', '.join(task['logs'].values())}")
    for output in manifest["outputs"][:shown]:
        click.echo(f"  output {output['task_id']}/{output['path']} ({output['size']} bytes)")
    hidden = max(0, len(manifest["tasks"]) - shown) + max(0, len(manifest["outputs"]) - shown)
    if hidden:
        click.echo(f"  ... and {hidden} more entries in the manifest")


if __name__ == "__main__":
    cli()
