"""`vae-disentangle` (question 5): the shapes data and the MIG against known answers, and the beta sweep."""

import numpy as np
import pandas as pd
import pytest

from vi_toolkit import experiments
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.models.shapes import mig, squares
from vi_toolkit.run_folder import RunFolder


def test_each_image_is_the_square_its_factors_describe():
    """Every image has side^2 pixels on, inside the box [x, x + side) x [y, y + side) of its factors."""
    x, f = squares(200, seed=3)
    img = x.numpy().reshape(-1, 16, 16)
    for image, (left, top, side) in zip(img, f):
        assert image.sum() == side**2
        assert image[top : top + side, left : left + side].all()


def test_mig_is_one_for_the_factors_themselves_and_zero_for_a_duplicated_factor():
    """Codes that are the factors (plus two pure-noise latents) have MIG near 1 (each factor in one latent; the
    plug-in MI of noise with a factor over 3000 points is ~0.02 nats against H(factor) >= 1.4 nats); codes that
    hold each factor twice have MIG 0 (the top two latents are equally informative)."""
    _, f = squares(3000, seed=0)
    noise = np.random.default_rng(0).normal(size=(3000, 2))
    assert mig(np.column_stack([f, noise]), f) > 0.95
    assert mig(np.column_stack([f, f]), f) == pytest.approx(0.0, abs=1e-12)


def test_a_larger_beta_lowers_the_rate(tmp_path):
    """beta 1 against 16 after the same short training: the KL weighted 16-fold falls (rate lower), the
    distortion rises, and the MIG is a number in [0, 1]."""
    experiment = experiments.get("vae-disentangle")
    config = build_config(experiment, overrides={"betas": "1,16", "images": 500, "epochs": 3})
    folder = RunFolder.create(tmp_path / "run", meta={})
    run_experiment(experiment, config, folder, seed=0)
    table = pd.read_csv(folder.path / "tables" / "beta-sweep.csv").set_index("beta")
    assert table.rate[16.0] < table.rate[1.0] and table.distortion[16.0] > table.distortion[1.0]
    assert table.mig.between(0, 1).all()
