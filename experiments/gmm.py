"""`gmm`: Gaussian mixtures by collapsed mean-field VI, VI with local factors (elbo-enum), NUTS and CAVI.

Components of every method are ordered by the first coordinate of their mean (see
:mod:`vi_toolkit.models.gmm_posterior`), so the draws, marginals and ellipses of all methods refer to the same
labels. Every method's result is a posterior (draws, InferenceData, losses where it has them), analysed alike.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse
from sklearn.metrics import adjusted_rand_score

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit import plots
from vi_toolkit.agreement import flatten
from vi_toolkit.errors import ConfigError
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure, save_captions
from vi_toolkit.models.gmm_cavi import fit_cavi
from vi_toolkit.models.gmm_posterior import assignments, label_ordered_summary, log_predictive_density, ordered_draws
from vi_toolkit.models.gmm_restarts import fit_restarts

DATASETS = ("synthetic", "iris")


@dataclass(frozen=True)
class Config:
    """Settings of `gmm` (defaults are the full-size run).

    dataset: synthetic (known truth) or iris (standardized, species as truth)
    K: mixture components
    D: dimension of the synthetic data (iris has D=4)
    n: synthetic training points (iris: 100 of its 150 flowers train, 50 are held out)
    n_test: synthetic held-out points
    separation: synthetic: distance of the true means from the origin
    scale: synthetic: sd of each component in every coordinate
    steps: upper bound on SVI steps per VI fit
    lr: Adam step size of the VI fits
    restarts: VI and CAVI restarts (the best fit is kept)
    posterior_draws: draws of each result (0: its own: all NUTS draws, 4000 fresh VI/CAVI draws)
    nuts: run NUTS as well
    nuts_from_vi: start NUTS from the collapsed VI fit (point and mass matrix)
    draws: NUTS draws kept per chain
    warmup: NUTS warm-up (adaptation) steps per chain
    chains: NUTS chains, run in parallel worker processes
    save_results: save results/<method>/ for every method (saving a VI result takes seconds)
    """

    dataset: str = "synthetic"  # "synthetic" (known truth) or "iris" (standardized, species as truth)
    K: int = 3
    D: int = 2  # synthetic only; iris has D=4
    n: int = 1000  # synthetic training points (iris: 100 of its 150 flowers train, 50 are held out)
    n_test: int = 1000  # synthetic held-out points
    separation: float = 6.0  # synthetic: distance of the true means from the origin
    scale: float = 1.0  # synthetic: sd of each component in every coordinate
    steps: int = 2000
    lr: float = 0.05
    restarts: int = 3
    posterior_draws: int = 0  # draws of each result (0: its own: all NUTS draws, 4000 fresh VI/CAVI draws)
    nuts: bool = True
    nuts_from_vi: bool = True  # start NUTS from the collapsed VI fit (see vt.run_mcmc's init)
    draws: int = 500
    warmup: int = 500
    chains: int = 2
    save_results: bool = True  # results/<method>/ for every method (saving a VI result takes seconds: its ELBO)


DEMO = {
    "n": 120, "n_test": 300, "steps": 300, "restarts": 1, "draws": 60, "warmup": 60,
    "save_results": False,
}


def _data(config, seed):
    """(x_train, x_test, z_test, true_locs or None), x as float tensors."""
    if config.dataset == "synthetic":
        pair = models.get("gmm", K=config.K, D=config.D)
        x, z, locs = pair.simulate(
            seed=seed, n=config.n + config.n_test, separation=config.separation, scale=config.scale
        )
        return x[: config.n], x[config.n :], z[config.n :].numpy(), locs.numpy()
    if config.dataset == "iris":
        from sklearn.datasets import load_iris

        iris = load_iris()
        x = torch.tensor(iris.data, dtype=torch.get_default_dtype())
        x = (x - x.mean(0)) / x.std(0)
        order = np.random.default_rng(seed).permutation(len(x))
        train, test = order[:100], order[100:]
        return x[train], x[test], iris.target[test], None
    raise ConfigError(f"gmm: dataset must be one of {DATASETS}, got {config.dataset!r}")


def _fits(config, x, seed):
    """label -> result (a posterior) for each method."""
    collapsed = models.get("gmm", K=config.K)
    local = models.get("gmm-meanfield", K=config.K)
    fit = dict(steps=config.steps, lr=config.lr, restarts=config.restarts, seed=seed, progress=False)
    fits = {"VI": fit_restarts(collapsed, x, **fit), "VI local": fit_restarts(local, x, **fit)}
    if config.nuts:
        # from the VI fit (draws as starting points, its covariance as the mass matrix): NUTS stays exact, and
        # on overlapping clusters (iris) a start from the prior wandered for minutes in 1000-step trees
        fits["NUTS"] = vt.run_mcmc(
            collapsed.model, x, draws=config.draws, warmup=config.warmup, chains=config.chains, seed=seed,
            progress=False, init=fits["VI"] if config.nuts_from_vi else None,
        )
    fits["CAVI"] = fit_cavi(collapsed, x, seed=seed, restarts=config.restarts)
    return fits


_COMPONENT_COLOURS = ("#008080", "#b8860b", "#c71585", "#556b2f", "#4682b4", "#a0522d")  # not method colours


def _ellipses(x, means, truth):
    """One panel per method (D >= 2): the data (first two coordinates) and each component's posterior mean as a
    2-sd ellipse of its diagonal covariance; true means as black crosses; one legend for the figure."""
    fig = Figure(figsize=(3.6 * len(means), 4.3))
    axes = fig.subplots(1, len(means), squeeze=False)
    for ax, (method, m) in zip(axes[0], means.items()):
        ax.scatter(x[:, 0], x[:, 1], s=4, color="0.6")
        for k in range(m["locs"].shape[0]):
            colour = _COMPONENT_COLOURS[k % len(_COMPONENT_COLOURS)]
            centre, sd = m["locs"][k, :2], m["scales"][k, :2]
            ax.add_patch(Ellipse(centre, 4 * sd[0], 4 * sd[1], fill=False, color=colour, linewidth=2))
            ax.plot(*centre, "o", color=colour)
        if truth is not None:
            ax.plot(truth[:, 0], truth[:, 1], "kx", markersize=9)
        ax.set_title(method, color=plots.method_colour(method))
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    k_max = max(m["locs"].shape[0] for m in means.values())
    handles = [Line2D([], [], marker="o", linestyle="", markersize=3, color="0.6", label="training data")]
    handles += [Line2D([], [], marker="o", color=_COMPONENT_COLOURS[k % len(_COMPONENT_COLOURS)], linewidth=2,
                       label=f"component {k + 1}: posterior mean, 2-sd ellipse") for k in range(k_max)]
    if truth is not None:
        handles.append(Line2D([], [], marker="x", linestyle="", color="k", markersize=8, label="true mean"))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False, fontsize=8)
    return fig


def run(config, folder, seed):
    x, x_test, z_test, truth = _data(config, seed)
    fits = _fits(config, x, seed)
    rows, draws, means = [], {}, {}
    for method, result in fits.items():
        ordered = ordered_draws(result, config.posterior_draws or None, seed)
        means[method] = {k: v.mean(0) for k, v in ordered.items()}
        draws[method] = flatten(ordered)
        row = {
            "method": method,
            "heldout_lpd_per_point": float(log_predictive_density(ordered, x_test).mean()),
            "adjusted_rand_index": adjusted_rand_score(z_test, assignments(ordered, x_test)),
            "seconds": sum(result.info.get("restart_seconds", [result.seconds])),  # restarted fits: all restarts
        }
        if truth is not None and config.K == len(truth):
            row["max_mean_error"] = float(np.abs(means[method]["locs"] - truth[truth[:, 0].argsort()]).max())
        divergences = getattr(result, "divergences", None)
        if divergences is not None:  # a sampler: its chains' diagnostics, label-ordered
            summary = label_ordered_summary(result)
            row.update(max_r_hat=summary.r_hat.max(), min_ess_bulk=summary.ess_bulk.min(), divergences=divergences)
        if config.save_results:
            folder.save_result(method.replace(" ", "-"), result)
        rows.append(row)
    table = pd.DataFrame(rows)
    folder.save_table("gmm", table)
    if x.shape[1] > 1:
        folder.save_figure("components", _ellipses(x.numpy(), means, truth))
    folder.save_figure("marginals", plots.marginals(draws, max_panels=30))  # every parameter (iris: 27)
    folder.save_figure("losses", loss_figure(fits))
    save_captions(folder, figures={
        "components": f"{config.dataset} data (first two coordinates) with each method's posterior mean of every "
                      "component and its 2-sd ellipse; components are ordered by their first coordinate in every "
                      "method, so a colour is the same component in every panel.",
        "marginals": "Marginal posterior density of every component parameter under each method (label-ordered "
                     "draws).",
        "losses": "Loss of each VI fit per step (faint: raw, solid: smoothed); restarted fits show the kept one.",
    }, tables={
        "gmm": "One row per method: held-out log predictive density per point, adjusted Rand index of the held-out "
               "assignments, largest error of the component means (synthetic data), seconds (all restarts) and "
               "NUTS's R-hat, ESS and divergences."})
    best = table.heldout_lpd_per_point.max()
    return (
        f"{config.dataset} (K={config.K}, {len(x)} training / {len(x_test)} held-out points). Held-out log density "
        "per point, gap to the best method: "
        + ", ".join(f"{r.method} {r.heldout_lpd_per_point - best:+.4f}" for r in table.itertuples())
        + ". Adjusted Rand index: "
        + ", ".join(f"{r.method} {r.adjusted_rand_index:.3f}" for r in table.itertuples())
        + "."
    )


EXPERIMENT = Experiment(
    name="gmm",
    description="Gaussian mixtures: collapsed mean-field VI, VI with local factors q(z_n) (elbo-enum), NUTS and "
    "scikit-learn's CAVI on synthetic data with known truth or iris; held-out density, ARI, label-ordered draws.",
    config=Config,
    demo=DEMO,
    run=run,
)
