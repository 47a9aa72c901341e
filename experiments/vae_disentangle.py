"""`vae-disentangle`: does a larger beta disentangle? (question 5)

A beta-VAE (Bernoulli decoder, KL weight beta) per beta on binary 16x16 images of a square whose x, y position
and side length are drawn at random (:mod:`vi_toolkit.models.shapes`): the known factors. Per beta, the
rate (mean KL(q(z|x) || p(z)), nats) and distortion (-E_q log p(x|z), nats) on test images, and the mutual
information gap (MIG) of the encoder means against the factors: 1 when each factor lives in one latent alone.
"""

from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure

from vi_toolkit import iwae as iw
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.experiments.vae import image_figure
from vi_toolkit.models.shapes import FACTORS, mig, mutual_information, squares
from vi_toolkit.models.vae import train as train_vae


@dataclass(frozen=True)
class Config:
    """Settings of `vae-disentangle` (defaults are the full-size run).

    betas: KL weights compared
    images: training images (and as many test images)
    z_dim: latent dimension
    hidden: hidden layer widths of encoder and decoder
    epochs: training epochs per beta
    batch_size: images per mini-batch
    lr: Adam step size
    """

    betas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    images: int = 5000
    z_dim: int = 6
    hidden: tuple[int, ...] = (128,)
    epochs: int = 40
    batch_size: int = 64
    lr: float = 3e-3


DEMO = {"betas": (1.0, 4.0, 16.0), "images": 2000, "epochs": 12}


def _train(config, x, beta, seed):
    return train_vae(x, epochs=config.epochs, lr=config.lr, seed=seed, objective="elbo-analytic", z_dim=config.z_dim,
                     hidden=config.hidden, decoder="bernoulli", beta=beta, batch_size=config.batch_size)[0]


def _rd_figure(table):
    fig = Figure(figsize=(9, 3.8))
    ax, bx = fig.subplots(1, 2)
    ax.plot(table.rate, table.distortion, marker="o")
    for r in table.itertuples():
        ax.annotate(f"beta {r.beta:g}", (r.rate, r.distortion), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("rate: mean KL(q(z|x) || p(z))  [nats]")
    ax.set_ylabel("distortion: -E_q log p(x|z)  [nats]")
    ax.grid(alpha=0.3)
    bx.plot(table.beta, table.mig, marker="o")
    bx.set_xscale("log")
    bx.set_xlabel("beta")
    bx.set_ylabel("MIG (0..1)")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@on_one_thread
def run(config, folder, seed):
    x, factors = squares(2 * config.images, seed=seed)
    train_x, test_x, test_f = x[: config.images], x[config.images:], factors[config.images:]
    rows, mi_rows, panels = [], [], []
    for beta in config.betas:
        vae = _train(config, train_x, beta, seed)
        with torch.no_grad():
            codes = vae.encoder(test_x)[0].numpy()
            rate = float(vae.kl(test_x).mean())
        elbo = float(iw.elbo(vae.log_weights, test_x, num_samples=20, seed=seed).mean())
        usage = vae.latent_usage(test_x)
        rows.append({"beta": beta, "rate": rate, "distortion": -elbo - rate, "mig": mig(codes, test_f),
                     "active_units": usage.n_active})
        mi = mutual_information(codes, test_f)
        mi_rows += [{"beta": beta, "latent": j, **{f: mi[j, k] for k, f in enumerate(FACTORS)}} for j in range(len(mi))]
        with torch.no_grad():  # one row per latent: decoder means as z_d goes from -2.5 to 2.5, the others at 0
            z = torch.zeros(config.z_dim, 8, config.z_dim)
            for d in range(config.z_dim):
                z[d, :, d] = torch.linspace(-2.5, 2.5, 8)
            panels.append(vae.mean(z))
    table = pd.DataFrame(rows)
    folder.save_table("beta-sweep", table)
    folder.save_table("mutual-information", pd.DataFrame(mi_rows))
    folder.save_figure("rate-distortion-mig", _rd_figure(table))
    folder.save_figure("traversals", image_figure(panels, (16, 16), [f"beta {b:g}" for b in config.betas]))
    save_captions(folder, figures={
        "rate-distortion-mig": "Question 5: rate against distortion per beta (left) and the MIG of the encoder "
                               "means against the true factors x, y, side (right).",
        "traversals": "Question 5: latent traversals per beta (one row per latent, z_d from -2.5 to 2.5).",
    }, tables={
        "beta-sweep": "Question 5: rate and distortion (nats per test image), MIG and active units per beta.",
        "mutual-information": "Question 5: I(z_j; factor) in nats per beta, latent and factor.",
    })
    best, first, last = table.loc[table.mig.idxmax()], table.iloc[0], table.iloc[-1]
    return (
        "Q5 (does a larger beta disentangle?): MIG against the true factors (x, y, side of a square) "
        + ", ".join(f"beta {r.beta:g}: {r.mig:.2f} (rate {r.rate:.1f}, distortion {r.distortion:.1f} nats, "
                    f"{r.active_units} active units)" for r in table.itertuples())
        + f"; the highest MIG, {best.mig:.2f}, at beta {best.beta:g}. From beta {first.beta:g} to {last.beta:g} the "
        f"MIG moves by {last.mig - first.mig:+.2f} while the distortion grows by {last.distortion - first.distortion:.1f} "
        "nats per image (the true factors themselves score 1)."
    )


EXPERIMENT = Experiment(
    name="vae-disentangle",
    description="Question 5: a beta-VAE sweep on images of a square from known factors (x, y, side): "
    "rate-distortion curve and the mutual information gap (MIG) per beta.",
    config=Config,
    demo=DEMO,
    run=run,
)
