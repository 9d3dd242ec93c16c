"""Finding a Chromium for the browser tests and the screenshot script."""
from __future__ import annotations

import os
import shutil


def chromium_path(playwright) -> str | None:
    """CAV_CHROMIUM, playwright's own browser, or the distribution's Chromium, whichever exists."""
    for candidate in (os.environ.get("CAV_CHROMIUM"), playwright.chromium.executable_path,
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None
