"""`vi-vs-mcmc`: every guide family and objective against NUTS and a gold-standard reference posterior.

The target is a posteriordb posterior (its reference draws) or a registered pair with an exact posterior, as
:func:`vi_toolkit.models.posteriordb_targets.load_target` reads it. Every fit, NUTS included, is compared with
the reference by :func:`vi_toolkit.compare` and drawn the same way (``result.draws(n, seed)``).
"""

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

import vi_toolkit as vt
from vi_toolkit import plots, posteriordb
from vi_toolkit.agreement import exact_moments, flatten
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure
from vi_toolkit.models.posteriordb_targets import load_target

AUTO = "auto"  # eight schools from posteriordb where the data is present, else the conjugate linear regression
FALLBACK = "linear-regression"
POSTERIORDB_DEFAULT = "eight_schools-eight_schools_noncentered"


@dataclass(frozen=True)
class Config:
    target: str = AUTO
    guides: tuple[str, ...] = ("normal", "mvn", "iaf")
    objectives: tuple[str, ...] = ("elbo", "renyi", "forward-kl")
    steps: int = 4000
    lr: float = 0.01
    num_particles: int = 8
    posterior_draws: int = 0  # draws of each result compared (0: its own: all NUTS draws, 4000 fresh VI draws)
    draws: int = 1000
    warmup: int = 1000
    chains: int = 2


DEMO = {"guides": ("normal", "mvn"), "objectives": ("elbo",), "steps": 1000, "draws": 300, "warmup": 250,
        "chains": 1}


def _fits(config, pair, args, seed):
    fits = {}
    for guide in config.guides:
        for objective in config.objectives:
            fits[f"VI {guide} {objective}"] = vt.fit_vi(
                pair.model, guide, *args, objective=objective, steps=config.steps, lr=config.lr,
                num_particles=config.num_particles, seed=seed, progress=False,
            )
    fits["NUTS"] = vt.run_mcmc(
        pair.model, *args, draws=config.draws, warmup=config.warmup, chains=config.chains, seed=seed, progress=False
    )
    return fits


def reference_for_plots(reference):
    """(label -> reference draws or None, label -> exact (mean, sd) or None) for the figures: posteriordb's
    draws as they are; an exact posterior (site -> torch Distribution) as its exact marginal moments."""
    if all(isinstance(d, torch.distributions.Distribution) for d in reference.values()):
        return None, exact_moments(reference)
    return {label: np.asarray(v, dtype=float) for label, v in reference.items()}, None


def pair_plot(draws, x, y, max_points=800):
    """Scatter of parameters ``x`` and ``y``: one colour per method (reference first)."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    for k, (method, values) in enumerate(draws.items()):
        ax.scatter(values[x][:max_points], values[y][:max_points], s=4, alpha=0.4, color=f"C{k % 10}", label=method)
    if all(np.min(values[y]) > 0 for values in draws.values()):
        ax.set_yscale("log")  # a scale parameter: its funnel shows on a log axis
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    return fig


def run(config, folder, seed):
    target = config.target
    if target == AUTO:
        target = POSTERIORDB_DEFAULT if posteriordb.default_root() else FALLBACK
    label, pair, args, reference = load_target(target)
    fits = _fits(config, pair, args, seed)
    n = config.posterior_draws or None
    table = vt.compare(fits, reference, draws=n, seed=seed)
    table.insert(0, "target", label)
    folder.save_table("comparison", table)
    ref_draws, exact = reference_for_plots(reference)
    labels = list(ref_draws if ref_draws is not None else exact)
    draws = {"reference": ref_draws} if ref_draws is not None else {}
    for method, result in fits.items():
        flat = flatten(result.draws(n, seed))
        draws[method] = {p: flat[p] for p in labels}  # the reference's parameters only
        folder.save_result(method.replace(" ", "-"), result)
    folder.save_figure("marginals", plots.marginals(draws, exact=exact))
    if len(labels) > 1:
        x, y = ("mu", "tau") if {"mu", "tau"} <= set(labels) else labels[:2]
        folder.save_figure(f"pair-{x}-{y}", pair_plot(draws, x, y))
    folder.save_figure("losses", loss_figure(fits))
    rows = table.set_index("method")
    return (
        f"{label}: largest standardized mean error against the reference: "
        + ", ".join(f"{m} {v:.2f}" for m, v in rows.std_mean_error_max.items())
        + "; sd ratio range: "
        + ", ".join(f"{m} {a:.2f}-{b:.2f}" for m, a, b in zip(rows.index, rows.sd_ratio_min, rows.sd_ratio_max))
        + ". PSIS k-hat: "
        + ", ".join(f"{m} {k:.2f} ({v.split(':')[0]})" for m, k, v in zip(rows.index, rows.khat, rows.verdict)
                    if isinstance(v, str) and v)
        + "."
    )


EXPERIMENT = Experiment(
    name="vi-vs-mcmc",
    description="Every guide family and objective against NUTS and a gold-standard reference posterior "
    "(posteriordb reference draws, or an exact posterior): standardized mean error, sd ratio, 1-Wasserstein, "
    "ELBO and the PSIS k-hat verdict per fit. target=auto: eight schools (posteriordb) if present, else the "
    "conjugate linear regression.",
    config=Config,
    demo=DEMO,
    run=run,
)
