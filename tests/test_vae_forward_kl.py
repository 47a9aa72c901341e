"""`vae-forward-kl` (question 8) at a tiny size: the per-image bounds obey Jensen's inequality."""

import numpy as np
import pandas as pd

from vi_toolkit import experiments
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.run_folder import RunFolder


def test_iwae_is_above_the_elbo_per_image_for_both_encoders(tmp_path):
    """From the same k log-weights, log (1/k) sum_i w_i >= (1/k) sum_i log w_i (Jensen) for every image and both
    encoders; the two encoders propose for one decoder, and each gives a k-hat for most images."""
    experiment = experiments.get("vae-forward-kl")
    config = build_config(experiment, overrides={"epochs": 2, "wake_sleep_steps": 30, "particles": 5, "k": 50,
                                                 "eval_images": 30})
    folder = RunFolder.create(tmp_path / "run", meta={})
    summary = run_experiment(experiment, config, folder, seed=0)["summary"]
    per_image = pd.read_csv(folder.path / "tables" / "per-image.csv")
    assert len(per_image) == 60 and set(per_image.encoder) == {"ELBO encoder (reverse KL)",
                                                                "wake-sleep encoder (forward KL)"}
    assert (per_image.iwae >= per_image.elbo - 1e-9).all()
    assert np.isfinite(per_image.khat).mean() > 0.5
    assert "Q8 (can a VAE use forward KL?)" in summary
