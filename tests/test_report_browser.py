"""The report pages in a real headless browser: a sweep report (every figure family, the fits, the
edge-of-stability figure) and a single-run report, served over HTTP as a user would serve them and
opened in Chromium driven by Playwright. Every figure must load (scrolled into view, since the
images load lazily), every PDF link must answer, and the page must log no console error, no page
error and no failed request.

Needs Chromium from the system (Debian: ``apt-get install chromium``; never a downloaded browser)
and the ``playwright`` package. Without them the test is skipped saying what is missing, unless
``EOSLAB_REQUIRE_BROWSER=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pytest

from ._report_helpers import make_collected
from ._train_helpers import small_config

#: Where a CI run insists on the browser test running.
REQUIRED = os.environ.get("EOSLAB_REQUIRE_BROWSER") == "1"

#: Load every image (scrolling each into view) and report its natural size.
LOAD_IMAGES = """async () => {
  const out = [];
  for (const img of Array.from(document.images)) {
    img.scrollIntoView();
    if (!img.complete) {
      await new Promise((done) => {
        img.addEventListener("load", done, { once: true });
        img.addEventListener("error", done, { once: true });
      });
    }
    out.push({ src: img.getAttribute("src"), width: img.naturalWidth, height: img.naturalHeight });
  }
  return out;
}"""


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (EOSLAB_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _chromium() -> str:
    for candidate in (os.environ.get("EOSLAB_CHROMIUM"), "chromium", "chromium-browser"):
        path = candidate and shutil.which(candidate)
        if path:
            return path
    _unavailable("no Chromium on this machine (Debian: apt-get install chromium); the browser test needs one")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright; it uses the system Chromium)")
    executable = _chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def serve():
    """Serve a folder over HTTP on localhost; yields ``url(folder) -> base URL``, records requests."""
    servers = []

    def url(folder) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield url
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _open(browser, url: str):
    """Open ``url``; returns (page, problems) where problems collects console errors, page errors,
    failed requests and HTTP errors.
    """
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


def _check_page(browser, url: str, figures: int) -> str:
    page, problems = _open(browser, url)
    images = page.evaluate(LOAD_IMAGES)
    assert len(images) == figures
    broken = [i["src"] for i in images if not (i["width"] > 100 and i["height"] > 100)]
    assert not broken, f"figures that did not load: {broken}"
    pdfs = page.eval_on_selector_all("a[href$='.pdf']", "links => links.map(a => a.href)")
    assert pdfs
    for pdf in sorted(set(pdfs)):
        response = page.request.get(pdf)
        assert response.ok and response.body()[:5] == b"%PDF-", pdf
    page.wait_for_load_state("networkidle")
    assert not problems, problems
    text = page.inner_text("body")
    page.close()
    return "\n".join(line for line in text.splitlines() if line.strip())


def test_the_sweep_report_in_chromium(browser, serve, tmp_path):
    from eoslab.report import write_report

    table = pa.Table.from_pandas(make_collected(), preserve_index=False)
    result = write_report(table, tmp_path / "report", n_boot=20, headline="report on 16 of 17 runs (test)")
    pngs = sorted((tmp_path / "report" / "figures").glob("*.png"))
    assert len(pngs) == len(result.figures) == 20
    url = serve(tmp_path / "report") + "index.html"
    text = _check_page(browser, url, len(pngs))
    assert text.startswith("eoslab report\nreport on 16 of 17 runs (test)")
    assert "Section 5 checks" in text and "0.49" in text
    # The edge of stability: the group with the GD run opens with its figure and
    # the GD run's own, each loaded, captioned from the data, its PDF a click away.
    page, problems = _open(browser, url)
    figures = page.eval_on_selector_all(
        "figure",
        "all => all.map(f => ({id: f.id, caption: f.querySelector('figcaption').innerText, "
        "pdf: f.querySelector('a').href}))",
    )
    cifar = [f for f in figures if f["id"].endswith(("cifar10_ce", "gd-run"))]
    assert [f["id"] for f in cifar[:3]] == [
        "gd_vs_euler__cifar10_ce",
        "gd_run__cifar10_ce__gd-run",
        "fig1_sharpness__cifar10_ce",
    ]
    band = "first reaches 2/η = 200 at step 150; from there on 88 % of 51 measured steps are within 10 % of 2/η"
    assert all(band in f["caption"] for f in cifar[:2]) and all(f["pdf"].endswith(".pdf") for f in cifar[:2])
    for stem in ("gd_vs_euler__cifar10_ce", "gd_run__cifar10_ce__gd-run"):
        image = page.locator(f"figure#{stem} img")
        image.scroll_into_view_if_needed()
        size = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert size[0] and size[1] > 800 and size[2] > 300, (stem, size)  # two panels side by side
    page.close()
    assert not problems, problems


def test_a_run_report_in_chromium(browser, serve, tmp_path, one_thread):
    from eoslab.report.run import write_run_report
    from eoslab.runs import analyze_run, train

    run = tmp_path / "run"
    train(small_config(train={"max_steps": 30, "snapshot_every": 10}), run, progress=False)
    analyze_run(run, progress=False)
    result = write_run_report(run, tmp_path / "report")
    text = _check_page(browser, serve(tmp_path / "report") + "index.html", len(result.figures))
    assert "eoslab run report" in text and "λ¹(H)" in text


def test_a_gradient_descent_runs_report_in_chromium(browser, serve, tmp_path, one_thread):
    """A single GD run's report opens with its edge-of-stability figure, captioned from the data."""
    from eoslab.report.run import write_run_report
    from eoslab.runs import train

    run = tmp_path / "gd"
    solver = {"method": "gd", "eta": 0.5, "measure_sharpness_every": 1}
    train(small_config(solver=solver, train={"max_steps": 30, "snapshot_every": 10}), run, progress=False)
    result = write_run_report(run, tmp_path / "report")
    text = _check_page(browser, serve(tmp_path / "report") + "index.html", len(result.figures))
    assert "2/η" in text and "measured steps" in text and "edge" in text
    assert result.figures[0].family == "trajectory" and "2/η dotted" in result.figures[0].caption
