"""`kl-direction`: reverse KL(q||p) against forward KL(p||q) for a mean-field Gaussian q on two exact targets.

On a correlated Gaussian the reverse-KL optimum shrinks each variance to 1/Lambda_ii, the forward-KL optimum
keeps Sigma_ii; on a bimodal mixture the reverse KL locks onto one mode, the forward KL covers both. Each
method's fitted q is drawn over the target's contours, and a table gives the variances and both KLs (exact
for the Gaussian target, Monte Carlo with standard errors for the mixture).
"""

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyro.distributions as dist
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.transforms import offset_copy
from torch.distributions import kl_divergence

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit.models.targets import CorrelatedGaussian
from vi_toolkit import plots
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import save_captions
from vi_toolkit.isolation import isolated


@dataclass(frozen=True)
class Config:
    """Settings of `kl-direction` (defaults are the full-size run).

    correlation: correlation of the two-dimensional Gaussian target
    separation: distance between the two modes of the bimodal target
    mixture_scale: sd of each mode of the bimodal target
    steps: SVI steps per fit (no early stop)
    lr: Adam step size
    reverse_particles: Monte Carlo draws per gradient of the reverse-KL (ELBO) fit
    forward_particles: particles per step of the Renyi and forward-KL fits
    renyi_alpha: alpha of the Renyi objective
    reference_draws: exact target draws given to fit_to_draws
    kl_samples: Monte Carlo draws for each KL on the mixture target
    """

    correlation: float = 0.9
    separation: float = 4.0
    mixture_scale: float = 0.7
    steps: int = 2000
    lr: float = 0.02
    reverse_particles: int = 16
    forward_particles: int = 1000  # wake-sleep's self-normalization bias is under 1% at 1000 (see tests)
    renyi_alpha: float = 0.5
    reference_draws: int = 100_000  # exact target draws given to fit_to_draws
    kl_samples: int = 100_000  # Monte Carlo draws for each KL on the mixture target


DEMO = {"steps": 250, "lr": 0.06, "forward_particles": 300, "reference_draws": 20_000, "kl_samples": 20_000}


def _methods(config):
    """label -> (objective, num_particles) of each SGD fit."""
    k = config.forward_particles
    return {
        "reverse KL (ELBO)": ("elbo", config.reverse_particles),
        f"Renyi alpha={config.renyi_alpha:g}": (vt.Objective("renyi", alpha=config.renyi_alpha), k),
        "forward KL: wake-sleep": (vt.Objective("forward-kl", method="wake-sleep"), k),
        "forward KL: score climbing": (vt.Objective("forward-kl", method="score-climbing"), k),
    }


def _kls(pair, loc, var, config, seed):
    """(KL(q||p), se, KL(p||q), se) for q = N(loc, diag var): exact (``torch.distributions.kl_divergence``) for
    a Gaussian target, else Monte Carlo from ``config.kl_samples`` draws on a private stream from ``seed``."""
    if isinstance(pair, CorrelatedGaussian):
        p, q = pair.distribution(), dist.MultivariateNormal(loc, torch.diag(var))
        return float(kl_divergence(q, p)), 0.0, float(kl_divergence(p, q)), 0.0
    p, q = pair.distribution(), dist.Normal(loc, var.sqrt()).to_event(1)
    out = []
    with isolated(seed):
        for sample_from, (first, second) in ((q, (q, p)), (p, (p, q))):
            z = sample_from.sample((config.kl_samples,))
            terms = first.log_prob(z) - second.log_prob(z)
            out += [float(terms.mean()), float(terms.std() / math.sqrt(config.kl_samples))]
    return tuple(out)


def _row(target, method, pair, loc, var, config, seed, seconds=float("nan")):
    kl_qp, kl_qp_se, kl_pq, kl_pq_se = _kls(pair, loc, var, config, seed)
    exact = isinstance(pair, CorrelatedGaussian)
    return {
        "target": target,
        "method": method,
        "mean_z0": float(loc[0]),
        "mean_z1": float(loc[1]),
        "var_z0": float(var[0]),
        "var_z1": float(var[1]),
        "kl_q_p": kl_qp,
        "kl_q_p_se": kl_qp_se,
        "kl_p_q": kl_pq,
        "kl_p_q_se": kl_pq_se,
        "kl_by": "exact" if exact else f"Monte Carlo ({config.kl_samples} draws)",
        "seconds": seconds,
    }


def _fitted(result):
    """(loc, variance) of a fitted mean-field Gaussian autoguide on the real site z, from its quantiles (the
    guide's parameters may be stored whitened): loc = q(0.5), sd = q(Phi(1)) - q(0.5)."""
    with result.isolated():
        low, high = result.guide.quantiles([0.5, 0.8413447460685429])["z"].detach()
    return low, (high - low) ** 2


