"""`elbo-tightness`: the bound sandwich ELBO <= IWAE-k <= log p(x) <= CUBO_2 against k, per guide family,
on the conjugate linear regression (exact log evidence, joint bounds, AIS beside the exact value) and on a
VAE (per-data-point bounds, amortized encoders).

The VAE is linear-Gaussian (probabilistic PCA data, a linear decoder with a learned noise scale), so log p(x)
under its fitted decoder is exact (:mod:`vi_toolkit.models.linear_vae`) and the gap of each encoder
family is measured, not estimated: an encoder that learns its variance against one fixed at a constant. (The
`vae` experiment shows ELBO against IWAE-k on images, where log p(x) is unknown.)"""

from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit.bounds import AIS, bounds
from vi_toolkit.errors import ConfigError
from vi_toolkit.experiment import Experiment
from vi_toolkit.models.linear_vae import ppca_data, vae_bounds


@dataclass(frozen=True)
class Config:
    n_obs: int = 100
    n_features: int = 4
    correlation: float = 0.9
    guides: tuple[str, ...] = ("normal", "lowrank", "mvn", "iaf")
    ks: tuple[int, ...] = (1, 10, 100, 1000)
    batches: int = 100
    steps: int = 3000
    lr: float = 0.02
    num_particles: int = 8
    ais_particles: int = 200
    ais_temperatures: int = 200
    vae_points: int = 2000  # probabilistic PCA data for the VAE half (0 skips it)
    vae_x_dim: int = 8
    vae_z_dim: int = 2
    vae_noise: float = 0.3
    vae_encoder_scales: tuple[float, ...] = (0.0, 1.0)  # 0: learned encoder variance; > 0: fixed at this scale
    vae_steps: int = 3000
    vae_eval_points: int = 500

    def __post_init__(self):
        if not -1 / max(self.n_features - 1, 1) < self.correlation < 1:
            raise ConfigError(f"correlation must make a valid correlation matrix, got {self.correlation}")


DEMO = {"guides": ("normal", "mvn"), "steps": 1000, "batches": 50, "ais_temperatures": 100, "vae_steps": 1500,
        "vae_eval_points": 200}


def correlated_regression(n, d, correlation, seed):
    """(X, y): features N(0, C) with C = (1 - r) I + r 1 1^T, y = X beta + N(0, 1), beta ~ N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    corr = torch.full((d, d), correlation) + (1 - correlation) * torch.eye(d)
    X = torch.randn(n, d, generator=g) @ torch.linalg.cholesky(corr).T
    return X, X @ torch.randn(d, generator=g) + torch.randn(n, generator=g)


def sandwich_figure(tables, log_z, what="log p(y)"):
    """Each guide's IWAE-k minus ``log_z`` against k (log axis), its CUBO_2 as a dashed line, 0 = log_z."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for i, (guide, table) in enumerate(tables.items()):
        iwae = table[table.bound.str.startswith("IWAE")]
        colour = f"C{i % 10}"
        ax.errorbar(iwae.k, iwae.value - log_z, yerr=2 * iwae.se, marker="o", color=colour, label=f"{guide}: IWAE-k")
        cubo = table[table.bound == "CUBO_2"].value.iloc[0] - log_z
        ax.axhline(cubo, color=colour, linestyle="--", linewidth=1, label=f"{guide}: CUBO_2")
    ax.axhline(0.0, color="k", linewidth=1.2, label=f"{what} (exact)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("k (importance samples per bound)")
    ax.set_ylabel(f"bound - {what}  [nats]")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run(config, folder, seed):
    pair = models.get("linear-regression")
    X, y = correlated_regression(config.n_obs, config.n_features, config.correlation, seed)
    log_z = pair.log_evidence(X, y)
    ais = AIS(particles=config.ais_particles, temperatures=config.ais_temperatures, seed=seed)
    tables, rows = {}, []
    for guide in config.guides:
        fit = vt.fit_vi(pair.model, guide, X, y, steps=config.steps, lr=config.lr,
                        num_particles=config.num_particles, seed=seed, progress=False)
        b = bounds(fit, k=config.ks, log_evidence=log_z, seed=seed, batches=config.batches, ais=ais)
        tables[guide] = b.table().assign(guide=guide)
        rows.append({"guide": guide, "seconds": fit.seconds, "elbo": b.elbo.value, "kl_q_p": b.gap.value,
                     "kl_se": b.gap.se, **{f"iwae_{k}": e.value for k, e in b.iwae.items()},
                     "log_evidence": log_z, "ais": b.ais.value, "ais_se": b.ais.se, "cubo_2": b.cubo.value})
    vae_tables, vae_rows = ({}, [])
    if config.vae_points:
        x = ppca_data(config.vae_points, config.vae_x_dim, config.vae_z_dim, config.vae_noise, seed)
        vae_tables, vae_rows = vae_bounds(
            x, z_dim=config.vae_z_dim, encoder_scales=config.vae_encoder_scales, steps=config.vae_steps,
            eval_points=config.vae_eval_points, ks=config.ks, batches=config.batches, seed=seed,
        )
    summary = pd.DataFrame(rows)
    folder.save_table("bounds", pd.concat(tables.values(), ignore_index=True))
    folder.save_table("summary", summary)
    folder.save_figure("sandwich", sandwich_figure(tables, log_z))
    vae_note = ""
    if vae_rows:
        vae_summary = pd.DataFrame(vae_rows)
        folder.save_table("vae-bounds", pd.concat(vae_tables.values(), ignore_index=True))
        folder.save_table("vae-summary", vae_summary)
        # the exact value differs per fit (each VAE has its own decoder): plot each against its own
        relative = {g: t.assign(value=t.value - float(t[t.bound == "log p(x) exact"].value.iloc[0]))
                    for g, t in vae_tables.items()}
        folder.save_figure("sandwich-vae", sandwich_figure(relative, 0.0, "log p(x) per point"))
        top = max(config.ks)
        vae_note = " VAE (per data point, nats per point): gap log p(x) - ELBO " + ", ".join(
            f"{r.guide} {r.kl_q_p:.4f}, IWAE-{top} gap {r.log_evidence - getattr(r, f'iwae_{top}'):.4f}, "
            f"CUBO_2 - log p(x) {r.cubo_2 - r.log_evidence:.4f}" for r in vae_summary.itertuples()) + "."
    return (
        f"log p(y) = {log_z:.3f}. Gap log p(y) - ELBO = KL(q||p): "
        + ", ".join(f"{r.guide} {r.kl_q_p:.3f}" for r in summary.itertuples())
        + f"; IWAE-{max(config.ks)} closes it to "
        + ", ".join(f"{r.guide} {log_z - getattr(r, f'iwae_{max(config.ks)}'):.3f}" for r in summary.itertuples())
        + " nats; AIS - log p(y): "
        + ", ".join(f"{r.guide} {r.ais - log_z:+.3f}" for r in summary.itertuples())
        + "; CUBO_2 - log p(y): "
        + ", ".join(f"{r.guide} {r.cubo_2 - log_z:.3f}" for r in summary.itertuples())
        + "."
        + vae_note
    )


EXPERIMENT = Experiment(
    name="elbo-tightness",
    description="The bound sandwich ELBO <= IWAE-k <= log p(y) <= CUBO_2 against k and across guide families on "
    "the conjugate linear regression with correlated features (exact log evidence; AIS shown beside it), and per "
    "data point on a linear-Gaussian VAE (exact log p(x)) with a learned against a fixed encoder variance.",
    config=Config,
    demo=DEMO,
    run=run,
)
