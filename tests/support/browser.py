"""Headless Chromium for the tests that look at a page as a browser shows it (tests/e2e/test_report_browser_e2e.py).

Debian's ``chromium`` (``./dev setup`` installs it) runs headless on a local file, offline: a
fresh profile each time, no first-run, sync, component updates or background requests, so a
page that tried to fetch anything would simply lack it. ``dump_dom`` gives the DOM after the
page's scripts ran; ``screenshot`` a PNG; ``is_blank`` says whether a PNG shows nothing.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_S = 90


class BrowserMissing(RuntimeError):
    """No chromium on this machine."""


def chromium() -> Path:
    """Debian's chromium, or a ``chromium`` on PATH; ``BrowserMissing`` names how to install it."""
    if DEBIAN_CHROMIUM.is_file():
        return DEBIAN_CHROMIUM
    found = shutil.which("chromium")
    if found:
        return Path(found)
    raise BrowserMissing("chromium is not installed: `./dev setup` installs it (Debian package `chromium`)")


def _run(page: Path, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [str(chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args,
                   page.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done


def dump_dom(page: Path, timeout: float = TIMEOUT_S) -> str:
    """The page's DOM, serialised, after its scripts ran (``--dump-dom``)."""
    return _run(page, "--dump-dom", timeout=timeout).stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400, timeout: float = TIMEOUT_S) -> Path:
    """A ``width`` x ``height`` PNG of the page's top (``--screenshot``)."""
    _run(page, f"--screenshot={png.resolve()}", f"--window-size={width},{height}", timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {png}")
    return png


def is_blank(png: Path, share: float = 0.995) -> bool:
    """True when nearly all of the image (``share`` of its pixels) is one colour: a page that drew nothing."""
    import numpy as np
    from matplotlib.image import imread

    pixels = imread(png)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    flat = np.round(pixels[:, :, :3] * 255 if pixels.dtype.kind == "f" else pixels[:, :, :3]).astype(np.uint8)
    if flat.shape[-1] == 1:
        flat = np.repeat(flat, 3, axis=-1)
    packed = (flat[..., 0].astype(np.uint32) << 16 | flat[..., 1].astype(np.uint32) << 8 | flat[..., 2]).ravel()
    _, counts = np.unique(packed, return_counts=True)
    return counts.max() >= share * packed.size
