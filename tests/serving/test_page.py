"""The web page end to end in a real headless Chromium (Debian's `chromium`, driven by Playwright
through `executable_path`; `make install` installs it when run as root): drop a scene -> its label
appears; add a class through the page -> a query of that class is recognised; delete it -> gone.

Skipped when no chromium is installed, unless PPSHITU_REQUIRE_BROWSER is set (.ci/run sets it).
The screenshot goes to the test's tmp folder, and also to $PPSHITU_SCREENSHOT_DIR when set."""
import os
import shutil
from pathlib import Path

import pytest

import httpx

from serving_helpers import TOKEN, ThreadBoundRec, bench_service, learnable_class, read, recognised_scene

from tests.browser_helpers import browser, expect, sync_api  # noqa: E402,F401  (browser: a fixture)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and page.problems.append(f"HTTP {r.status}: {r.url}"))
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("dialog", lambda d: d.accept())  # confirm() before deleting
    yield page
    context.close()


def _drop(page, selector, path):
    """A real drop event carrying the file, as a user's drag from the desktop makes."""
    data = list(read(path))
    transfer = page.evaluate_handle(
        "(bytes) => { const dt = new DataTransfer();"
        " dt.items.add(new File([new Uint8Array(bytes)], 'photo.jpg', {type: 'image/jpeg'})); return dt; }", data)
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def _stale(page, selector):
    """Mark a result area as old, so that waiting for "done" waits for the next answer."""
    page.evaluate(f"document.querySelector('{selector}').dataset.state = 'stale'")


def _recognise(page, path, drop=False):
    _stale(page, "#predict-results")
    if drop:
        _drop(page, "#predict-drop", path)
    else:
        page.set_input_files("#predict-input", path)
    expect(page.locator("#predict-results")).to_have_attribute("data-state", "done", timeout=30000)
    return page.locator("#predict-results .result-label").all_inner_texts()


def test_page_recognises_adds_a_class_and_deletes_it(server, world, page, tmp_path, new_server):
    if not new_server:
        pytest.skip("the page is the new service's")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        scene, truth = recognised_scene(c, world)
        name, views, query = learnable_class(c, world)
    label = f"page {name}"

    page.goto(server.url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("#gallery-status")).to_contain_text("15 images, 5 classes")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")

    # drop a scene: its object's label appears, with its box drawn and the nearest gallery images
    assert truth in _recognise(page, scene, drop=True)
    expect(page.locator("#predict-results .nearest img").first).to_be_visible()
    assert page.evaluate("document.querySelector('#predict-canvas').width") > 0

    # add a class through the page; a view it was not given is then recognised
    page.fill("#add-label", label)
    page.set_input_files("#add-files", views[:3])
    page.click("#add-submit")
    expect(page.locator("#add-status")).to_contain_text(f"added 3 image(s) to {label}", timeout=30000)
    row = page.locator(f'.label-row[data-label="{label}"]')
    expect(row).to_have_count(1)
    expect(page.locator("#items .tile img")).to_have_count(3)
    assert label in _recognise(page, query)
    _stale(page, "#search-results")
    page.set_input_files("#search-input", query)
    expect(page.locator("#search-results")).to_have_attribute("data-state", "done", timeout=30000)
    expect(page.locator("#search-results .tile .caption").first).to_contain_text(label)
    for _ in range(100):  # (wait_for_function evaluates strings: the page's CSP forbids that, rightly)
        if page.evaluate("[...document.images].every(i => i.complete)"):
            break
        page.wait_for_timeout(100)
    shot = tmp_path / "service_page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("PPSHITU_SCREENSHOT_DIR"):
        Path(os.environ["PPSHITU_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(os.environ["PPSHITU_SCREENSHOT_DIR"]) / shot.name)

    # delete it through the page: gone from the classes, no longer recognised
    row.locator(".delete-label").click()
    expect(row).to_have_count(0)
    expect(page.locator("#gallery-status")).to_contain_text("15 images, 5 classes")
    assert label not in _recognise(page, query)
    assert not page.problems, page.problems


def test_a_read_only_server_says_so_on_the_page(browser, tmp_path, monkeypatch):
    import numpy as np

    from ppshitu.gallery import Gallery
    from ppshitu.serving import Service, Settings, serve_in_thread
    from ppshitu.system import RecognitionSystem

    monkeypatch.delenv("PPSHITU_TOKEN", raising=False)
    g = Gallery.create(tmp_path / "g", 3, index_method="Flat", model_fingerprint="standin")
    g.add(np.eye(3, dtype=np.float32), ["red", "green", "blue"], ["r.png", "g.png", "b.png"])
    service = Service(lambda: RecognitionSystem(ThreadBoundRec(), Gallery.open(tmp_path / "g"), None),
                      tmp_path / "g", Settings(host="127.0.0.1", port=0)).start()
    url, stop = serve_in_thread(service)
    try:
        page = browser.new_page()
        page.goto(url + "/")
        expect(page.locator("body")).to_have_attribute("data-ready", "1")
        expect(page.locator("#read-only-banner")).to_contain_text("started without a token")
        expect(page.locator("#add-submit")).to_be_hidden()
        expect(page.locator(".label-row")).to_have_count(3)
        expect(page.locator(".label-row .delete-label")).to_have_count(0)
        page.close()
    finally:
        stop()
        service.stop()
