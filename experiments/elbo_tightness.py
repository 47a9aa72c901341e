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

from vi_toolkit import models, plots
import vi_toolkit as vt
from vi_toolkit.bounds import AIS, bounds
from vi_toolkit.errors import ConfigError
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import save_captions
from vi_toolkit.models.linear_vae import ppca_data, vae_bounds


@dataclass(frozen=True)
class Config:
    """Settings of `elbo-tightness` (defaults are the full-size run).

    n_obs: observations of the correlated linear regression
    n_features: regression coefficients
    correlation: correlation between every pair of features
    guides: autoguide families fitted by VI, one bound sandwich each
    ks: importance samples k of the IWAE-k bounds
    batches: independent batches behind each bound's standard error
    steps: upper bound on SVI steps per fit
    lr: Adam step size of the VI fits
    num_particles: Monte Carlo draws per ELBO gradient
    ais_particles: annealed importance sampling particles
    ais_temperatures: annealed importance sampling temperatures
    vae_points: probabilistic PCA data points for the VAE half (0 skips it)
    vae_x_dim: dimension of each VAE data point
    vae_z_dim: latent dimension of the linear VAE
    vae_noise: observation noise sd of the probabilistic PCA data
    vae_encoder_scales: encoder scales compared (0: learned encoder variance; > 0: fixed at this scale)
    vae_steps: SVI steps of each VAE fit
    vae_eval_points: data points the VAE bounds are evaluated on
    """

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
    """Each guide's IWAE-k minus ``log_z`` against k (log axis, error bars 2 se; IWAE-1 is the ELBO), its
    CUBO_2 (dashed) and AIS estimate (dotted) where the table has one, 0 = ``log_z``; the y range holds every
    bound drawn (symlog: sub-0.01-nat gaps and multi-nat gaps in one panel)."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    shown = [0.0]
    for guide, table in tables.items():
        iwae = table[table.bound.str.startswith("IWAE")]
        colour = plots.method_colour(guide)
        ax.errorbar(iwae.k, iwae.value - log_z, yerr=2 * iwae.se, marker="o", color=colour, capsize=3,
                    label=f"{guide}: IWAE-k (k=1: ELBO)")
        shown += list(iwae.value - log_z - 2 * iwae.se) + list(iwae.value - log_z + 2 * iwae.se)
        cubo = table[table.bound == "CUBO_2"].value.iloc[0] - log_z
        ax.axhline(cubo, color=colour, linestyle="--", linewidth=1.2, label=f"{guide}: CUBO_2")
        shown.append(cubo)
        ais = table[table.bound == "log p(x) AIS"]
        if len(ais):
            value, se = float(ais.value.iloc[0]) - log_z, float(ais.se.iloc[0])
            ax.axhline(value, color=colour, linestyle=":", linewidth=1.6, label=f"{guide}: AIS (+-2 se shaded)")
            ax.axhspan(value - 2 * se, value + 2 * se, color=colour, alpha=0.12, linewidth=0)
            shown += [value - 2 * se, value + 2 * se]
    ax.axhline(0.0, color="k", linewidth=1.2, label=f"{what} (exact)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)
    lo, hi = min(shown), max(shown)
    ax.set_ylim(lo * 1.6 if lo < 0 else -0.01, hi * 1.6 if hi > 0 else 0.01)  # room above and below in symlog
    ax.set_xlabel("k (importance samples per bound)")
    ax.set_ylabel(f"bound - {what}  [nats]")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
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
    save_captions(folder, figures={
        "sandwich": f"Linear regression with correlated features ({config.n_obs} observations): each guide's "
                    "bounds minus the exact log evidence, against k. IWAE-k climbs from the ELBO (k=1) towards 0; "
                    "CUBO_2 (dashed) lies above 0; AIS (dotted, with its 2-se band) estimates log p(y) itself.",
        "sandwich-vae": "Linear-Gaussian VAE, per data point: each encoder's bounds minus the exact log p(x) under "
                        "its own decoder, against k; the fixed-variance encoder leaves a larger gap.",
    }, tables={
        "summary": "One row per guide: ELBO, its gap to the exact log evidence (= KL(q||p)) with standard error, "
                   "IWAE-k, AIS and CUBO_2.",
        "bounds": "Every bound of every guide with its standard error (long form of the summary).",
        "vae-summary": "The VAE half: one row per encoder, nats per data point.",
        "vae-bounds": "The VAE half: every bound per encoder with its standard error.",
    })
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
