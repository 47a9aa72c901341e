"""The HTML report of a run folder and the plotting helpers it shows."""

import base64
import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from vi_toolkit import plots
from vi_toolkit.agreement import flatten
from vi_toolkit.errors import RunFolderError
from vi_toolkit.report import build_report
from vi_toolkit.run_folder import RunFolder

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path):
    run = RunFolder.create(tmp_path / "run", meta={"command": "vi-toolkit run demo", "seed": 7})
    exp = run.sub("demo_exp")
    exp.write_json(
        "experiment.json",
        {
            "name": "demo_exp",
            "description": "A <tiny> demo experiment",
            "config": {"steps": 50, "guide": "normal"},
            "seconds": 1.25,
            "summary": "ELBO close to log evidence",
        },
    )
    exp.save_table("metrics", pd.DataFrame({"method": ["vi", "nuts"], "elbo": [-123.456789, 0.5]}))
    steps = np.arange(200)
    exp.save_figure("losses", plots.loss_traces({"vi": 1e4 * np.exp(-steps / 5) + 10 + np.sin(steps)}))
    exp.write_json("results/vi/metrics.json", {"method": "vi", "seconds": 0.5})
    return run.path


def test_report_contains_experiment_table_and_embedded_figure(run_dir):
    path = build_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "vi-toolkit report" in page
    assert "demo_exp" in page
    assert "A &lt;tiny&gt; demo experiment" in page  # text is escaped
    assert "<td>-123.5</td>" in page  # float format %.4g
    assert "vi-toolkit run demo" in page
    match = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    png = base64.b64decode(match.group(1))
    assert png.startswith(PNG_SIGNATURE)
    assert png == (run_dir / "demo_exp" / "figures" / "losses.png").read_bytes()
    assert "losses.png" in page
    assert "<b>vi</b>: vi, 0.5 s" in page
    assert not list(run_dir.glob(".report.html.*"))  # written atomically, no temp file left


def test_report_of_single_experiment_run(tmp_path):
    run = RunFolder.create(tmp_path / "single")
    run.write_json("experiment.json", {"name": "solo", "description": "", "config": {}, "seconds": 0.1})
    page = build_report(run.path).read_text(encoding="utf-8")
    assert '<h2 id="solo">solo' in page and 'href="#solo"' in page


def test_report_rejects_non_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="run.json"):
        build_report(tmp_path)
    with pytest.raises(RunFolderError, match="not a folder"):
        build_report(tmp_path / "missing")


def test_flatten_draws_labels_and_shapes():
    draws = {"mu": np.zeros(5), "beta": np.arange(10.0).reshape(5, 2), "w": np.arange(30.0).reshape(5, 2, 3)}
    flat = flatten(draws)
    assert list(flat) == ["mu", "beta[0]", "beta[1]"] + [f"w[{i},{j}]" for i in range(2) for j in range(3)]
    assert all(v.shape == (5,) for v in flat.values())
    np.testing.assert_array_equal(flat["beta[1]"], draws["beta"][:, 1])
    np.testing.assert_array_equal(flat["w[1,2]"], draws["w"][:, 1, 2])


def test_marginals_one_panel_per_parameter_with_exact_lines():
    rng = np.random.default_rng(0)
    draws = {
        "vi": flatten({"beta": rng.normal(size=(300, 3))}),
        "nuts": flatten({"beta": rng.normal(size=(300, 3))}),
    }
    exact = {"beta[0]": (0.0, 1.0), "beta[2]": (0.0, 1.0)}
    fig = plots.marginals(draws, exact=exact)
    try:
        assert len(fig.axes) == 3
        assert [ax.get_title() for ax in fig.axes] == ["beta[0]", "beta[1]", "beta[2]"]
        exact_lines = [ax for ax in fig.axes if any(line.get_label() == "exact" for line in ax.get_lines())]
        assert len(exact_lines) == 2
        assert fig.legends  # one legend for the figure
    finally:
        plt.close(fig)


def test_marginals_caps_panels():
    draws = {"vi": flatten({"z": np.random.default_rng(1).normal(size=(50, 20))})}
    fig = plots.marginals(draws, max_panels=5)
    try:
        assert len(fig.axes) == 5
    finally:
        plt.close(fig)


