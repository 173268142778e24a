"""A real headless Chromium for the page tests, driven by Playwright.

Playwright's own browser download is not used: the tests drive an installed Chromium, found
in order at CDS_TEST_CHROMIUM, /usr/bin/chromium (Debian's package, which
`scripts/install-test-tools` installs), or chromium / chromium-browser / google-chrome on the
PATH. The browser never talks to anything but the test's own server: background networking,
component updates and sync are off.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGUMENTS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root (CI)
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]


def chromium_executable() -> str | None:
    configured = os.environ.get("CDS_TEST_CHROMIUM")
    if configured:
        return configured
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None
