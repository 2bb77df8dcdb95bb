"""Headless Chromium for the page tests (Debian's chromium driven by Playwright; never `playwright install`).
Imported at the top of a test module: without chromium the module is skipped, or fails where
PPSHITU_REQUIRE_BROWSER is set (CI)."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_service import find_chromium  # noqa: E402

CHROMIUM = find_chromium()
if CHROMIUM is None:
    if os.environ.get("PPSHITU_REQUIRE_BROWSER"):
        raise RuntimeError("PPSHITU_REQUIRE_BROWSER is set but no chromium is installed "
                           "(apt-get install chromium, or make install as root)")
    pytest.skip("chromium is not installed (make install as root installs it)", allow_module_level=True)
from playwright import sync_api  # noqa: E402

expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()
