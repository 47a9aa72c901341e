"""The report in a real browser: headless Chromium opens a report.html of a small run folder (a figure, a wide
table, two experiments) and checks that every image loads, nothing overflows a 1280-px viewport horizontally
(except inside the tables' own scroll boxes), and every section is reachable from the table of contents.

Chromium is driven by Playwright's Python package with the system's browser (Debian's ``chromium``; ``.ci/run``
installs it); the test skips, saying why, where neither is available."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from vi_toolkit import plots
from vi_toolkit.report import build_report
from vi_toolkit.run_folder import RunFolder

WIDTH = 1280
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium():
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install '.[test]')")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium); .ci/run installs it")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run folder of two experiments: figures (results and losses, with captions), a wide table (40 columns)
    and a long config; its report.html."""
    run = RunFolder.create(tmp_path_factory.mktemp("browser") / "run", meta={"command": "demo", "seed": 0})
    rng = np.random.default_rng(0)
    for name in ("first-experiment", "second experiment"):
        exp = run.sub(name.replace(" ", "-"))
        exp.write_json("experiment.json", {
            "name": name, "description": "A small experiment for the browser test.",
            "config": {"guides": ["normal", "mvn"], "steps": 10, "note": "x" * 300}, "seed": 0, "seconds": 0.5,
            "summary": "A summary with a long unbroken token " + "y" * 250 + ".",
        })
        wide = pd.DataFrame({f"a_rather_long_column_name_{i}": rng.normal(size=3) * 10.0 ** (i % 7 - 3)
                             for i in range(40)})
        wide.insert(0, "method", ["VI normal", "VI mvn", "NUTS"])
        exp.save_table("wide", wide)
        draws = {m: {"mu": rng.normal(size=400), "tau": rng.gamma(2.0, size=400)} for m in ("VI normal", "NUTS")}
        exp.save_figure("marginals", plots.marginals(draws))
        exp.save_figure("losses", plots.loss_traces({"VI normal": 100 * np.exp(-np.arange(300) / 30) + 5},
                                                    objectives={"VI normal": "negative ELBO"}))
        exp.write_json("figures/captions.json", {"marginals": "Marginal densities per method."})
    return build_report(run.path)


def test_report_in_chromium(browser, report):
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    try:
        page.goto(report.as_uri(), wait_until="load", timeout=20_000)

        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")
        assert len(images) == 4
        broken = [i["alt"] for i in images if not (i["complete"] and i["width"] > 0)]
        assert not broken, f"images that did not load: {broken}"

        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
        overflowing = page.evaluate(
            """(width) => Array.from(document.querySelectorAll('body *'))
                 .filter(e => !e.closest('.scroll'))
                 .filter(e => e.getBoundingClientRect().right > width + 0.5)
                 .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)""", WIDTH)
        assert not overflowing, f"elements beyond the {WIDTH}-px viewport: {overflowing[:10]}"
        wide_boxes = page.evaluate(
            """() => Array.from(document.querySelectorAll('.scroll'))
                 .filter(box => box.scrollWidth > box.clientWidth)
                 .map(box => getComputedStyle(box).overflowX)""")
        assert wide_boxes and set(wide_boxes) == {"auto"}  # the wide tables scroll inside their own boxes

        headings = page.eval_on_selector_all("h2, h3", "hs => hs.map(h => h.id)")
        assert headings and all(headings), "every h2/h3 has an id"
        assert len(set(headings)) == len(headings), "ids are unique"
        targets = page.eval_on_selector_all("nav.toc a[href^='#']", "as => as.map(a => a.getAttribute('href'))")
        targets = [t[1:] for t in targets]
        assert set(headings) <= set(targets), f"sections missing from the contents: {set(headings) - set(targets)}"
        existing = set(page.eval_on_selector_all("[id]", "es => es.map(e => e.id)"))
        assert set(targets) <= existing, f"contents links to missing ids: {set(targets) - existing}"
        # the links work: following one scrolls its section to the top
        page.click(f"nav.toc a[href='#{headings[-1]}']")
        top = page.eval_on_selector(f"#{headings[-1]}", "h => h.getBoundingClientRect().top")
        assert abs(top) < 5 or page.evaluate("window.innerHeight + window.scrollY >= document.body.scrollHeight - 2")

        text = page.inner_text("body")
        assert str(report.parent.parent) not in text  # no absolute path on the page
    finally:
        page.close()
