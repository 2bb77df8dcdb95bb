"""The duplicates review page (duplicates.html) in a real headless Chromium, as tests/serving/test_page.py
drives it (Debian's `chromium` through Playwright's `executable_path`): tick keep / move per image and
per group, the last copy of a group cannot be ticked away, export decisions.json, and
`find_duplicates --apply decisions.json --move-to DIR` moves exactly what was ticked; a file changed
since the report makes --apply refuse the whole file.

Skipped when no chromium is installed, unless PPSHITU_REQUIRE_BROWSER is set (.ci/run sets it)."""
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
from tests.browser_helpers import browser, expect, sync_api  # noqa: E402,F401  (browser: a fixture)


def _member(folder, name, colour, size, keep=False, action="keep"):
    from ppshitu.library.duplicates import file_fingerprint, image_info

    path = folder / name
    Image.new("RGB", size, colour).save(path, "JPEG", quality=90)
    return {"path": name, "file": str(path), **file_fingerprint(str(path)), **image_info(str(path)), "keep": keep,
            "action": action, "same_bytes_as_keep": False, "cosine_to_keep": 0.99,
            "evidence_to_keep": None if keep else {"inliers": 80, "aligned": "features", "ecc": 0.0, "overlap": 0.95,
                                                   "local": 0.0}, "verdict_to_keep": None if keep else "duplicate"}


@pytest.fixture
def reviewed(tmp_path):
    """A report of two groups: keeper.jpg with two copies (duplicates), and keeper.jpg with a similar shot."""
    from ppshitu.library.report import write_report

    folder = tmp_path / "photos"
    folder.mkdir()
    keeper = _member(folder, "keeper.jpg", (200, 40, 40), (120, 90), keep=True)
    copy1 = _member(folder, "copy1.jpg", (200, 42, 40), (60, 45), action="move")
    copy2 = _member(folder, "copy2.jpg", (198, 40, 40), (80, 60), action="move")
    other = _member(folder, "other.jpg", (40, 200, 40), (120, 90))
    report = {"items": 4, "k": 10, "keep_rule": "best", "linkage": "complete", "candidate_floor": 0.8,
              "rule": {"text": "a rule", "source": "test"}, "calibration": None, "report_id": "abc",
              "folder": str(folder), "exact_groups": 0, "near_groups": 1, "duplicates": 2,
              "groups": [{"id": 1, "tier": "duplicate", "kind": "near", "keep": "keeper.jpg",
                          "members": [keeper, copy1, copy2]},
                         {"id": 2, "tier": "similar", "kind": "similar", "keep": "keeper.jpg",
                          "members": [{**keeper, "keep": False, "action": "keep"}, other]}]}
    out = tmp_path / "report"
    _, html_path = write_report(report, out)
    return folder, Path(html_path)


def _choice(page, group, path, action):
    return page.locator(f"section.group[data-group='{group}'] figure.member", has_text=path).locator(
        f"input.choice[value='{action}']")


def test_keep_move_round_trip_through_the_page(browser, reviewed, tmp_path):
    import tools.find_duplicates as tool

    folder, html_path = reviewed
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(html_path.as_uri())
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("section.group")).to_have_count(2)
    expect(page.locator("img")).to_have_count(5)                                  # every thumbnail
    assert _choice(page, 1, "copy1.jpg", "move").is_checked()                     # duplicates start as 'move'
    assert _choice(page, 2, "other.jpg", "keep").is_checked()                     # similar ones as 'keep'
    expect(page.locator("section.group[data-group='1'] .badge")).to_have_text("suggested keeper")

    page.click("button.keep-all[data-group='1']")                                 # per group: keep all
    assert _choice(page, 1, "copy1.jpg", "keep").is_checked() and _choice(page, 1, "copy2.jpg", "keep").is_checked()
    _choice(page, 1, "copy2.jpg", "move").check()                                 # per image
    _choice(page, 2, "other.jpg", "move").check()
    _choice(page, 2, "keeper.jpg", "move").click()                                # group 2's last copy: refused
    expect(page.locator("#status")).to_have_attribute("data-state", "refused")
    assert _choice(page, 2, "keeper.jpg", "keep").is_checked() and _choice(page, 1, "keeper.jpg", "keep").is_checked()

    with page.expect_download() as download:
        page.click("#export")
    decisions = tmp_path / "decisions.json"
    download.value.save_as(decisions)
    expect(page.locator("#status")).to_have_attribute("data-state", "exported")
    shot = tmp_path / "duplicates_page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("PPSHITU_SCREENSHOT_DIR"):
        Path(os.environ["PPSHITU_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(os.environ["PPSHITU_SCREENSHOT_DIR"]) / shot.name)
    context.close()
    assert not problems, problems

    data = json.loads(decisions.read_text())
    actions = {m["path"]: m["action"] for g in data["groups"] for m in g["members"]}
    assert actions == {"keeper.jpg": "keep", "copy1.jpg": "keep", "copy2.jpg": "move", "other.jpg": "move"}
    assert all({"size", "mtime_ns", "sha256"} <= set(m) for g in data["groups"] for m in g["members"])

    moved = tmp_path / "moved"
    out = tool.main(["--apply", str(decisions), "--move-to", str(moved)])
    assert sorted(os.path.basename(m["to"]) for m in out["moves"]) == ["copy2.jpg", "other.jpg"]
    assert sorted(p.name for p in folder.iterdir()) == ["copy1.jpg", "keeper.jpg"]      # nothing else touched
    assert sorted(p.name for p in moved.iterdir()) == ["copy2.jpg", "other.jpg"]        # moved, not deleted


def test_apply_refuses_decisions_whose_files_changed(browser, reviewed, tmp_path):
    import tools.find_duplicates as tool
    from ppshitu.library.duplicates import DecisionsError

    folder, html_path = reviewed
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(html_path.as_uri())
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    with page.expect_download() as download:                                     # the page's defaults
        page.click("#export")
    decisions = tmp_path / "decisions.json"
    download.value.save_as(decisions)
    context.close()
    Image.new("RGB", (120, 90), (0, 0, 255)).save(folder / "keeper.jpg", "JPEG")   # edited after the report
    with pytest.raises(DecisionsError, match="changed since the report"):
        tool.main(["--apply", str(decisions), "--move-to", str(tmp_path / "moved")])
    assert sorted(p.name for p in folder.iterdir()) == ["copy1.jpg", "copy2.jpg", "keeper.jpg", "other.jpg"]
    assert not (tmp_path / "moved").exists()
