"""`classifier`: Bayesian logistic regression by mean-field, full-rank and MAP fits against NUTS: predictive
metrics on a held-out split, posterior agreement with NUTS, PSIS k-hat, reliability diagrams."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit.models.classifier import load
from vi_toolkit import calibration, plots
from vi_toolkit.agreement import flatten, moment_agreement
from vi_toolkit.diagnostics import khat_verdict, psis_khat
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure, sampler_diagnostics, save_captions


@dataclass(frozen=True)
class Config:
    """Settings of `classifier` (defaults are the full-size run).

    dataset: scikit-learn data set (breast_cancer, ...)
    test_fraction: share of the data held out for the predictive metrics
    prior_scale: sd of the Gaussian prior on the coefficients
    hierarchical: learn the prior scale (a hierarchical prior)
    guides: autoguide families fitted by VI (delta: MAP)
    steps: upper bound on SVI steps per fit
    lr: Adam step size of the VI fits
    posterior_draws: draws of each result (0: its own: all NUTS draws, 4000 fresh VI draws)
    khat_draws: importance draws behind each PSIS k-hat
    nuts: run NUTS as well
    nuts_init: fitted guide NUTS starts from (point and mass matrix); empty for none
    draws: NUTS draws kept per chain
    warmup: NUTS warm-up (adaptation) steps per chain
    chains: NUTS chains, run in parallel worker processes
    """

    dataset: str = "breast_cancer"
    test_fraction: float = 0.25
    prior_scale: float = 1.0
    hierarchical: bool = False
    guides: tuple[str, ...] = ("normal", "mvn", "delta")
    steps: int = 3000
    lr: float = 0.01
    posterior_draws: int = 0  # draws of each result (0: its own: all NUTS draws, 4000 fresh VI draws)
    khat_draws: int = 2000
    nuts: bool = True
    nuts_init: str = "mvn"  # a fitted guide to start NUTS from (initial point and mass matrix); "" for none
    draws: int = 1000
    warmup: int = 1000
    chains: int = 2

    def __post_init__(self):
        if self.nuts and self.nuts_init and self.nuts_init not in self.guides:
            raise vt.ConfigError(f"nuts_init={self.nuts_init!r} is not one of the fitted guides {self.guides}; "
                                 "add it to guides or set nuts_init to an empty string")


DEMO = {"steps": 1500, "posterior_draws": 2000, "khat_draws": 1000, "draws": 300, "warmup": 150}


def sd_scatter(draws, reference, methods):
    """Posterior sd of each coefficient under each VI method against NUTS's sd, with the identity line."""
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    ref = np.array([sd for _, sd in reference.values()])
    for method in methods:
        sds = np.array([np.std(draws[method][label], ddof=1) for label in reference])
        ax.scatter(ref, sds, s=14, color=plots.method_colour(method), label=method)
    top = 1.1 * max(ref.max(), max(np.std(v, ddof=1) for m in methods for v in draws[m].values()))
    ax.plot([0, top], [0, top], "k--", linewidth=1, label="equal to NUTS")
    ax.set_xlabel("NUTS posterior sd")
    ax.set_ylabel("VI posterior sd")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _method_coloured(fig, methods):
    """A one-panel-per-method figure with each panel's lines and markers (not the black diagonal) in its
    method's colour, the one colour per method of every figure (``plots.method_colour``)."""
    for ax, method in zip(fig.axes, methods):
        colour = plots.method_colour(method)
        for line in ax.get_lines():
            if line.get_linestyle() != "--":
                line.set_color(colour)
        for points in ax.collections:
            points.set_color(colour)
    return fig


