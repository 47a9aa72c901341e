"""`conjugate`: VI and NUTS on the conjugate pairs, checked against the exact posterior and log evidence."""

from dataclasses import dataclass

import pandas as pd

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit import plots
from vi_toolkit.agreement import exact_moments, flatten, moment_agreement
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import loss_figure, sampler_diagnostics


@dataclass(frozen=True)
class Config:
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
    rows = []
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
        folder.save_figure(f"{name}-losses", loss_figure(fits))
    table = pd.DataFrame(rows)
    folder.save_table("agreement", table)
    worst = table.groupby("method").max_std_mean_error.max()
    gaps = table.set_index(["pair", "method"]).get("gap_kl_q_p", pd.Series(dtype=float)).dropna()
    return (
        "Largest standardized mean error against the exact posterior: "
        + ", ".join(f"{m} {v:.3f}" for m, v in worst.items())
        + ". ELBO gap to the exact log evidence (= KL(q||p)): "
        + ", ".join(f"{p} {m} {v:.3f} nats" for (p, m), v in gaps.items())
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
