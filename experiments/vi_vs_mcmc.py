"""`vi-vs-mcmc`: every guide family and objective against NUTS and a gold-standard reference posterior.

The target is a posteriordb posterior (its reference draws) or a registered pair with an exact posterior, as
:func:`vi_toolkit.models.posteriordb_targets.load_target` reads it. Every fit, NUTS included, is compared with
the reference by :func:`vi_toolkit.compare` and drawn the same way (``result.draws(n, seed)``). The reference's
draws, each fit and each fit's draws run on independent random streams (:func:`streams`).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

import vi_toolkit as vt
from vi_toolkit import plots, posteriordb
from vi_toolkit.agreement import exact_moments, flatten
from vi_toolkit.compare import reference_draws_and_moments
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure, save_captions
from vi_toolkit.models.posteriordb_targets import load_target

AUTO = "auto"  # eight schools from posteriordb where the data is present, else the conjugate linear regression
FALLBACK = "linear-regression"
POSTERIORDB_DEFAULT = "eight_schools-eight_schools_noncentered"


@dataclass(frozen=True)
class Config:
    """Settings of `vi-vs-mcmc` (defaults are the full-size run).

    target: posteriordb posterior name or a model pair with an exact posterior; auto picks eight schools or the conjugate regression
    guides: autoguide families fitted by VI (each with every objective)
    objectives: VI objectives (elbo, renyi, forward-kl, ...), each fitted with every guide
    steps: upper bound on SVI steps per fit
    lr: Adam step size of the VI fits
    num_particles: Monte Carlo draws per gradient
    posterior_draws: draws of each result compared (0: its own: all NUTS draws, 4000 fresh VI draws)
    draws: NUTS draws kept per chain
    warmup: NUTS warm-up (adaptation) steps per chain
    chains: NUTS chains, run in parallel worker processes
    """

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
        "chains": 2}


def streams(seed, labels):
    """label -> a seed of its own for each of ``labels``, from ``numpy.random.SeedSequence(seed).spawn``: the
    reference's draws, each fit and each fit's draws run on independent streams (one shared seed would make
    VI draws and the reference's draw-by-draw correlated and understate the 1-Wasserstein distance)."""
    children = np.random.SeedSequence(seed).spawn(len(labels))
    return {label: int(child.generate_state(1)[0]) for label, child in zip(labels, children)}


def _fits(config, pair, args, seeds):
    fits = {}
    for guide in config.guides:
        for objective in config.objectives:
            label = f"VI {guide} {objective}"
            fits[label] = vt.fit_vi(
                pair.model, guide, *args, objective=objective, steps=config.steps, lr=config.lr,
                num_particles=config.num_particles, seed=seeds[f"fit {label}"], progress=False,
            )
    fits["NUTS"] = vt.run_mcmc(
        pair.model, *args, draws=config.draws, warmup=config.warmup, chains=config.chains,
        seed=seeds["fit NUTS"], progress=False,
    )
    return fits


def _compare(fits, reference, n, seeds):
    """``vt.compare`` on independent streams: the reference's draws (an exact posterior's 4000, or posteriordb's
    as they are) on their own seed, each method's draws and importance weights on another."""
    ref_draws, ref_moments = reference_draws_and_moments(reference, seed=seeds["reference"])
    ref = ref_draws if ref_draws is not None else ref_moments  # fixed draws: compare draws nothing more for them
    return pd.concat([vt.compare({m: r}, ref, draws=n, seed=seeds[f"draws {m}"]) for m, r in fits.items()],
                     ignore_index=True)


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
    for method, values in draws.items():
        ax.scatter(values[x][:max_points], values[y][:max_points], s=4, alpha=0.4, color=plots.method_colour(method),
                   label=method)
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
    methods = [f"VI {g} {o}" for g in config.guides for o in config.objectives] + ["NUTS"]
    seeds = streams(seed, ["reference"] + [f"{kind} {m}" for m in methods for kind in ("fit", "draws")])
    fits = _fits(config, pair, args, seeds)
    n = config.posterior_draws or None
    table = _compare(fits, reference, n, seeds)
    table.insert(0, "target", label)
    folder.save_table("comparison", table)
    ref_draws, exact = reference_for_plots(reference)
    labels = list(ref_draws if ref_draws is not None else exact)
    draws = {"reference": ref_draws} if ref_draws is not None else {}
    for method, result in fits.items():
        flat = flatten(result.draws(n, seeds[f"draws {method}"]))
        draws[method] = {p: flat[p] for p in labels}  # the reference's parameters only
        folder.save_result(method.replace(" ", "-"), result)
    folder.save_figure("marginals", plots.marginals(draws, exact=exact))
    captions = {"marginals": f"{label}: each method's marginal posterior density of every parameter against the "
                + ("reference draws (dark grey)." if exact is None else "exact posterior (dashed).")}
    if len(labels) > 1:
        x, y = ("mu", "tau") if {"mu", "tau"} <= set(labels) else labels[:2]
        folder.save_figure(f"pair-{x}-{y}", pair_plot(draws, x, y))
        captions[f"pair-{x}-{y}"] = (f"Joint draws of {x} and {y} per method (up to 800 each); a funnel that a "
                                     "method does not reach is posterior mass it misses.")
    folder.save_figure("losses", loss_figure(fits))
    captions["losses"] = ("Loss of each VI fit per step (faint: raw, solid: smoothed), labelled by what its "
                          "objective minimizes; the y axis is clipped to the late range.")
    save_captions(folder, figures=captions, tables={
        "comparison": "One row per method against the reference: standardized mean error, sd ratio, 1-Wasserstein "
                      "distance per parameter (max), ELBO and PSIS k-hat with its verdict. Each method's draws, "
                      "each fit and the reference's draws use independent random streams."})
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
