"""Time per SVI step: ``vt.fit_vi`` against a hand-written Pyro ``SVI`` loop (Trace_ELBO, validation on).

Models: Bayesian logistic regression on scikit-learn's breast_cancer (31 coefficients) and a one-latent
Normal model. Every variant runs the same number of steps with the same AutoNormal guide; fit_vi's time
includes its set-up (model checks and JIT compilation). Writes benchmarks/results/engine_overhead.json.

    python benchmarks/engine_overhead.py [--steps 2000] [--repeats 3]
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from sklearn.datasets import load_breast_cancer

import vi_toolkit as vt
from vi_toolkit.io import write_json


def logistic_model(X, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    b0 = pyro.sample("b0", dist.Normal(0.0, 1.0))
    with pyro.plate("data", X.shape[0]):
        pyro.sample("y", dist.Bernoulli(logits=(X * beta).sum(-1) + b0), obs=y)


def one_latent_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def plain_loop(model, args, steps):
    """The loop users write by hand: SVI + Trace_ELBO + Adam, Pyro's validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    svi = SVI(model, AutoNormal(model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    start = time.perf_counter()
    for _ in range(steps):
        svi.step(*args)
    return (time.perf_counter() - start) / steps


def fit_vi_time(model, args, steps, **options):
    schedule = vt.Schedule(early_stop=False)  # all variants run exactly `steps` steps
    result = vt.fit_vi(model, "normal", *args, steps=steps, schedule=schedule, **options)
    return result.seconds / steps, result.info["jit"]


def best_of(repeats, fn):
    values = [fn() for _ in range(repeats)]
    return min(values, key=lambda v: v[0] if isinstance(v, tuple) else v)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "engine_overhead.json"))
    opts = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    cases = {"logistic (breast_cancer)": (logistic_model, breast_cancer()), "one latent": (one_latent_model, (torch.tensor(0.5),))}
    rows = []
    for name, (model, args) in cases.items():
        plain = best_of(opts.repeats, lambda: plain_loop(model, args, opts.steps))
        default, jit_used = best_of(opts.repeats, lambda: fit_vi_time(model, args, opts.steps, progress=False))
        no_jit, _ = best_of(opts.repeats, lambda: fit_vi_time(model, args, opts.steps, progress=False, jit=False))
        with_bar, _ = best_of(opts.repeats, lambda: fit_vi_time(model, args, opts.steps, progress=True))
        rows.append(
            {
                "model": name,
                "plain_loop_ms": 1e3 * plain,
                "fit_vi_ms": 1e3 * default,
                "fit_vi_no_jit_ms": 1e3 * no_jit,
                "fit_vi_progress_ms": 1e3 * with_bar,
                "jit_used": jit_used,
                "speedup_default": plain / default,
                "ratio_default": default / plain,
                "ratio_no_jit": no_jit / plain,
                "progress_cost": with_bar / default - 1.0,
            }
        )
    report = {
        "benchmark": "engine_overhead",
        "steps": opts.steps,
        "repeats": opts.repeats,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": platform.machine(),
        "rows": rows,
        "worst_ratio": max(max(r["ratio_default"], r["ratio_no_jit"]) for r in rows),
    }
    write_json(opts.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
