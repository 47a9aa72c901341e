"""`conjugate`: VI and NUTS on the conjugate pairs, checked against the exact posterior and log evidence."""

from dataclasses import dataclass

import pandas as pd

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit import plots
from vi_toolkit.agreement import exact_moments, flatten, moment_agreement
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure, number, sampler_diagnostics, save_captions


@dataclass(frozen=True)
class Config:
    """Settings of `conjugate` (defaults are the full-size run).

    n_obs: observations simulated for each conjugate pair
    n_features: regression coefficients of the linear-regression pair
    guides: autoguide families fitted by VI, one fit each
    steps: upper bound on SVI steps per fit
    lr: Adam step size of the VI fits
    num_particles: Monte Carlo draws per ELBO gradient
    posterior_draws: draws of each result compared (0: its own: all NUTS draws, 4000 fresh VI draws)
    elbo_draws: importance weights for the ELBO of each result with a density
    draws: NUTS draws kept per chain
    warmup: NUTS warm-up (adaptation) steps per chain
    chains: NUTS chains, run in parallel worker processes
    """

    n_obs: int = 100
    n_features: int = 3
    guides: tuple[str, ...] = ("normal", "mvn")
    steps: int = 3000
    lr: float = 0.01
    num_particles: int = 8
    posterior_draws: int = 0  # draws of each result compared (0: its own: all NUTS draws, 4000 fresh VI draws)
    elbo_draws: int = 4000  # importance weights for the ELBO of each result with a density
    draws: int = 1000
    warmup: int = 1000
    chains: int = 2


DEMO = {"n_obs": 50, "steps": 1500, "draws": 500, "warmup": 300}


def _fits(config, pair, args, seed):
    """Every VI guide and NUTS on one pair: label -> result."""
    fits = {
        f"VI {guide}": vt.fit_vi(
            pair.model, guide, *args, steps=config.steps, lr=config.lr, num_particles=config.num_particles, seed=seed
        )
        for guide in config.guides
    }
    fits["NUTS"] = vt.run_mcmc(
        pair.model, *args, draws=config.draws, warmup=config.warmup, chains=config.chains, seed=seed
    )
    return fits


def _row(pair_name, method, result, draws, reference, log_evidence, config, seed):
    agreement = moment_agreement(draws, reference)
    row = {
        "pair": pair_name,
        "method": method,
        "seconds": result.seconds,
        "max_std_mean_error": agreement.std_mean_error.max(),
        "min_sd_ratio": agreement.sd_ratio.min(),
        "max_sd_ratio": agreement.sd_ratio.max(),
        "log_evidence": log_evidence,
    }
    log_w = result.log_weights(config.elbo_draws, seed)
    if log_w is not None:  # an approximation with a density: its ELBO, and the gap KL(q||p)
        row["elbo"] = float(log_w.mean())
        row["gap_kl_q_p"] = log_evidence - row["elbo"]
    row.update(sampler_diagnostics(result))
    return row


def run(config, folder, seed):
    pairs = {
        "normal-mean": (models.get("normal-mean"), {"n": config.n_obs}),
        "linear-regression": (models.get("linear-regression"), {"n": config.n_obs, "d": config.n_features}),
    }
    rows, captions = [], {}
    for name, (pair, size) in pairs.items():
        args = pair.simulate(seed=seed, **size)
        reference = exact_moments(pair.posterior(*args))
        log_evidence = pair.log_evidence(*args)
        fits = _fits(config, pair, args, seed)
        draws = {}
        for method, result in fits.items():
            draws[method] = flatten(result.draws(config.posterior_draws or None, seed))
            rows.append(_row(name, method, result, draws[method], reference, log_evidence, config, seed))
            folder.save_result(f"{name}-{method.replace(' ', '-')}", result)
        folder.save_figure(f"{name}-marginals", plots.marginals(draws, exact=reference))
        folder.save_figure(f"{name}-losses", loss_figure(fits, title=name))
        captions[f"{name}-marginals"] = (
            f"{name} ({size['n']} observations): each method's marginal posterior density of every parameter, "
            "with the exact posterior dashed; a good fit lies on the dashed line.")
        captions[f"{name}-losses"] = (
            f"{name}: the loss of each VI fit per step (faint: raw, solid: smoothed); the y axis is clipped to the "
            "late range, so early losses may lie above it.")
    captions = dict(sorted(captions.items(), key=lambda kv: kv[0].endswith("losses")))  # results first
    table = pd.DataFrame(rows)
    folder.save_table("agreement", table)
    save_captions(folder, figures=captions, tables={
        "agreement": "One row per pair and method: largest standardized mean error and the range of sd ratios "
                     "against the exact posterior, the ELBO and its gap to the exact log evidence (= KL(q||p)), "
                     "and NUTS's R-hat, bulk ESS and divergences."})
    worst = table.groupby("method").max_std_mean_error.max()
    gaps = table.set_index(["pair", "method"]).get("gap_kl_q_p", pd.Series(dtype=float)).dropna()
    return (
        "Largest standardized mean error against the exact posterior: "
        + ", ".join(f"{m} {number(v)}" for m, v in worst.items())
        + ". ELBO gap to the exact log evidence (= KL(q||p)): "
        + ", ".join(f"{p} {m} {number(v)} nats" for (p, m), v in gaps.items())
        + "."
    )


EXPERIMENT = Experiment(
    name="conjugate",
    description="VI (mean-field and full-rank) and NUTS on conjugate Gaussian models with exact posteriors "
    "and evidence: posterior agreement and the ELBO gap, which equals KL(q||p).",
    config=Config,
    demo=DEMO,
    run=run,
)
