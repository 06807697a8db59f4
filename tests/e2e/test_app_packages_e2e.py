"""Application packages on PATH, end to end on the local stack: a run calls its package's executables by bare name.

The packages are published to the local Batch service's store, as a Batch
account's packages are uploaded; the run's own pool installs them on its node,
the node agent sets ``AZ_BATCH_APP_PACKAGE_*`` as Batch does on Linux, and the
planned command line puts the directories on PATH. Nothing in the run's command
names a package directory.
"""
from __future__ import annotations

import io
import stat
import zipfile

from local.batch import app_packages
from tests.support.runs import post_spec, unique_run_id, run_story, wait_for_final_status

HYDRO = """#!/bin/sh
# a stand-in for a model executable at the package's root
echo "hydro-run $HYDRO_VERSION read $1 ($(wc -l < "$1") lines); note: $NOTE"
"""
QUAL = """#!/bin/sh
# a stand-in in the package's bin/ folder, from the application's default version
echo "qual-run from $(dirname "$0")"
"""


def package(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, text.replace("$HYDRO_VERSION", "2.0.1"))
    return buffer.getvalue()


def test_a_run_calls_its_application_packages_executables_by_bare_name(stack, clients, store):
    data_dir = stack.config.data_dir / "batch"
    # stored as "Hydro-Tools": the local service, like Batch, names the variable after the account's spelling
    # (AZ_BATCH_APP_PACKAGE_Hydro_Tools_2_0_1), while the spec writes the id in lower case
    app_packages.publish(data_dir, "Hydro-Tools", "2.0.1", package({"hydro-run": HYDRO}))
    app_packages.publish(data_dir, "qual-tools", "3", package({"bin/qual-run": QUAL}), default=True)
    run_id = unique_run_id("apppkg")
    clients.runs().upload_blob(f"{run_id}/inputs/study.inp", b"CHANNELS 3\nNODES 4\n")
    note = "it's \"wet\"; & | $(id) `id` %PATH%"
    post_spec(clients, {
        "run_id": run_id,
        "command": "mkdir -p output\nhydro-run study.inp > output/hydro.txt\nqual-run > output/qual.txt",
        "inputs": ["study.inp"],
        "environment": {"NOTE": note},
        "outputs": ["output/*"],
        "pool": {"application_packages": [{"id": "hydro-tools", "version": "2.0.1"}, {"id": "qual-tools"}]},
        "constraints": {"max_wall_clock": "5m"},
    })

    status = wait_for_final_status(clients, run_id, timeout=90)
    assert status["state"] == "succeeded", run_story(store, run_id, status)
    assert status["pool_id"] == f"pool-{run_id}", "packages are installed on a pool of the run's own"
    outputs = {o["path"]: o["blob"] for o in store.read(run_id, "manifest.json").document["outputs"]}
    assert set(outputs) == {"hydro.txt", "qual.txt"}
    hydro = clients.runs().download_blob(outputs["hydro.txt"]).readall().decode()
    assert hydro == f"hydro-run 2.0.1 read study.inp (2 lines); note: {note}\n"
    qual = clients.runs().download_blob(outputs["qual.txt"]).readall().decode()
    assert qual.startswith("qual-run from ") and qual.rstrip().endswith("/applications/qual-tools#3/bin"), qual
