"""`vae-vq` (question 9) and the VQ-VAE: nearest-entry lookup, code perplexity, the fitted prior and a short run
against the mean-image baseline."""

import math

import pandas as pd
import torch

from vi_toolkit import experiments, images
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.models.vq_vae import VQVAE, perplexity
from vi_toolkit.run_folder import RunFolder


def test_each_encoding_goes_to_its_nearest_codebook_entry_and_the_prior_counts_codes():
    """nearest() equals a brute-force search over the codebook; the fitted prior is (count + 1) / (N + K) per
    position, so each row sums to 1."""
    vq = VQVAE(x_dim=5, positions=3, code_dim=2, codebook=7, hidden=(8,), seed=0)
    z = torch.randn(20, 3, 2, generator=torch.Generator().manual_seed(0))
    brute = ((z[:, :, None, :] - vq.codebook.detach()[None, None]) ** 2).sum(-1).argmin(-1)
    assert torch.equal(vq.nearest(z), brute)
    x = torch.rand(50, 5, generator=torch.Generator().manual_seed(1))
    probs = vq.fit_prior(x)
    codes = vq.codes(x)
    torch.testing.assert_close(probs[1, codes[0, 1]], ((codes[:, 1] == codes[0, 1]).sum() + 1.0) / 57)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_perplexity_is_k_for_uniform_use_and_1_for_one_entry():
    codes = torch.stack([torch.arange(16).repeat(5), torch.zeros(80, dtype=torch.long)], 1)
    torch.testing.assert_close(perplexity(codes, 16), torch.tensor([16.0, 1.0], dtype=torch.float64))


def test_straight_through_passes_the_decoder_gradient_to_the_encoder():
    """With the commitment weight tiny and the codebook term free of encoder gradient, the encoder's output
    gets d/dz ||x - dec(z)||^2 at z = z_q (the decoder's gradient at the quantized code), unchanged."""
    vq = VQVAE(x_dim=6, positions=2, code_dim=3, codebook=5, hidden=(8,), commitment=1e-12, seed=0)
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(2))
    z_e = vq.encode(x)
    z_e.retain_grad()
    vq.encode = lambda rows: z_e  # the same tensor, to read its gradient
    vq.loss(x)[0].backward()
    z_q = vq.codebook[vq.nearest(z_e.detach())].detach().flatten(1).requires_grad_()
    (((x - vq.decoder(z_q)) ** 2).sum(-1).mean()).backward()
    torch.testing.assert_close(z_e.grad.flatten(1), z_q.grad)


def test_a_short_run_reconstructs_better_than_the_mean_image(tmp_path):
    """Three epochs: both models' test MSE per pixel is below that of predicting the mean training image."""
    experiment = experiments.get("vae-vq")
    config = build_config(experiment, overrides={"epochs": 3, "samples": 50})
    folder = RunFolder.create(tmp_path / "run", meta={})
    run_experiment(experiment, config, folder, seed=0)
    table = pd.read_csv(folder.path / "tables" / "vq-vs-vae.csv")
    data = images.load("digits")
    baseline = float(((data.test_x - data.train_x.mean(0)) ** 2).mean())
    assert (table.test_mse < 0.8 * baseline).all()
    assert 1 <= table.code_perplexity.dropna().iloc[0] <= config.codebook
    assert not math.isnan(table.entries_used.iloc[0])