def test_loss_traces_clips_early_losses():
    steps = np.arange(500)
    fig = plots.loss_traces({"a": 1e6 * np.exp(-steps / 10) + 5.0, "b": np.full(500, 7.0)})
    try:
        (ax,) = fig.axes
        lo, hi = ax.get_ylim()
        assert hi < 100  # not flattened by the early huge losses
        assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss (negative ELBO)"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    finally:
        plt.close(fig)


def test_run_json_facts_shown(run_dir):
    page = build_report(run_dir).read_text(encoding="utf-8")
    created = json.loads((run_dir / "run.json").read_text())["created"]
    assert f"<td>{created}</td>" in page


def test_numbers_show_their_differences():
    from vi_toolkit.report import _format_floats

    frame = pd.DataFrame({"elbo": [-135.3101, -135.2799], "iwae": [-135.2801, -135.2799], "tiny": [-7.6e-06, 0.5],
                          "seconds": [1.234567, 12.5]})
    shown = _format_floats(frame)
    assert shown["elbo"][0] != shown["elbo"][1]
    assert shown["elbo"][1] != shown["iwae"][0]  # a sandwich of bounds 0.0002 apart stays visible across columns
    assert shown["tiny"][0] == "-7.6e-06" and "-0.000" not in shown["tiny"]
    assert shown["seconds"] == ["1.235", "12.5"]


def test_report_reads_top_down_with_contents_and_captions(run_dir):
    exp = RunFolder(run_dir / "demo_exp")
    rng = np.random.default_rng(0)
    exp.save_figure("marginals", plots.marginals({"vi": {"mu": rng.normal(size=100)}}))
    exp.write_json("figures/captions.json", {"marginals": "Densities per method."})
    page = build_report(run_dir).read_text(encoding="utf-8")
    ids = re.findall(r'<h[23] id="([^"]+)"', page)
    links = set(re.findall(r'<nav class="toc".*?</nav>', page, re.S)[0].split('href="#')[1:])
    links = {link.split('"')[0] for link in links}
    assert set(ids) <= links and links <= set(re.findall(r' id="([^"]+)"', page))
    order = [page.index(f'id="demo-exp-{key}"') for key in ("summary", "results", "figures", "diagnostics", "config")]
    assert order == sorted(order)  # summary and results first, loss curves and config last
    assert "<b>Marginals.</b> Densities per method." in page and "<b>Losses.</b>" in page
    assert page.index("marginals.png") < page.index("losses.png")
    assert '<div class="scroll"><table class="data">' in page
    assert str(run_dir.parent) not in page  # relative paths only


def test_method_colours_are_one_mapping():
    assert plots.method_colour("NUTS") == plots.method_colour("NUTS")
    assert plots.method_colour("VI normal") == plots.method_colour("VI normal elbo") != plots.method_colour("NUTS")
    assert len({plots.method_colour(m) for m in ("NUTS", "VI normal", "VI mvn", "VI iaf", "VI delta", "CAVI")}) == 6
    fig = plots.loss_traces({"NUTS-like": np.ones(10), "VI mvn": np.ones(10)})
    try:
        colours = [line.get_color() for line in fig.axes[0].get_lines()[1::2]]
        assert colours == [plots.method_colour("NUTS-like"), plots.method_colour("VI mvn")]
    finally:
        plt.close(fig)


def test_loss_axis_names_the_objective():
    steps = np.arange(50.0)
    fig = plots.loss_traces({"VI delta": steps, "VI normal": steps},
                            objectives={"VI delta": plots.objective_loss_name("elbo", "delta"),
                                        "VI normal": plots.objective_loss_name("elbo", "normal")})
    try:
        (ax,) = fig.axes
        assert "negative ELBO" not in ax.get_ylabel()
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["VI delta: negative log joint (MAP)", "VI normal: negative ELBO"]
    finally:
        plt.close(fig)
    assert plots.objective_loss_name("renyi", options={"alpha": "0.5"}).startswith("negative Renyi")
    assert "forward KL" in plots.objective_loss_name("forward-kl")


def test_marginals_label_axes_and_say_which_subset():
    draws = {"vi": flatten({"z": np.random.default_rng(1).normal(size=(50, 20))})}
    fig = plots.marginals(draws, max_panels=5)
    try:
        assert all(ax.get_xlabel() and ax.get_ylabel() == "density" for ax in fig.axes)
        assert any("first 5 of 20 parameters" in t.get_text() for t in fig.texts)
    finally:
        plt.close(fig)
