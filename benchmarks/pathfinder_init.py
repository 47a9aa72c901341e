"""NUTS started from Pathfinder against NUTS from its default start, on ill-conditioned regressions.

    python benchmarks/pathfinder_init.py [NAME ...] [--draws 500] [--warmup 500] [--init-warmup 150] [--paths 4]

Per target (posteriordb translations with unstandardized predictors; a synthetic unstandardized regression
where the corpus is absent): multi-path Pathfinder; ``run_mcmc`` from its default start (``--warmup`` steps of
full adaptation) and ``run_mcmc(init=pathfinder)`` (chains start at Pathfinder draws, the mass matrix is their
covariance, ``--init-warmup`` steps adapt the step size). Reported: divergences (after warm-up, and during it:
``info["warmup_divergences"]``), min over parameters of ArviZ's
bulk ESS, ESS per second (the init run's seconds include Pathfinder's), leapfrog steps (``info["grad_evals"]``).
Then Pathfinder against full-rank Gaussian VI (``fit_vi(..., "mvn")``): log-density gradient evaluations and
the largest 1-Wasserstein distance to the reference draws over parameters (``vt.compare``, in reference sds).
One JSON record per target in ``benchmarks/results/pathfinder_init/`` (a target already there is skipped
unless ``--force``) and all of them in ``benchmarks/results/pathfinder_init.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "results" / "pathfinder_init"
TARGETS = ("kidiq-kidscore_momhsiq", "earnings-earn_height", "sblri-blr")


def synthetic(seed=0, n=200):
    """A regression y ~ N(a + b x, sigma) with x of mean 50 and sd 10 (unstandardized: corr(a, b) ~ -0.99), and
    reference draws from a long NUTS run."""
    import pyro
    import pyro.distributions as dist
    import torch

    import vi_toolkit as vt

    g = torch.Generator().manual_seed(seed)
    x = 50 + 10 * torch.randn(n, generator=g)
    y = 3.0 + 0.5 * x + 2.0 * torch.randn(n, generator=g)

    def model(x, y):
        beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
        pyro.sample("y", dist.Normal(beta[0] + beta[1] * x, sigma).to_event(1), obs=y)

    reference = vt.run_mcmc(model, x, y, draws=5000, warmup=2000, chains=2, seed=seed + 1, progress=False)
    return "synthetic-regression", model, (x, y), reference


def min_ess(result):
    """The smallest bulk ESS over all parameters (ArviZ ``az.ess``) of an MCMCResult's chains."""
    import arviz as az

    ess = az.ess(az.convert_to_dataset({name: value for name, value in result.chains.items()}))
    return float(min(float(ess[name].min()) for name in ess.data_vars))


def measure(name, args):
    import vi_toolkit as vt
    from vi_toolkit.models.posteriordb_targets import load_target

    if name == "synthetic-regression":
        label, model, data, reference = synthetic()
    else:
        label, pair, data, reference = load_target(name)
        model = pair.model
    problem = vt.Problem.of(model, *data)
    record = {"target": label, "dim": problem.dim, "load_average_start": os.getloadavg()}

    pf = vt.pathfinder(problem, num_paths=args.paths, seed=0)
    record["pathfinder"] = {"seconds": pf.seconds, "grad_evals": pf.info["grad_evals"],
                            "lbfgs_evals": pf.info["lbfgs_evals"], "khat": pf.info["khat"], "num_paths": args.paths}
    runs = {
        "default": dict(warmup=args.warmup),
        "pathfinder_init": dict(warmup=args.init_warmup, init=pf),
    }
    for key, options in runs.items():
        result = vt.run_mcmc(problem, draws=args.draws, chains=2, seed=0, progress=False, **options)
        seconds = result.seconds + (pf.seconds if key == "pathfinder_init" else 0.0)
        ess = min_ess(result)
        row = vt.compare({key: result}, reference).iloc[0]
        record[key] = {"warmup": options["warmup"], "draws": args.draws, "chains": 2, "seconds": seconds,
                       "divergences": int(result.divergences),
                       "warmup_divergences": int(result.info["warmup_divergences"]),
                       "min_ess_bulk": ess, "ess_per_second": ess / seconds,
                       "grad_evals": result.info["grad_evals"], "w1_max": float(row.w1_max)}
        print(label, key, json.dumps(record[key]), flush=True)

    vi = vt.fit_vi(problem, "mvn", progress=False, seed=0)
    table = vt.compare({"pathfinder": pf, "mvn": vi}, reference).set_index("method")
    vi_evals = vi.info.get("grad_evals", vi.info["steps_run"] * vi.info["num_particles"])
    record["vs_mvn"] = {
        "pathfinder": {"grad_evals": pf.info["grad_evals"], "lbfgs_evals": pf.info["lbfgs_evals"], "seconds": pf.seconds,
                       "w1_max": float(table.loc["pathfinder", "w1_max"])},
        "mvn": {"grad_evals": int(vi_evals), "seconds": vi.seconds, "w1_max": float(table.loc["mvn", "w1_max"])},
    }
    record["load_average_end"] = os.getloadavg()
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"targets (default: {', '.join(TARGETS)}; synthetic-regression "
                                                 "where the corpus lacks them)")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--init-warmup", type=int, default=150)
    parser.add_argument("--paths", type=int, default=4)
    parser.add_argument("--force", action="store_true", help="re-run targets that have a record already")
    args = parser.parse_args()

    from vi_toolkit import posteriordb
    from vi_toolkit.io import write_json

    root = posteriordb.default_root()
    names = args.names or [n for n in TARGETS if root is not None and (root / n).is_dir()] or ["synthetic-regression"]
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = OUT / f"{name}.json"
        if path.exists() and not args.force:
            continue
        record = measure(name, args)
        write_json(path, record)
        print(json.dumps(record), flush=True)
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    write_json(OUT.parent / "pathfinder_init.json", {"settings": vars(args), "records": records})


if __name__ == "__main__":
    main()
