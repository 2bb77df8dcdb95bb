"""The web page's text search box in a real headless Chromium (skipped without chromium, unless
PPSHITU_REQUIRE_BROWSER is set): a tiny imported text-image model's gallery, a Chinese and an English query, a
long query's note, and an empty box refused on the page without a request."""
import pytest

from textsearch_helpers import cli, colour_images, import_args

from tests.browser_helpers import browser, expect  # noqa: F401  (browser: a fixture)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    import tools.import_model as import_tool
    import tools.index_folder as index_tool
    from ppshitu.config import load_config
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.serving import Service, Settings, serve_in_thread

    tmp = tmp_path_factory.mktemp("textpage")
    colour_images(str(tmp / "photos"), per_colour=2)
    argv = import_args(str(tmp), "wordpiece", length=10)
    import_tool.main(argv)
    index_tool.main(cli(str(tmp / "model"), str(tmp / "index"), str(tmp)) + ["--dir", str(tmp / "photos")])
    args = cli(str(tmp / "model"), str(tmp / "index"), str(tmp), **{"Global.det_inference_model_dir": ""})
    cfg = load_config(args[1], args[3::2], INFER_SCHEMA)
    service = Service.from_config(cfg, Settings(host="127.0.0.1", port=0, workers=1)).start()
    address, stop = serve_in_thread(service)
    yield address
    stop()
    service.stop()


def _search(page, text):
    page.evaluate("document.querySelector('#search-results').dataset.state = 'stale'")
    page.fill("#search-text", text)
    page.click("#search-text-go")
    expect(page.locator("#search-results")).to_have_attribute("data-state", "done", timeout=30000)
    return page.locator("#search-results .caption").all_inner_texts()


def test_the_page_searches_by_text(browser, url):  # noqa: F811
    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "1")
    expect(page.locator("#search-text")).to_be_enabled()   # /health: this model's gallery answers text
    captions = _search(page, "蓝色的天空")
    assert len(captions) == 6 and all(c.startswith("blue") for c in captions[:2]), captions   # the gallery, nearest first
    assert _search(page, "a red car")[0].startswith("red")
    expect(page.locator("#search-note")).to_have_text("")
    _search(page, "绿色 " + "的汽车" * 20)
    expect(page.locator("#search-note")).to_contain_text("context length 10")
    page.fill("#search-text", "   ")
    page.click("#search-text-go")
    expect(page.locator("#message")).to_contain_text("type words")
    assert not problems, problems
    page.close()
