"""`vae-autoencoder` (questions 3 and 4) at a tiny size: the tables hold what the definitions say."""

import pandas as pd
import pytest

from vi_toolkit import experiments
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.run_folder import RunFolder


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    experiment = experiments.get("vae-autoencoder")
    config = build_config(experiment, overrides={"epochs": 2, "samples": 50, "radii": "0,1,4"})
    folder = RunFolder.create(tmp_path_factory.mktemp("run") / "vae-autoencoder", meta={})
    record = run_experiment(experiment, config, folder, seed=0)
    names = ("perturbation", "prior-samples", "latent-arithmetic")
    return {n: pd.read_csv(folder.path / "tables" / f"{n}.csv") for n in names}, record["summary"]


def test_tables_of_questions_3_and_4(tables):
    """Perturbing the codes by r = 4 times their spread (eps shared across r) raises each model's reconstruction
    error well above r = 0 (a decoder is not constant in its code); the classifier is confident on test images
    (LogisticRegression on the digits is about 96% accurate); latent arithmetic covers the 90 ordered class
    pairs per model with hit rates in [0, 1], and the summary answers both questions."""
    t, summary = tables
    mse = t["perturbation"].set_index(["model", "radius"]).mse
    for model in ("VAE", "autoencoder"):
        assert mse[model, 4.0] > 1.5 * mse[model, 0.0]
    assert (t["prior-samples"].test_image_confidence > 0.8).all()
    hits = t["latent-arithmetic"]
    assert len(hits) == 180 and hits.hit.between(0, 1).all()
    assert (hits.source != hits.target).all()
    assert "Q3 (autoencoder or VAE?)" in summary and "Q4 (latent arithmetic)" in summary
