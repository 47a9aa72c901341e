"""The CLI: every bad input prints one line to stderr and exits 2; a run writes a complete run folder."""

import dataclasses
import json
import subprocess
import sys

import pytest

from vi_toolkit.cli import main

BAD_INPUTS = {
    "unknown experiment": ["run", "no-such-experiment"],
    "unknown command": ["frobnicate"],
    "bad value": ["run", "conjugate", "--set", "steps=many"],
    "unknown setting": ["run", "conjugate", "--set", "nonsense=1"],
    "malformed --set": ["run", "conjugate", "--set", "steps"],
    "bad --seed": ["run", "conjugate", "--seed", "x"],
    "unreadable config": ["run", "conjugate", "--config", "/no/such/config.toml"],
    "report of a non-run folder": ["report", "/"],
    "negative seed": ["run", "conjugate", "--seed", "-1"],
    "huge seed": ["run", "conjugate", "--seed", str(2**40)],
    "negative count": ["run", "conjugate", "--set", "n_obs=-1"],
    "zero count": ["run", "conjugate", "--set", "elbo_draws=0"],
    "empty list": ["run", "vi-vs-mcmc", "--set", "guides="],
    "unknown guide": ["run", "vi-vs-mcmc", "--set", "guides=normal,gaussian"],
    "unknown objective": ["run", "vi-vs-mcmc", "--set", "objectives=elbo,kl"],
    "not a finite number": ["run", "conjugate", "--set", "lr=nan"],
    "demo seed": ["demo", "--seed", "1.5"],
}


@pytest.mark.parametrize("argv", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_one_line_and_creates_nothing(argv, capsys, tmp_path):
    out = tmp_path / "run"
    if argv[0] in ("run", "demo"):
        argv = [*argv, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vi-toolkit: error: ")
    assert "Traceback" not in err
    assert not out.exists()  # the whole configuration is checked before the run folder is made


def test_a_closed_pipe_ends_the_listing_quietly():
    out = subprocess.run(f"{sys.executable} -m vi_toolkit.cli list | head -1", shell=True, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.count("\n") == 1 and "Traceback" not in out.stderr and "Error" not in out.stderr


def test_a_failed_run_is_marked_incomplete_and_its_report_says_so(tmp_path, capsys, monkeypatch):
    from vi_toolkit.experiments import conjugate

    def broken(config, folder, seed):
        raise RuntimeError("the model server went away")

    monkeypatch.setattr(conjugate, "EXPERIMENT", dataclasses.replace(conjugate.EXPERIMENT, run=broken))
    out = tmp_path / "run"
    assert main(["run", "conjugate", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the model server went away" in err and "Traceback" not in err
    meta = json.loads((out / "run.json").read_text())
    assert meta["complete"] is False and "the model server went away" in meta["error"]
    assert main(["report", str(out)]) == 0
    assert "Incomplete run" in (out / "report.html").read_text()


def test_bad_config_file_contents(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    assert main(["run", "conjugate", "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_existing_run_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("earlier results")
    assert main(["run", "conjugate", "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "earlier results"


def test_console_script_prints_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "vi_toolkit.cli", "run", "no-such-experiment"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "Traceback" not in done.stderr


def test_run_writes_a_complete_run_folder(tmp_path, capsys):
    """A tiny conjugate run: metrics JSON, netCDF posteriors, PNG figures, report.html, and exact agreement."""
    config = tmp_path / "small.toml"
    config.write_text('steps = 600\ndraws = 300\nwarmup = 200\nguides = ["normal"]\n')
    out = tmp_path / "run"
    argv = ["run", "conjugate", "--config", str(config), "--set", "n_obs=30", "--out", str(out), "--seed", "3"]
    assert main(argv) == 0
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"]["steps"] == 600 and record["config"]["n_obs"] == 30 and record["seed"] == 3
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "linear-regression-NUTS",
        "linear-regression-VI-normal",
        "normal-mean-NUTS",
        "normal-mean-VI-normal",
    ]
    for result in (out / "results").iterdir():
        assert (result / "posterior.nc").stat().st_size > 0
        assert json.loads((result / "metrics.json").read_text())["seconds"] > 0
    figures = list((out / "figures").glob("*.png"))
    assert len(figures) == 4
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4
    import pandas as pd

    table = pd.read_csv(out / "tables" / "agreement.csv")
    # VI means within 0.2 posterior sds of exact (MC error of 4000 draws ~0.02 sd; short fit), NUTS within
    # 0.25 (300 draws x 2 chains, ESS >= ~150: MC error ~0.08 sd, 3 standard errors).
    vi = table[table.method.str.startswith("VI")]
    assert (vi.max_std_mean_error < 0.2).all()
    assert (table[table.method == "NUTS"].max_std_mean_error < 0.25).all()
    # The normal-mean guide family holds the exact posterior: its ELBO gap (= KL(q||p)) is near zero.
    gap = table[(table.pair == "normal-mean") & (table.method == "VI normal")].gap_kl_q_p.item()
    assert abs(gap) < 0.02


def test_help_is_fast():
    """`vi-toolkit --help` imports no torch, Pyro or ArviZ: under a second (best of 3, robust to load)."""
    import time

    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "vi_toolkit.cli", "--help"], capture_output=True, text=True)
        best = min(best, time.perf_counter() - start)
        assert done.returncode == 0 and "run" in done.stdout
    assert best < 1.0, f"vi-toolkit --help took {best:.2f} s"
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, vi_toolkit, vi_toolkit.cli; "
                               "print(sorted(m for m in ('torch', 'pyro', 'arviz') if m in sys.modules))"],
        capture_output=True, text=True)
    assert heavy.stdout.strip() == "[]"


def test_package_names_are_lazy_but_complete():
    import vi_toolkit as vt
    from vi_toolkit import models

    for name in vt.__all__:
        assert getattr(vt, name) is not None
    assert callable(vt.fit_vi) and callable(vt.bounds) and callable(vt.compare) and callable(vt.fit_to_draws)
    assert hasattr(vt.svi, "init") and isinstance(vt.Posterior, type) and "normal-mean" in models.available()


def test_run_help_lists_every_setting_with_type_default_and_help(capsys):
    from vi_toolkit import experiments

    with pytest.raises(SystemExit) as exit_:
        main(["run", "vi-vs-mcmc", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "guides=normal,mvn" in out  # the list syntax
    experiment = experiments.get("vi-vs-mcmc")
    helps = experiment.settings_help()
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    for field in dataclasses.fields(experiment.config):
        line = lines[field.name]
        default = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else str(field.default)
        assert f"default {default}" in line, line
        assert helps[field.name] and helps[field.name] in line
    assert "list of str" in lines["guides"] and "int" in lines["steps"] and "float" in lines["lr"]


def test_every_setting_of_every_experiment_has_help():
    from vi_toolkit import experiments

    for name in experiments.available():
        missing = [k for k, text in experiments.get(name).settings_help().items() if not text]
        assert not missing, f"{name}: settings without help: {missing}"