def _panel(ax, pair, title, fits, optima):
    """Target density contours with a 2-sd ellipse for each fitted q (solid) and each exact optimum (dashed)."""
    sd, centre = pair.distribution().variance.sqrt(), pair.distribution().mean
    x, y = np.meshgrid(*(np.linspace(float(c - 3.2 * s), float(c + 3.2 * s), 160) for c, s in zip(centre, sd)))
    grid = torch.tensor(np.stack([x, y], -1), dtype=torch.get_default_dtype())
    density = pair.distribution().log_prob(grid).exp().numpy()
    ax.contour(x, y, density, levels=6, colors="0.55", linewidths=0.8)
    for label, (loc, var) in fits.items():
        _ellipse(ax, loc, var, plots.method_colour(label), "-", label)
    for label, (loc, var) in optima.items():
        _ellipse(ax, loc, var, "k", "--", label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.set_aspect("equal")
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(y.min(), y.max())
    below_label = offset_copy(ax.transAxes, fig=ax.figure, y=-30, units="points")  # under the z0 label
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below_label, ncol=2,
              frameon=False)


def _ellipse(ax, loc, var, colour, style, label):
    sd = var.sqrt()
    ax.add_patch(Ellipse((float(loc[0]), float(loc[1])), 4 * float(sd[0]), 4 * float(sd[1]), fill=False,
                         edgecolor=colour, linestyle=style, linewidth=1.6, label=label))


def run(config, folder, seed):
    targets = {
        f"correlated Gaussian (r={config.correlation:g})": models.get(
            "correlated-gaussian", correlation=config.correlation
        ),
        f"bimodal mixture (separation {config.separation:g})": models.get(
            "bimodal", separation=config.separation, scale=config.mixture_scale
        ),
    }
    rows = []
    fig = Figure(figsize=(12, 5.6))
    axes = fig.subplots(1, 2)
    for ax, (target, pair) in zip(axes, targets.items()):
        fits, results = {}, {}
        for label, (objective, particles) in _methods(config).items():
            result = vt.fit_vi(pair.model, "normal", objective=objective, num_particles=particles, steps=config.steps,
                               lr=config.lr, seed=seed, progress=False, schedule=vt.Schedule(early_stop=False))
            results[label], fits[label] = result, _fitted(result)
            rows.append(_row(target, label, pair, *fits[label], config, seed, result.seconds))
        with isolated(seed):
            draws = {"z": pair.distribution().sample((config.reference_draws,))}
        matched = vt.fit_to_draws("normal", draws, model=pair.model, seed=seed)
        fits[f"fit_to_draws ({config.reference_draws} exact draws)"] = _fitted(matched)
        rows.append(_row(target, "fit_to_draws", pair, *_fitted(matched), config, seed, matched.seconds))
        if isinstance(pair, CorrelatedGaussian):
            optima = {"exact reverse-KL optimum": (pair.loc, pair.reverse_kl_variances()),
                      "exact forward-KL optimum": (pair.loc, pair.forward_kl_variances())}
        else:
            optima = {"exact forward-KL optimum": (pair.mean(), pair.variance())}
        for label, (loc, var) in optima.items():
            rows.append(_row(target, label, pair, loc, var, config, seed))
        _panel(ax, pair, target, fits, optima)
        name = "gaussian" if isinstance(pair, CorrelatedGaussian) else "bimodal"
        folder.save_figure(f"{name}-losses", plots.loss_traces(
            {m: r.losses for m, r in results.items()},
            objectives={m: plots.result_loss_name(r) for m, r in results.items()}, title=target))
    fig.suptitle("mean-field Gaussian q (2-sd ellipses) over the target's density contours")
    fig.tight_layout()
    folder.save_figure("kl-direction", fig)
    table = pd.DataFrame(rows)
    folder.save_table("kl-direction", table)
    save_captions(folder, figures={
        "kl-direction": "Each method's fitted mean-field Gaussian q as a 2-sd ellipse (solid) over the target's "
                        "density contours, with the exact optima dashed: reverse KL shrinks the variances (Gaussian) "
                        "or locks onto one mode (mixture); forward KL keeps the marginal variances and covers both.",
        "gaussian-losses": "Correlated Gaussian target: the loss of each fit per step. The objectives differ, so the "
                           "levels are not comparable across methods; each should flatten.",
        "bimodal-losses": "Bimodal mixture target: the loss of each fit per step (objectives differ; see legend).",
    }, tables={
        "kl-direction": "One row per target and method: fitted means and variances, KL(q||p) and KL(p||q) with "
                        "standard errors (exact for the Gaussian target, Monte Carlo for the mixture)."})
    return _summary(table)


def _summary(table):
    parts = []
    for target, group in table.groupby("target", sort=False):
        by = group.set_index("method")
        parts.append(
            f"{target}: variances of z0 reverse KL {by.var_z0['reverse KL (ELBO)']:.3f}, wake-sleep "
            f"{by.var_z0['forward KL: wake-sleep']:.3f}, score climbing {by.var_z0['forward KL: score climbing']:.3f}, "
            f"fit_to_draws {by.var_z0['fit_to_draws']:.3f} (exact forward-KL optimum "
            f"{by.var_z0['exact forward-KL optimum']:.3f}); KL(p||q) reverse-KL fit "
            f"{by.kl_p_q['reverse KL (ELBO)']:.2f} vs score climbing {by.kl_p_q['forward KL: score climbing']:.2f}"
        )
    return "; ".join(parts) + "."


EXPERIMENT = Experiment(
    name="kl-direction",
    description="Reverse vs forward KL for a mean-field Gaussian on a correlated Gaussian and a bimodal "
    "mixture: fitted q over the target, variances and both KLs against the exact optima.",
    config=Config,
    demo=DEMO,
    run=run,
)
