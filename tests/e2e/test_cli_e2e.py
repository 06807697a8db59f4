"""The ``dmsbatch`` command's verbs against the real local stack, checked by what a modeller sees.

Each test runs the command (in-process, or as the installed script where only a real
process shows it), then looks at its exit code and output and at the blobs the
contracts promise: the zip beside the inputs, outputs, logs, status and manifest.
"""
from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import zipfile
import zlib

import pytest


from tests.support.cli import dms, dmsbatch_argv, process_env, write_study, HISTORICAL
from tests.support.paths import REPO_ROOT
from tests.support.runs import blob_exists, status_json, unique_run_id
from tests.support.waiting import wait_until


SLOW = """name: slow
command: for i in 1 2 3 4 5 6; do echo "step $i"; sleep 1; done
constraints: {max_wall_clock: 2m}
"""


def run_id_of(outcome) -> str:
    """The run id: the first line of stdout (what `run=$(dmsbatch submit ...)` captures)."""
    return outcome.stdout.splitlines()[0]


def blob_bytes(clients, name: str) -> bytes:
    return clients.runs().download_blob(name).readall()


def test_the_installed_command_runs():
    result = subprocess.run(dmsbatch_argv() + ["--version"], capture_output=True, text=True, env=process_env(), cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == "dmsbatch, version 0.1.0", result.stderr


# ---- submit, wait, status, logs, results: the historical study zipped through the inbox ------

def test_historical_study_is_zipped_into_the_inbox_and_runs_both_steps(stack, clients, tmp_path):
    submitted = dms("submit", HISTORICAL, "--wait", "--timeout", "120", stack=stack)
    assert submitted.exit_code == 0, submitted
    run_id = run_id_of(submitted)
    assert re.fullmatch(r"historical-[0-9a-f]{10}", run_id), "intake's derived id for the drop"
    assert f"run {run_id}: succeeded (1/1 tasks succeeded)" in submitted.stdout
    assert "zipped as historical.zip" in submitted.stderr and "dropped in inbox/" in submitted.stderr

    # the zip is kept beside the inputs, with the study's files and executables as they were
    kept = zipfile.ZipFile(io.BytesIO(blob_bytes(clients, f"{run_id}/inputs/historical.zip")))
    assert sorted(kept.namelist()) == sorted(str(p.relative_to(HISTORICAL)) for p in HISTORICAL.rglob("*") if p.is_file())
    assert kept.read("bin/hydro") == (HISTORICAL / "bin" / "hydro").read_bytes()
    assert (kept.getinfo("bin/hydro").external_attr >> 16) & 0o111, "executables stay executable"

    # both steps ran; **/output/* landed beside the inputs
    for name in ("historical.h5.csv", "historical_ec.csv"):
        assert blob_exists(clients, "runs", f"{run_id}/outputs/main/output/{name}")

    logs = dms("logs", run_id, stack=stack)
    assert logs.exit_code == 0, logs
    assert "DSM2-Hydro 8.2.2-standin" in logs.stdout and "EC written: output/historical_ec.csv" in logs.stdout
    assert logs.stdout.encode() == blob_bytes(clients, f"{run_id}/logs/main/stdout.txt")

    status = dms("status", run_id, stack=stack)
    assert status.exit_code == 0 and status.stdout.startswith(f"run {run_id}: succeeded"), status
    assert "tasks: 1/1 done" in status.stdout and f"results: `dmsbatch results {run_id}`" in status.stdout
    assert "http://" not in status.stdout, "no URL that cannot be opened"
    moments = [line.split(":", 1)[0].strip() for line in status.stdout.splitlines()
               if re.search(r": +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", line)]
    assert moments == ["accepted", "submitted", "running", "finished", "deadline"], "one format, in the order they happen"

    listed = dms("status", stack=stack)
    assert listed.exit_code == 0 and run_id in listed.stdout and "succeeded" in listed.stdout

    table = dms("results", run_id, stack=stack)
    assert table.exit_code == 0, table
    assert "output/historical_ec.csv" in table.stdout and "output/historical.h5.csv" in table.stdout

    downloaded = dms("results", run_id, "--download", tmp_path / "out", stack=stack)
    assert downloaded.exit_code == 0, downloaded
    ec = tmp_path / "out" / "main" / "output" / "historical_ec.csv"
    assert ec.read_bytes() == blob_bytes(clients, f"{run_id}/outputs/main/output/historical_ec.csv")
    assert "sizes match the manifest, MD5 checked for 2" in downloaded.stderr


def test_a_chosen_run_id_goes_into_the_zip_spec_and_the_queue_path_uploads_beside_the_inputs(stack, clients, store):
    via_inbox = unique_run_id("hist-inbox")
    outcome = dms("submit", HISTORICAL, "--run-id", via_inbox, "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0 and run_id_of(outcome) == via_inbox, outcome
    assert b"run_id: " + via_inbox.encode() in zipfile.ZipFile(io.BytesIO(
        blob_bytes(clients, f"{via_inbox}/inputs/historical.zip"))).read("run.yaml")

    via_queue = unique_run_id("hist-queue")
    outcome = dms("submit", HISTORICAL, "--via", "queue", "--run-id", via_queue, "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0 and run_id_of(outcome) == via_queue, outcome
    assert "posted to run-requests after uploading runs/" in outcome.stderr
    request = store.read(via_queue, "request.json").document
    assert {"blob": "historical.zip", "path": "historical.zip"} in [
        {k: i[k] for k in ("blob", "path")} for i in request["spec"]["inputs"]]
    assert blob_exists(clients, "runs", f"{via_queue}/outputs/main/output/historical_ec.csv")

    again = dms("submit", HISTORICAL, "--run-id", via_queue, stack=stack)
    assert again.exit_code == 2 and f"run id '{via_queue}' is already used by another run (succeeded)" in again.stderr


def test_an_example_with_an_inputs_folder_uploads_each_input_as_its_blob(stack, clients):
    outcome = dms("submit", REPO_ROOT / "examples" / "hello", "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0, outcome
    run_id = run_id_of(outcome)
    assert run_id.startswith("hello-") and "1 input files" in outcome.stderr
    assert blob_bytes(clients, f"{run_id}/inputs/hydro") == (REPO_ROOT / "examples" / "hello" / "inputs" / "hydro").read_bytes()
    assert blob_bytes(clients, f"{run_id}/outputs/main/version.txt") == b"8.2.2-standin\n"
    refused = dms("submit", REPO_ROOT / "examples" / "hello", "--via", "inbox", stack=stack)
    assert refused.exit_code == 2 and "the inbox takes study zips only; send it with --via queue" in refused.stderr


def test_a_study_zip_is_dropped_as_it_is(stack, clients, tmp_path):
    archive = tmp_path / "mystudy.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("run.yaml", "name: zipped\ncommand: python3 -m zipfile -e mystudy.zip . && cat data/in.txt\n")
        z.writestr("data/in.txt", "hello from the zip\n")
    outcome = dms("submit", archive, "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0, outcome
    run_id = run_id_of(outcome)
    assert run_id.startswith("mystudy-")
    assert blob_bytes(clients, f"{run_id}/inputs/mystudy.zip") == archive.read_bytes()
    assert dms("logs", run_id, stack=stack).stdout == "hello from the zip\n"


def test_a_failed_run_makes_wait_exit_1_with_its_reason(stack, tmp_path):
    study = write_study(tmp_path / "fails", "name: fails\ncommand: echo about to fail >&2; exit 3\n")
    outcome = dms("submit", study, "--via", "queue", "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 1, outcome
    run_id = run_id_of(outcome)
    assert re.search(rf"error: run {run_id}: failed \(0/1 tasks succeeded\)", outcome.stderr)
    assert "Traceback" not in outcome.output
    stderr = dms("logs", run_id, "--stderr", stack=stack)
    assert stderr.exit_code == 0 and "about to fail" in stderr.stdout
    assert dms("wait", run_id, stack=stack).exit_code == 1


def test_a_failed_run_shows_its_failed_tasks_stderr_tail_and_the_command_for_all_of_it(stack, tmp_path):
    command = "for i in $(seq 1 12); do echo \"reading line $i\" >&2; done; echo 'negative depth at node 12' >&2; exit 3"
    study = write_study(tmp_path / "tail", f"name: tail\ncommand: {command}\n")
    outcome = dms("submit", study, "--via", "queue", "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 1, outcome
    run_id = run_id_of(outcome)
    tail = [f"    reading line {i}" for i in range(6, 13)] + ["    negative depth at node 12"]
    expected = [f"error: run {run_id}: failed (0/1 tasks succeeded): task main exited with code 3",
                "  stderr of task main (last 8 lines):", *tail,
                f"  `dmsbatch logs {run_id} main --stderr` prints all of it"]
    assert outcome.stderr.splitlines()[-len(expected):] == expected, outcome
    waited = dms("wait", run_id, stack=stack)
    assert waited.exit_code == 1 and waited.stderr.splitlines()[-len(expected):] == expected, waited

    quiet = write_study(tmp_path / "quiet", "name: quiet\ncommand: echo only stdout; exit 2\n")
    outcome = dms("submit", quiet, "--via", "queue", "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 1, outcome
    run_id = run_id_of(outcome)
    assert outcome.stderr.splitlines()[-1] == (f"  task main wrote nothing to stderr; `dmsbatch logs {run_id} main` "
                                              "prints its stdout"), outcome


# ---- spec errors ------------------------------------------------------------------------------

BAD_SPEC = """name: bad
comand: hydro hydro.inp
constraints:
  max_wall_clock: forever
"""


def test_a_bad_spec_is_refused_before_anything_is_uploaded_with_the_backends_field_paths(stack, clients, tmp_path):
    from dmscontract.spec import SpecError, load_spec
    import yaml

    study = write_study(tmp_path / "badstudy", BAD_SPEC, {"hydro.inp": "x"})
    outcome = dms("submit", study, stack=stack)
    assert outcome.exit_code == 2, outcome
    with pytest.raises(SpecError) as backend:
        load_spec({**yaml.safe_load(BAD_SPEC), "inputs": [{"blob": "badstudy.zip", "path": "badstudy.zip"}]})
    for error in backend.value.errors:
        assert f"  {error}" in outcome.stderr
    assert "comand: is not a field here" in outcome.stderr
    assert "constraints.max_wall_clock: must be a duration" in outcome.stderr
    assert "Traceback" not in outcome.output and outcome.stdout == ""
    assert not [b.name for b in clients.blob_service.get_container_client("inbox").list_blobs() if "badstudy" in b.name]

    checked = dms("validate", tmp_path / "badstudy" / "run.yaml")
    assert checked.exit_code == 2 and "comand: is not a field here" in checked.stderr


def test_inputs_a_zipped_study_cannot_bring_are_refused(stack, tmp_path):
    study = write_study(tmp_path / "named", "name: named\ncommand: ./hydro\ninputs: [hydro, tide.h5]\n", {"hydro": "#!/bin/sh\n"})
    outcome = dms("submit", study, stack=stack)
    assert outcome.exit_code == 2, outcome
    assert "inputs: names 'tide.h5', which is not in the study; a zipped study brings 'named.zip' and the files of it " \
           "the spec names" in outcome.stderr


def test_a_spec_too_big_for_a_dropped_zip_is_refused_for_the_inbox_and_sent_through_the_queue(stack, tmp_path):
    """Intake reads at most ZIP_MAX_SPEC_BYTES (64 KiB) of a dropped zip's spec; through the queue a spec travels as a
    message, or a spec blob when it is bigger, so the same folder goes that way."""
    environment = "".join(f"      P{i}: {'x' * 60}\n" for i in range(1200))
    study = write_study(tmp_path / "big", f"name: big\ncommand: 'true'\nenvironment:\n{environment}", {"data.txt": "x"})
    refused = dms("submit", study, "--via", "inbox", stack=stack)
    assert refused.exit_code == 2, refused
    assert "run.yaml: is " in refused.stderr and "a dropped zip's spec may have at most 65,536" in refused.stderr
    assert "--via queue" in refused.stderr
    sent = dms("submit", study, stack=stack)
    assert sent.exit_code == 0, sent


HYDRO_ECHO = "#!/bin/sh\necho \"hydro read $(cat hydro.inp)\" > output/hydro.out\n"


@pytest.mark.parametrize("via", ["inbox", "queue"])
def test_a_zipped_study_naming_its_own_files_gets_exactly_those(stack, clients, store, tmp_path, via):
    """The spec lists its inputs, files of the study: each task gets them (copied out of the zip by intake, or
    uploaded by the client for --via queue), and not the whole zip."""
    study = write_study(tmp_path / f"own-{via}", "name: own\ncommand: mkdir -p output && ./hydro\n"
                        "inputs: [{blob: bin/hydro, path: hydro, mode: '0755'}, hydro.inp]\noutputs: [output/*]\n",
                        {"bin/hydro": HYDRO_ECHO, "hydro.inp": "CHANNELS 3", "big/unused.dat": "x" * 5000})
    outcome = dms("submit", study, "--via", via, "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0, outcome
    run_id = outcome.stdout.strip().splitlines()[0]
    request = store.read(run_id, "request.json").document
    assert [i["blob"] for i in request["spec"]["inputs"]] == ["bin/hydro", "hydro.inp"]
    [output] = [b.name for b in clients.runs().list_blobs(name_starts_with=f"{run_id}/outputs/")]
    assert output.endswith("/hydro.out") and clients.runs().download_blob(output).readall() == b"hydro read CHANNELS 3\n"


# ---- logs --follow, sweeps, cancel ---------------------------------------------------------------

def test_logs_follow_prints_lines_while_the_task_runs_then_the_rest(stack, clients, store, tmp_path):
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    submitted = dms("submit", spec, stack=stack)
    assert submitted.exit_code == 0, submitted
    run_id = run_id_of(submitted)
    follower = subprocess.Popen(dmsbatch_argv() + ["logs", run_id, "--follow", "--poll", "0.3"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=process_env(stack), cwd=REPO_ROOT)
    states_at_lines = []
    for line in follower.stdout:
        states_at_lines.append((line.strip(), (status_json(store, run_id) or {}).get("state")))
    assert follower.wait(timeout=60) == 0, follower.stderr.read()
    assert [line for line, _ in states_at_lines] == [f"step {i}" for i in range(1, 7)]
    assert states_at_lines[0][1] in ("submitted", "running"), "the first line came from the node while the task ran"
    assert states_at_lines[2][1] in ("submitted", "running"), "and the next ones as they were printed"
    assert "".join(f"{line}\n" for line, _ in states_at_lines).encode() == blob_bytes(clients, f"{run_id}/logs/main/stdout.txt")


def test_a_sweep_names_its_task(stack, tmp_path):
    spec = tmp_path / "sweep.yaml"
    spec.write_text('name: twosome\nkind: sweep\ncommand: echo "member $N"\nsweep: {members: [{N: 1}, {N: 2}]}\n')
    outcome = dms("submit", spec, "--wait", "--timeout", "120", stack=stack)
    assert outcome.exit_code == 0, outcome
    run_id = run_id_of(outcome)
    assert f"run {run_id}: succeeded (2/2 tasks succeeded)" in outcome.stdout
    unnamed = dms("logs", run_id, stack=stack)
    assert unnamed.exit_code == 2 and f"name one, e.g. `dmsbatch logs {run_id} m-00000`" in unnamed.stderr, unnamed
    named = dms("logs", run_id, "m-00001", stack=stack)
    assert named.exit_code == 0 and named.stdout == "member 2\n", named


def test_cancel_ends_a_running_run_and_says_why(stack, store, tmp_path):
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW.replace("1 2 3 4 5 6", "$(seq 1 120)"))
    run_id = run_id_of(dms("submit", spec, stack=stack))
    wait_until(lambda: (status_json(store, run_id) or {}).get("state") == "running", 60, what="the run to start")
    outcome = dms("cancel", run_id, "--reason", "wrong boundary file", "--wait", stack=stack)
    assert outcome.exit_code == 0, outcome
    assert f"cancel requested for run {run_id} (running)" in outcome.stdout
    shown = dms("status", run_id, stack=stack)
    assert shown.stdout.startswith(f"run {run_id}: cancelled") and "reason: cancelled: wrong boundary file" in shown.stdout
    late = dms("cancel", run_id, stack=stack)
    assert late.exit_code == 0 and "has already ended (cancelled); nothing to cancel" in late.stdout
    assert dms("wait", run_id, stack=stack).exit_code == 1


def test_unknown_runs_are_usage_errors_without_tracebacks(stack):
    for verb in (["status", "no-such-run-x"], ["cancel", "no-such-run-x"], ["logs", "no-such-run-x"], ["results", "no-such-run-x"]):
        outcome = dms(*verb, stack=stack)
        assert outcome.exit_code == 2, outcome
        assert "there is no run 'no-such-run-x'" in outcome.stderr and "Traceback" not in outcome.output


def test_waiting_for_a_run_id_with_no_trace_says_so_at_once_then_ends_after_the_grace(stack):
    """A run just posted has no status for a moment: `logs -f` waits 30 s for one, `wait` 3 s (and longer only while
    the queue or the inbox holds its request); both say so on stderr at once, so a mistyped id is plain at once."""
    import threading
    import time

    started = time.monotonic()
    followers = {}
    for verb in (["wait", "no-such-run-y"], ["logs", "no-such-run-y", "-f", "--poll", "0.5"]):
        process = subprocess.Popen(dmsbatch_argv() + verb, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=process_env(stack), cwd=REPO_ROOT)
        first: list = []
        reader = threading.Thread(target=lambda p=process, f=first: f.append((p.stderr.readline(), time.monotonic())))
        reader.start()
        followers[verb[0]] = (process, reader, first)
    for verb, (process, reader, first) in followers.items():
        reader.join(timeout=15)
        assert first, f"{verb}: nothing on stderr within 15 s"
        line, at = first[0]
        grace = 3 if verb == "wait" else 30
        assert line.strip() == (f"run no-such-run-y has no status yet; waiting up to {grace} s for it to appear "
                                "(`dmsbatch status` lists recent runs)"), (verb, line)
        assert at - started < 15, f"{verb}: said after {at - started:.0f} s"
    ended = {}
    for verb, (process, _, _) in followers.items():
        stdout, rest = process.communicate(timeout=90)
        ended[verb] = time.monotonic() - started
        assert process.returncode == 2, (verb, stdout, rest)
        assert "error: there is no run 'no-such-run-y'" in rest and "Traceback" not in rest, (verb, rest)
    assert ended["wait"] < 15 and ended["logs"] >= 30, ended


def test_results_of_an_unfinished_run_say_to_wait(stack, clients, store, tmp_path):
    spec = tmp_path / "slow.yaml"
    spec.write_text(SLOW)
    run_id = run_id_of(dms("submit", spec, stack=stack))
    wait_until(lambda: status_json(store, run_id), 30, what="the request to be taken in")
    outcome = dms("results", run_id, stack=stack)
    assert outcome.exit_code == 2 and "has no manifest yet" in outcome.stderr and f"`dmsbatch wait {run_id}`" in outcome.stderr
    assert dms("wait", run_id, stack=stack).exit_code == 0


def test_download_refuses_an_output_that_differs_from_the_manifest(stack, clients, tmp_path):
    outcome = dms("submit", HISTORICAL, "--via", "queue", "--wait", "--timeout", "120", stack=stack)
    run_id = run_id_of(outcome)
    name = f"{run_id}/outputs/main/output/historical_ec.csv"
    clients.runs().upload_blob(name, b"tampered\n", overwrite=True)
    checked = dms("results", run_id, "--download", tmp_path / "out", stack=stack)
    assert checked.exit_code == 1, checked
    assert "main/output/historical_ec.csv: 9 bytes, the manifest says" in checked.stderr
    assert not (tmp_path / "out" / "main" / "output" / "historical_ec.csv").exists(), "a mismatch is not kept"


# ---- profiles and application packages -------------------------------------------------------

def test_profiles_push_checks_uploads_once_and_lists(stack, clients, tmp_path):
    good = tmp_path / "clitest.yaml"
    good.write_text("description: a profile pushed by the CLI test\ncommand: echo from-profile\n")
    first = dms("profiles", "push", good, stack=stack)
    assert first.exit_code == 0 and first.stdout.strip() == "clitest: uploaded", first
    assert dms("profiles", "push", good, stack=stack).stdout.strip() == "clitest: unchanged"
    listed = dms("profiles", "list", stack=stack)
    assert listed.exit_code == 0 and re.search(r"clitest\s+\S+\s+a profile pushed by the CLI test", listed.stdout), listed
    assert "dsm2" in listed.stdout

    bad = tmp_path / "broken.yaml"
    bad.write_text("run_id: fixed\ncommand: [oops\n")
    refused = dms("profiles", "push", bad, stack=stack)
    assert refused.exit_code == 2 and "profile: profile 'broken'" in refused.stderr, refused
    assert not blob_exists(clients, "profiles", "broken.yaml")


def test_apps_publish_puts_the_package_in_the_local_batch_store(stack, batch_client, tmp_path):
    package = tmp_path / "tool.zip"
    with zipfile.ZipFile(package, "w") as z:
        z.writestr("bin/tool", "#!/bin/sh\necho tool\n")
    outcome = dms("apps", "publish", "clitool", "1.0", package, "--default", stack=stack)
    assert outcome.exit_code == 0, outcome
    assert "published clitool 1.0 as the default version to the local Batch service (versions: 1.0)" in outcome.stdout
    assert batch_client.get_application("clitool").versions == ["1.0"]

    not_zip = tmp_path / "tool.tar"
    not_zip.write_bytes(b"not a zip")
    refused = dms("apps", "publish", "clitool", "1.1", not_zip, stack=stack)
    assert refused.exit_code == 2 and "is not a .zip file" in refused.stderr


# ---- the streamed zip upload: bounded memory, a zip intake can read --------------------------

def test_streamed_upload_of_a_folder_holds_a_few_blocks_in_memory(clients, tmp_path):
    import os
    import tracemalloc

    from dmsbatch.blockupload import upload_stream
    from dmsbatch.zipstream import iter_zip, study_files
    from dmscontract.zip_inspect import ZipLimits, inspect_zip

    folder = tmp_path / "big"
    (folder / "tidefile").mkdir(parents=True)
    for i in range(3):
        (folder / "tidefile" / f"part{i}.h5").write_bytes(os.urandom(16 * 1024 * 1024))  # stored, not deflated
    lines = (f"{day:05d},RSAC{day % 97:03d},{1.25 + (day * 7919 % 1000) / 1000:.3f},{1000 + day * 31 % 5000}\n"
             for day in range(700_000))
    (folder / "output.txt").write_bytes("".join(lines).encode())  # ~18 MiB of model-like text: deflated
    (folder / "blanks.dat").write_bytes(bytes(8 * 1024 * 1024))  # would pass intake's 200:1 check deflated: stored
    (folder / "run.yaml").write_text("name: big\ncommand: echo ok\n")
    files = study_files(folder)
    total = sum(f.size for f in files)
    container = clients.blob_service.get_container_client("clitest-uploads")  # not the inbox: intake would take it
    if not container.exists():
        container.create_container()
    blob = container.get_blob_client(f"{unique_run_id()}/big.zip")
    block = 4 * 1024 * 1024
    tracemalloc.start()
    try:
        result = upload_stream(blob, iter_zip(files), block_size=block, concurrency=2, metadata={"dmsbatch_test": "1"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert total > 60 * 1024 * 1024
        assert peak < 6 * block, f"peak {peak / 2**20:.1f} MiB for a {total / 2**20:.0f} MiB folder"
        data = blob.download_blob().readall()
        assert base64.b64encode(hashlib.md5(data).digest()).decode() == result.content_md5
        assert bytes(blob.get_blob_properties().content_settings.content_md5) == hashlib.md5(data).digest()
        archive = zipfile.ZipFile(io.BytesIO(data))
        assert archive.testzip() is None
        assert archive.getinfo("tidefile/part0.h5").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("output.txt").compress_type == zipfile.ZIP_DEFLATED
        level1 = zlib.compressobj(1, zlib.DEFLATED, -15)
        text = (folder / "output.txt").read_bytes()
        expected = len(level1.compress(text) + level1.flush())
        assert abs(archive.getinfo("output.txt").compress_size - expected) < expected * 0.01, "deflated at level 1"
        assert archive.getinfo("blanks.dat").compress_type == zipfile.ZIP_STORED
        assert archive.read("tidefile/part2.h5") == (folder / "tidefile" / "part2.h5").read_bytes()
        inspection = inspect_zip(io.BytesIO(data), zip_name="big.zip", limits=ZipLimits())
        assert inspection.problems == [] and inspection.document == {"name": "big", "command": "echo ok"}
    finally:
        blob.delete_blob()
