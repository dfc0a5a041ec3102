"""Debian's Chromium, driven by Playwright (which cannot download a browser of its own here).

`scripts/install-services` installs the package; the dashboard's tests and its screenshot script
launch it headless with the flags that keep it off the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class ChromiumUnavailable(RuntimeError):
    """Chromium is not installed."""


def chromium_path() -> Path:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        raise ChromiumUnavailable(
            "Chromium is not installed; `bash scripts/install-services` installs Debian's chromium package"
        )
    return Path(found)


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(chromium_path()), args=CHROMIUM_ARGS, headless=True)
