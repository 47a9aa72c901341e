"""Experiments run end to end through the public API (``build_config``, ``run_experiment`` into a ``RunFolder``) at
a tiny size, their numbers checked against exact answers; and the targets they read."""

import pandas as pd
import pytest
import torch

from vi_toolkit import experiments
import vi_toolkit as vt
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.models.posteriordb_targets import load_target
from vi_toolkit.run_folder import RunFolder


def _run(name, tmp_path, seed=0, **overrides):
    experiment = experiments.get(name)
    config = build_config(experiment, overrides={k: str(v) for k, v in overrides.items()})
    folder = RunFolder.create(tmp_path / name)
    record = run_experiment(experiment, config, folder, seed=seed)
    return folder.path, record


def test_load_target_of_a_pair_with_an_exact_posterior():
    label, pair, args, reference = load_target("normal-mean")
    assert label == "normal-mean" and len(args) == 1 and args[0].shape == (20,)
    exact = pair.posterior(*args)["mu"]
    assert isinstance(reference["mu"], torch.distributions.Normal)
    assert float(reference["mu"].mean) == pytest.approx(float(exact.mean))
    with pytest.raises(vt.ConfigError, match="neither"):
        load_target("no-such-target")


def test_vi_vs_mcmc_on_normal_mean_agrees_with_the_exact_posterior(tmp_path):
    """normal-mean (one parameter, exact posterior N(1.62, 0.218^2) on its simulated data): the comparison table
    holds the VI fit and NUTS against the exact posterior. 400 NUTS draws of one chain have an ESS of ~100 or
    more here (measured: 47-78 per 200 draws), so the Monte Carlo error of the mean is ~0.1 posterior sds and 0.3
    is ~3 standard errors. The Gaussian guide's family holds the exact posterior and the fit settles (measured
    error 0.01-0.02 sds over seeds 0-3), so it gets the same bound."""
    path, record = _run("vi-vs-mcmc", tmp_path, target="normal-mean", guides="normal", objectives="elbo",
                        steps=1000, lr=0.05, draws=400, warmup=200, chains=1)
    table = pd.read_csv(path / "tables" / "comparison.csv").set_index("method")
    assert list(table.index) == ["VI normal elbo", "NUTS"]
    assert (table.target == "normal-mean").all()
    assert table.loc["NUTS", "std_mean_error_max"] < 0.3
    assert 0.7 < table.loc["NUTS", "sd_ratio_min"] <= table.loc["NUTS", "sd_ratio_max"] < 1.3
    assert table.loc["VI normal elbo", "std_mean_error_max"] < 0.3
    assert 0.8 < table.loc["VI normal elbo", "sd_ratio_min"] < 1.2
    assert {"marginals.png", "losses.png"} <= {p.name for p in (path / "figures").iterdir()}
    assert {p.name for p in (path / "results").iterdir()} == {"VI-normal-elbo", "NUTS"}
    assert "normal-mean" in record["summary"]
