"""Helpers shared by tests/unit/test_zip_intake.py and tests/e2e/test_zip_intake_e2e.py."""
from __future__ import annotations

import io
import stat
import zipfile


HYDRO = """#!/bin/sh
# stand-in for DSM2 hydro: reads its input, writes a tidefile-like output
set -e
mkdir -p output
echo "hydro ran $(wc -l < "$1") input lines" > output/hydro.out
echo "hydro done"
"""
QUAL = """#!/bin/sh
# stand-in for DSM2 qual: needs hydro's output
set -e
test -s output/hydro.out
echo "qual read $(cat "$1") after: $(cat output/hydro.out)" > output/qual.out
echo "qual done"
"""


# ---- building zips ---------------------------------------------------------------------------


def build_zip(entries: list[tuple], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """``(name, data)`` or ``(name, data, unix_mode)`` entries, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for entry in entries:
            name, data = entry[0], entry[1]
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = (entry[2] if len(entry) > 2 else stat.S_IFREG | 0o644) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def study_zip(spec: str, extra: list[tuple] = ()) -> bytes:
    return build_zip([
        ("run.yaml", spec),
        ("study/", b"", stat.S_IFDIR | 0o755),
        ("study/hydro", HYDRO, stat.S_IFREG | 0o755),
        ("study/qual", QUAL, stat.S_IFREG | 0o755),
        ("study/hydro.inp", "CHANNELS 3\nNODES 4\n"),
        ("study/qual.inp", "EC\n"),
        *extra,
    ])