def run(config, folder, seed):
    split = load(config.dataset, config.test_fraction, seed)
    pair = models.get(
        "logistic", n_classes=split.n_classes, prior_scale=config.prior_scale, hierarchical=config.hierarchical
    )
    X, y = pair.prepare(split.X_train, split.y_train)
    fits = {
        f"VI {g}": vt.fit_vi(pair.model, g, X, y, steps=config.steps, lr=config.lr, seed=seed) for g in config.guides
    }
    if config.nuts:
        start = fits[f"VI {config.nuts_init}"] if config.nuts_init else None
        fits["NUTS"] = vt.run_mcmc(
            pair.model, X, y, draws=config.draws, warmup=config.warmup, chains=config.chains, seed=seed, init=start
        )
    draws = {m: r.draws(config.posterior_draws or None, seed) for m, r in fits.items()}
    flat = {m: flatten(d) for m, d in draws.items()}
    reference = None
    if "NUTS" in fits:
        reference = {label: (float(np.mean(v)), float(np.std(v, ddof=1))) for label, v in flat["NUTS"].items()}
    rows, predictions = [], {}
    for method, result in fits.items():
        predictions[method] = pair.predict_proba(draws[method], split.X_test)
        row = {"method": method, "seconds": result.seconds, **calibration.metrics(predictions[method], split.y_test)}
        if reference is not None and method != "NUTS":
            agreement = moment_agreement(flat[method], reference)
            row.update(max_std_mean_error=agreement.std_mean_error.max(), mean_std_mean_error=agreement.std_mean_error.mean(),
                       min_sd_ratio=agreement.sd_ratio.min(), max_sd_ratio=agreement.sd_ratio.max())  # 0: a point mass
        log_w = result.log_weights(config.khat_draws, seed)
        if log_w is not None:  # an approximation with a density (not NUTS, not a point mass)
            row["khat"] = psis_khat(log_w)
            row["verdict"] = khat_verdict(row["khat"])
        row.update(sampler_diagnostics(result))
        rows.append(row)
        folder.save_result(method.replace(" ", "-"), result)
    table = pd.DataFrame(rows)
    folder.save_table("metrics", table)
    folder.save_figure("reliability", _method_coloured(calibration.reliability_diagram(predictions, split.y_test),
                                                       list(predictions)))
    folder.save_figure("losses", loss_figure(fits))
    shown = list(flat[next(iter(flat))])[:3] + ["intercept" if split.n_classes == 2 else "intercept[0]"]
    marginal_methods = [m for m in fits if m != "VI delta"]
    folder.save_figure("marginals", plots.marginals(
        {m: {p: flat[m][p] for p in shown} for m in marginal_methods},
        note=f"{len(shown)} of {len(flat[next(iter(flat))])} coefficients shown: the first three and the intercept"))
    if reference is not None:
        vi_methods = [m for m in ("VI normal", "VI mvn") if m in fits]
        if vi_methods:
            folder.save_figure("sd-scatter", sd_scatter(flat, reference, vi_methods))
    save_captions(folder, figures={
        "reliability": "Reliability diagram on the held-out split: predicted probability against the observed "
                       "frequency per bin; on the diagonal is calibrated.",
        "marginals": "Marginal posterior densities of three coefficients and the intercept under each method "
                     "(the MAP point mass is left out).",
        "sd-scatter": "Posterior sd of every coefficient under mean-field and full-rank VI against NUTS's; below "
                      "the dashed identity line VI is overconfident.",
        "losses": "Loss of each fit per step: negative ELBO for VI, negative log joint for MAP (a delta guide).",
    }, tables={
        "metrics": "One row per method on the held-out split: accuracy, log loss, Brier score, expected "
                   "calibration error; agreement with NUTS (standardized mean error, sd ratio); PSIS k-hat."})
    parts = [
        f"{r['method']}: accuracy {r['accuracy']:.3f}, ECE {r['ece']:.3f}"
        + (f", sd ratio {r['min_sd_ratio']:.2f}-{r['max_sd_ratio']:.2f}" if "min_sd_ratio" in r and pd.notna(r.get("min_sd_ratio")) else "")
        + (f", k-hat {r['khat']:.2f} ({r['verdict'].split(':')[0]})" if pd.notna(r.get("khat", np.nan)) else "")
        for r in rows
    ]
    return f"Logistic regression on {config.dataset} ({X.shape[1] + 1} coefficients per class): " + "; ".join(parts) + "."


EXPERIMENT = Experiment(
    name="classifier",
    description="Bayesian logistic regression (breast cancer by default): mean-field, full-rank and MAP fits "
    "against NUTS; accuracy, log loss, Brier score, calibration error, agreement with NUTS and PSIS k-hat.",
    config=Config,
    demo=DEMO,
    run=run,
)
