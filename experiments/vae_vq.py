"""`vae-vq`: VQ-VAE against a VAE (question 9).

A VQ-VAE (:mod:`vi_toolkit.models.vq_vae`: straight-through estimator, codebook and commitment losses, a
categorical prior over the codes fitted afterwards) and a VAE with the same hidden layers and the squared-error
reconstruction term (a Gaussian decoder with a fixed scale) on scikit-learn's digits: reconstruction error
(MSE per pixel on the test images), code usage (perplexity of the codebook per position: K for uniform use)
and samples (decoded prior draws: a digit classifier's confidence and the MSE to the nearest training image).
"""

import math
from dataclasses import dataclass

import pandas as pd
import torch

from vi_toolkit import images
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.experiments.vae import image_figure
from vi_toolkit.models.vq_vae import VQVAE, perplexity
from vi_toolkit.models.vae import train as train_vae


@dataclass(frozen=True)
class Config:
    """Settings of `vae-vq` (defaults are the full-size run).

    positions: code vectors per image (VQ-VAE)
    code_dim: dimension of each code vector (VQ-VAE)
    codebook: codebook entries K (VQ-VAE)
    commitment: weight of the commitment loss (VQ-VAE)
    z_dim: latent dimension (VAE)
    decoder_scale: the VAE's Gaussian decoder scale
    hidden: hidden layer widths of encoders and decoders
    epochs: training epochs per model
    batch_size: images per mini-batch
    lr: Adam step size
    samples: prior draws decoded per model
    """

    positions: int = 4
    code_dim: int = 4
    codebook: int = 16
    commitment: float = 0.25
    z_dim: int = 8
    decoder_scale: float = 0.25
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    samples: int = 500


DEMO = {"epochs": 15, "samples": 200}


@on_one_thread
def run(config, folder, seed):
    from sklearn.linear_model import LogisticRegression

    data = images.load("digits")
    x, train = data.test_x, data.train_x
    steps = config.epochs * math.ceil(len(train) / config.batch_size)
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(train.numpy(), data.train_y.numpy())

    vq = VQVAE(data.dim, config.positions, config.code_dim, config.codebook, config.hidden,
               commitment=config.commitment, seed=seed)
    vq_losses = vq.fit(train, steps=steps, batch_size=config.batch_size, lr=config.lr, seed=seed)
    vq.fit_prior(train)
    vae = train_vae(train, epochs=config.epochs, lr=config.lr, seed=seed, objective="elbo-analytic", z_dim=config.z_dim,
                    hidden=config.hidden, decoder="gaussian", decoder_scale=config.decoder_scale,
                    batch_size=config.batch_size)[0]
    usage = perplexity(vq.codes(x), config.codebook)
    rows, panels = [], []
    for name, model in (("VQ-VAE", vq), ("VAE", vae)):
        recon = model.reconstruct(x)
        samples = model.sample(config.samples, seed=seed).clamp(0, 1)
        nearest = torch.cdist(samples, train).min(1).values ** 2 / data.dim
        rows.append({"model": name, "test_mse": float(((recon - x) ** 2).mean()),
                     "prior_sample_confidence": float(clf.predict_proba(samples.numpy()).max(1).mean()),
                     "nearest_training_mse": float(nearest.mean())})
        panels.append([x[:10], recon[:10], samples[:10], samples[10:20]])
    rows[0].update(code_perplexity=float(usage.mean()), codebook=config.codebook,
                   entries_used=int(len(torch.unique(vq.codes(x)))), final_loss=float(vq_losses[-50:].mean()))
    rows[1].update(active_units=vae.latent_usage(x).n_active, latent_units=config.z_dim)
    table = pd.DataFrame(rows)
    folder.save_table("vq-vs-vae", table)
    folder.save_table("code-usage", pd.DataFrame({"position": range(config.positions),
                                                  "perplexity": usage.numpy()}))
    folder.save_figure("vq-vs-vae", image_figure(panels, data.shape, ["VQ-VAE", "VAE"]))
    save_captions(folder, figures={
        "vq-vs-vae": "Question 9, per model (panels), in rows: test images, reconstructions, and two rows of "
                     "images decoded from prior draws (the VQ-VAE's prior fitted to its training codes).",
    }, tables={
        "vq-vs-vae": "Question 9: test reconstruction MSE per pixel, the classifier's confidence on decoded prior "
                     "draws, their MSE to the nearest training image, and code usage.",
        "code-usage": "Question 9: perplexity of the VQ-VAE's code per position (K: every entry used equally).",
    })
    v, a = table.iloc[0], table.iloc[1]
    return (
        f"Q9 (VQ-VAE): test reconstruction MSE {v.test_mse:.4f} (VQ-VAE, {config.positions} codes from "
        f"{config.codebook} entries: {config.positions * math.log2(config.codebook):.0f} bits) vs {a.test_mse:.4f} "
        f"(VAE); code perplexity {v.code_perplexity:.1f} of {config.codebook} per position "
        f"({v.entries_used:.0f} entries used); prior samples {v.prior_sample_confidence:.2f} vs "
        f"{a.prior_sample_confidence:.2f} classifier confidence, {v.nearest_training_mse:.4f} vs "
        f"{a.nearest_training_mse:.4f} MSE to the nearest training image."
    )


EXPERIMENT = Experiment(
    name="vae-vq",
    description="Question 9: a VQ-VAE (straight-through estimator, codebook and commitment losses, a categorical "
    "prior over codes fitted afterwards) against a VAE: reconstructions, code usage, samples.",
    config=Config,
    demo=DEMO,
    run=run,
)
