"""`vae-forward-kl`: can a VAE's encoder be trained on the forward KL? (question 8)

A Bernoulli VAE is trained on binarized digits with the ELBO (reverse KL(q || p) for the encoder). Its decoder is
then held fixed and a fresh encoder is trained by reweighted wake-sleep (forward KL(p || q), the toolkit's
``forward-kl`` objective with ``method="wake-sleep"``, which trains the guide only). Both encoders propose for
the same decoder, so the same log p(x) is estimated: per test image, the ELBO, IWAE-k (a higher IWAE-k is a
tighter lower bound on the same log p(x)), the gap IWAE-k - ELBO, and the Pareto k-hat of the importance
weights (coverage: below 0.7 the importance sampling estimate is reliable).
"""

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

import vi_toolkit as vt
from vi_toolkit import images
from vi_toolkit.diagnostics import psis_khat
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.isolation import isolated
from vi_toolkit.models.vae import train as train_vae


@dataclass(frozen=True)
class Config:
    """Settings of `vae-forward-kl` (defaults are the full-size run).

    z_dim: latent dimension
    hidden: hidden layer widths of encoder and decoder
    epochs: training epochs of the ELBO VAE (encoder and decoder)
    wake_sleep_steps: steps of the wake-sleep encoder on the fixed decoder
    particles: importance particles per wake-sleep step
    batch_size: images per mini-batch
    lr: Adam step size
    k: importance samples of the test IWAE-k and of each image's k-hat
    eval_images: test images evaluated
    """

    z_dim: int = 8
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 40
    wake_sleep_steps: int = 2000
    particles: int = 50
    batch_size: int = 32
    lr: float = 3e-3
    k: int = 1000
    eval_images: int = 450


DEMO = {"epochs": 15, "wake_sleep_steps": 400, "particles": 20, "k": 200, "eval_images": 150}


def _train(config, x, seed):
    return train_vae(x, epochs=config.epochs, lr=config.lr, seed=seed, z_dim=config.z_dim, hidden=config.hidden,
                     decoder="bernoulli", binarize=True, batch_size=config.batch_size)[0]


def _wake_sleep_encoder(vae, config, x, seed):
    """A copy of ``vae`` whose encoder (re-initialized from ``seed + 1``) is fitted by reweighted wake-sleep on
    the fixed decoder."""
    pair = copy.deepcopy(vae)
    with isolated(seed + 1):
        for layer in pair.encoder.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
    fit = vt.fit_vi(pair.model, pair.guide, pair.prepare(x), objective=vt.Objective("forward-kl", method="wake-sleep"),
                    num_particles=config.particles, steps=config.wake_sleep_steps, lr=config.lr, seed=seed,
                    progress=False, schedule=vt.Schedule(early_stop=False))
    return fit.model.__self__


def _evaluate(vae, x, k, seed):
    """Per image: ELBO (mean log-weight), IWAE-k, and the Pareto k-hat of k log-weights."""
    with torch.no_grad(), isolated(seed):
        log_w = vae.log_weights(x, k).double()
    return pd.DataFrame({"elbo": log_w.mean(0).numpy(),
                         "iwae": (torch.logsumexp(log_w, 0) - math.log(k)).numpy(),
                         "khat": [psis_khat(log_w[:, n].numpy()) for n in range(log_w.shape[1])]})


def _figure(tables, k):
    fig = Figure(figsize=(9, 3.8))
    ax, bx = fig.subplots(1, 2)
    for name, t in tables.items():
        ax.hist(t.iwae - t.elbo, bins=30, alpha=0.5, label=name)
        bx.hist(np.clip(t.khat, -0.5, 2), bins=30, alpha=0.5, label=name)
    ax.set_xlabel(f"IWAE-{k} - ELBO per test image [nats]")
    bx.axvline(0.7, color="k", linestyle="--", linewidth=1)
    bx.set_xlabel(f"Pareto k-hat of {k} importance weights (clipped to [-0.5, 2])")
    for a in (ax, bx):
        a.set_ylabel("test images")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@on_one_thread
def run(config, folder, seed):
    data = images.load("digits")
    test_x = images.binarize(data.test_x[: config.eval_images], seed=seed + 1)
    vae = _train(config, data.train_x, seed)
    encoders = {"ELBO encoder (reverse KL)": vae,
                "wake-sleep encoder (forward KL)": _wake_sleep_encoder(vae, config, data.train_x, seed)}
    tables = {name: _evaluate(v, test_x, config.k, seed) for name, v in encoders.items()}
    rows = [{"encoder": name, "test_elbo": t.elbo.mean(), f"test_iwae_{config.k}": t.iwae.mean(),
             "gap": (t.iwae - t.elbo).mean(), "mean_khat": t.khat[np.isfinite(t.khat)].mean(),
             "share_khat_below_0.7": (t.khat < 0.7).mean()} for name, t in tables.items()]
    table = pd.DataFrame(rows)
    folder.save_table("encoders", table)
    folder.save_table("per-image", pd.concat([t.assign(encoder=n) for n, t in tables.items()], ignore_index=True))
    folder.save_figure("gap-and-khat", _figure(tables, config.k))
    save_captions(folder, figures={
        "gap-and-khat": "Question 8: per test image, IWAE-k - ELBO (left) and the Pareto k-hat of the importance "
                        "weights (right; dashed: 0.7) for the two encoders of the same decoder.",
    }, tables={
        "encoders": "Question 8: per encoder, test ELBO and IWAE-k (nats per image, same decoder: the higher "
                    "IWAE-k is the tighter bound on the same log p(x)), their gap, mean k-hat and the share of "
                    "images with k-hat < 0.7.",
        "per-image": "Question 8: ELBO, IWAE-k and k-hat per test image and encoder.",
    })
    r, f = table.iloc[0], table.iloc[1]
    iw_col = f"test_iwae_{config.k}"
    return (
        f"Q8 (can a VAE use forward KL?): on the same decoder, the wake-sleep (forward KL) encoder gives test ELBO "
        f"{f.test_elbo:.2f} and IWAE-{config.k} {f[iw_col]:.2f} nats against the ELBO encoder's {r.test_elbo:.2f} and "
        f"{r[iw_col]:.2f}; gap IWAE - ELBO {f.gap:.2f} vs {r.gap:.2f}; k-hat < 0.7 on {f['share_khat_below_0.7']:.0%} vs "
        f"{r['share_khat_below_0.7']:.0%} of test images (mean k-hat {f.mean_khat:.2f} vs {r.mean_khat:.2f})."
    )


EXPERIMENT = Experiment(
    name="vae-forward-kl",
    description="Question 8: an encoder trained by reweighted wake-sleep (forward KL) against the ELBO's encoder on "
    "the same decoder: test ELBO, IWAE-k, their gap and the Pareto k-hat per image.",
    config=Config,
    demo=DEMO,
    run=run,
)
