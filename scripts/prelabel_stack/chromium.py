"""Debian's Chromium for the browser tests and the dataset browser benchmark, installed
with apt-get (as root) when missing, as the stack installs nginx: ``make test`` and
``make bench`` on a fresh machine get it. Playwright drives it through
``executable_path``; it never downloads a browser of its own."""

from __future__ import annotations

import shutil

from prelabel_stack.config import REPO_ROOT
from prelabel_stack.processes import apt_install

CANDIDATES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The Chromium binary on this machine, if any."""
    for name in CANDIDATES:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
        if found:
            return found
    return None


def ensure_chromium() -> str:
    """The Chromium binary, installing Debian's ``chromium`` package first if needed."""
    found = find_chromium()
    if found is None:
        log = REPO_ROOT / ".stack" / "logs" / "chromium-install.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        apt_install("chromium", log)
        found = find_chromium()
        if found is None:
            raise RuntimeError(f"apt-get installed chromium but no binary is on PATH (see {log})")
    return found
