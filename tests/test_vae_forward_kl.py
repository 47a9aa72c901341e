"""`vae-forward-kl` (question 8) at a tiny size: the per-image bounds obey Jensen's inequality."""

import numpy as np
import pandas as pd

from vi_toolkit import experiments, models
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


def test_wake_sleep_encoder_reaches_the_exact_marginal_posterior_on_a_linear_gaussian_decoder():
    """The experiment's wake-sleep encoder on a fixed linear-Gaussian decoder x = W z + b + s eps: the exact
    posterior is N(S W^T (x - b) / s^2, S), S = (I + W^T W / s^2)^-1, correlated. A diagonal encoder minimizing
    the forward KL(p || q) matches its mean and its *marginal* sds sqrt(S_ii) (moment matching), not the
    reverse-KL sds 1 / sqrt(S^-1_ii), which are 25% smaller here. Tolerance 5% of the sd: 100 particles leave a
    self-normalization bias of about 2% (measured: 3% at 50 particles, 1% at 200), Adam's noise is smaller."""
    import torch

    from vi_toolkit.experiments.vae_forward_kl import Config, _wake_sleep_encoder
    from vi_toolkit.isolation import isolated

    w = torch.tensor([[1.0, 0.9], [0.9, 1.0], [0.5, -0.2], [0.0, 0.3]])
    b, s = torch.tensor([0.5, -0.5, 0.0, 1.0]), 0.5
    vae = models.get("vae", x_dim=4, z_dim=2, hidden=(), decoder="gaussian", decoder_scale=s, batch_size=64, seed=0)
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(w)
        vae.decoder.net[0].bias.copy_(b)
    with isolated(1):
        x = torch.randn(2000, 2) @ w.T + b + s * torch.randn(2000, 4)
    config = Config(z_dim=2, hidden=(), wake_sleep_steps=1500, particles=100, lr=1e-2)
    encoder = _wake_sleep_encoder(vae, config, x, seed=0).encoder
    cov = torch.linalg.inv(torch.eye(2) + w.T @ w / s**2)
    exact_sd, reverse_sd = cov.diagonal().sqrt(), torch.linalg.inv(cov).diagonal().rsqrt()
    assert (reverse_sd / exact_sd < 0.8).all()
    with torch.no_grad():
        loc, scale = encoder(x[:200])
    exact_loc = (x[:200] - b) @ w @ cov / s**2
    assert ((loc - exact_loc).abs() / exact_sd).max() < 0.1
    assert ((scale / exact_sd - 1).abs() < 0.05).all()
