"""Breast-cancer logistic regression (31 coefficients, Normal(0, 1) priors): full-rank and mean-field VI against
NUTS, and NUTS itself: plain Pyro against ``vt.run_mcmc`` (sequential, parallel chains, started from VI).

Reference posterior: the pooled draws of every NUTS run (the sequential run once: with the same seed its chains
are the parallel run's, draw for draw, and the JSON records whether they were). Reports wall-clock seconds, min bulk ESS per second,
the full-rank fit's agreement (standardized mean error, sd ratio), the mean-field fit's sd ratios and PSIS
k-hat, and held-out predictive metrics. Writes benchmarks/results/classifier.json and prints a markdown table.

VI: at most ``--steps`` steps of fit_vi's settled schedule at step size ``--lr`` with ``--particles``
vectorized ELBO particles per step (fewer, noisier steps stop later; measured: 3000 steps of 1 particle at
0.01 took ~4 s for the same agreement).

    python benchmarks/classifier.py [--draws 1000] [--warmup 1000] [--init-warmup 200] [--steps 1500]
"""

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit.models.classifier import load
from vi_toolkit import calibration
from vi_toolkit.agreement import flatten, moment_agreement
from vi_toolkit.diagnostics import khat_verdict, psis_khat
from vi_toolkit.io import write_json


def plain_pyro_nuts(model, args, draws, warmup):
    """What users write by hand: one chain of Pyro's NUTS with its defaults."""
    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), num_samples=draws, warmup_steps=warmup, disable_progbar=True)
    start = time.perf_counter()
    mcmc.run(*args)
    seconds = time.perf_counter() - start
    chains = {k: v.detach().numpy()[None] for k, v in mcmc.get_samples().items()}
    return chains, seconds


def min_ess(chains):
    return float(az.ess(az.from_dict(posterior=chains), method="bulk").to_array().min())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--init-warmup", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--particles", type=int, default=8, help="ELBO particles (vectorized) per step")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "classifier.json"))
    opts = parser.parse_args()
    load_before = os.getloadavg()  # 1, 5, 15 minutes: was the machine quiet when the run began?
    warnings.simplefilter("ignore")
    split = load("breast_cancer", 0.25, seed=0)
    pair = models.get("logistic", prior_scale=1.0)
    args = pair.prepare(split.X_train, split.y_train)

    vi = dict(steps=opts.steps, lr=opts.lr, num_particles=opts.particles, progress=False, seed=0)
    fits = {g: vt.fit_vi(pair.model, g, *args, **vi) for g in ("mvn", "normal", "delta")}
    runs = {}
    chains, seconds = plain_pyro_nuts(pair.model, args, opts.draws, opts.warmup)
    runs["plain Pyro NUTS, 1 chain"] = {"chains": chains, "seconds": seconds, "extra": 0.0}
    nuts = dict(draws=opts.draws, seed=0, progress=False)
    for label, options in {
        "vt.run_mcmc, 2 chains sequential": dict(warmup=opts.warmup, parallel=False),
        "vt.run_mcmc, 2 chains parallel": dict(warmup=opts.warmup),
        f"vt.run_mcmc init=VI mvn, warmup {opts.init_warmup}, parallel": dict(warmup=opts.init_warmup, init=fits["mvn"]),
    }.items():
        result = vt.run_mcmc(pair.model, *args, **nuts, **options)
        extra = fits["mvn"].seconds if "init" in options else 0.0
        runs[label] = {"chains": result.chains, "seconds": result.seconds, "extra": extra, "parallel": result.info["parallel"]}

    sequential, parallel = runs["vt.run_mcmc, 2 chains sequential"], runs["vt.run_mcmc, 2 chains parallel"]
    same_chains = all(np.array_equal(sequential["chains"][s], parallel["chains"][s]) for s in ("beta", "intercept"))
    distinct = [r for r in runs.values() if not (same_chains and r is sequential)]  # one seed: the same draws
    pooled = {site: np.concatenate([r["chains"][site].reshape((-1,) + r["chains"][site].shape[2:]) for r in distinct]) for site in ("beta", "intercept")}
    reference = {label: (float(v.mean()), float(v.std(ddof=1))) for label, v in flatten(pooled).items()}
    plain_seconds = runs["plain Pyro NUTS, 1 chain"]["seconds"]
    plain_ess_rate = min_ess(runs["plain Pyro NUTS, 1 chain"]["chains"]) / plain_seconds
    rows = []
    for label, run in runs.items():
        ess = min_ess(run["chains"])
        rows.append({
            "method": label,
            "seconds": run["seconds"] + run["extra"],
            "min_ess_bulk": ess,
            "ess_per_s": ess / (run["seconds"] + run["extra"]),
            "ess_per_s_vs_plain": ess / (run["seconds"] + run["extra"]) / plain_ess_rate,
            "parallel": run.get("parallel"),
            **calibration.metrics(pair.predict_proba({k: v.reshape((-1,) + v.shape[2:]) for k, v in run["chains"].items()}, split.X_test), split.y_test),
        })
    for guide, fit in fits.items():
        draws = fit.draws(4000, seed=0)
        agreement = moment_agreement(flatten(draws), reference)
        row = {
            "method": f"VI {guide}",
            "seconds": fit.seconds,
            "speedup_vs_plain_nuts": plain_seconds / fit.seconds,
            "max_std_mean_error": agreement.std_mean_error.max(),
            "mean_std_mean_error": agreement.std_mean_error.mean(),
            "min_sd_ratio": agreement.sd_ratio.min(),
            "max_sd_ratio": agreement.sd_ratio.max(),
            **calibration.metrics(pair.predict_proba(draws, split.X_test), split.y_test),
        }
        if guide != "delta":
            row["khat"] = psis_khat(fit.log_weights(4000, seed=0))
            row["verdict"] = khat_verdict(row["khat"])
        rows.append(row)
    report = {
        "benchmark": "classifier",
        "draws": opts.draws,
        "warmup": opts.warmup,
        "init_warmup": opts.init_warmup,
        "vi_steps": opts.steps,
        "vi_lr": opts.lr,
        "vi_particles": opts.particles,
        "reference_draws": int(len(pooled["intercept"])),
        "sequential chains equal parallel chains": same_chains,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": platform.machine(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "rows": rows,
    }
    write_json(opts.out, report)
    print(json.dumps(report, indent=1, default=str))
    print("\n| method | seconds | min ESS | ESS/s (x plain) | max / mean std. mean error | sd ratio | k-hat | accuracy | ECE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ess = f"{r['min_ess_bulk']:.0f}" if "min_ess_bulk" in r else ""
        rate = f"{r['ess_per_s']:.1f} ({r['ess_per_s_vs_plain']:.1f}x)" if "ess_per_s" in r else f"{r['speedup_vs_plain_nuts']:.1f}x faster than plain NUTS"
        sme = f"{r['max_std_mean_error']:.3f} / {r['mean_std_mean_error']:.3f}" if "max_std_mean_error" in r else ""
        sd = f"{r['min_sd_ratio']:.2f}-{r['max_sd_ratio']:.2f}" if "min_sd_ratio" in r else ""
        khat = f"{r['khat']:.2f} ({r['verdict'].split(':')[0]})" if "khat" in r else ""
        print(f"| {r['method']} | {r['seconds']:.1f} | {ess} | {rate} | {sme} | {sd} | {khat} | {r['accuracy']:.3f} | {r['ece']:.3f} |")


if __name__ == "__main__":
    main()
