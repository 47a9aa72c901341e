"""Validate the Pyro translations of the posteriordb corpus: NUTS (``run_mcmc``) against the reference draws.

    python benchmarks/corpus_nuts.py [NAME ...] [--root FOLDER] [--draws 1000] [--warmup 1000] [--force]
                                     [--init pathfinder|laplace]

A translation is validated when every reference parameter's NUTS mean lies within 0.15 reference sds of the
reference mean and its sd is 0.85-1.15 of the reference sd (posteriordb issue, acceptance 1; 2 x 1000 draws give
a Monte Carlo standard error of about 0.03 sds on the mean and 0.02 on the sd ratio). One JSON per posterior in
``benchmarks/results/corpus_nuts/`` (a posterior already there is skipped unless ``--force``: the run resumes),
and the table of all of them in ``benchmarks/results/corpus_nuts.json``.

``--init pathfinder`` starts each chain at a Pathfinder draw with the inverse mass matrix fixed to Pathfinder's
dense covariance (``run_mcmc(init=...)``; ``--init laplace``: the same from ``fit_vi(model, "laplace")``): still
exact MCMC (any fixed mass matrix leaves the posterior invariant,
and the comparison with the reference draws checks the result), and on posteriors with unstandardized predictors
(correlations near -0.99) far cheaper than NUTS's diagonal adaptation from its default start.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "results" / "corpus_nuts"
MEAN_TOL, SD_RANGE = 0.15, (0.85, 1.15)


def validate(name, root, draws, warmup, seed=0, init=None):
    """One posterior's record: NUTS (started from ``init``: None, "pathfinder" or "laplace") against the
    reference draws, and whether it validates."""
    import vi_toolkit as vt
    from vi_toolkit.models.posteriordb_targets import load_target

    label, pair, args, reference = load_target(name, root=root)
    problem = vt.Problem.of(pair.model, *args)
    t0 = time.perf_counter()
    start = None
    if init == "pathfinder":
        start = vt.pathfinder(problem, seed=seed)
    elif init == "laplace":
        start = vt.fit_vi(problem, "laplace", seed=seed, progress=False)
    mcmc = vt.run_mcmc(problem, draws=draws, warmup=warmup, chains=2, seed=seed, progress=False, init=start)
    row = vt.compare({"nuts": mcmc}, reference).iloc[0]
    record = {
        "posterior": name, "pair": pair.name, "dim": problem.dim,
        "seconds": time.perf_counter() - t0, "draws": draws, "warmup": warmup, "chains": 2, "init": init or "default",
        "divergences": int(mcmc.divergences),
        "grad_evals": int(mcmc.info["grad_evals"]) + (int(start.info.get("grad_evals", 0)) if start else 0),
        "std_mean_error_max": float(row.std_mean_error_max), "sd_ratio_min": float(row.sd_ratio_min),
        "sd_ratio_max": float(row.sd_ratio_max), "w1_max": float(row.w1_max),
    }
    record["validated"] = bool(record["std_mean_error_max"] <= MEAN_TOL
                               and SD_RANGE[0] <= record["sd_ratio_min"] and record["sd_ratio_max"] <= SD_RANGE[1])
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="posteriordb posteriors (default: every translated one)")
    parser.add_argument("--root", default=None, help="posteriordb folder (default: ../shared/data/posteriordb)")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--force", action="store_true", help="re-run posteriors that have a record already")
    parser.add_argument("--init", choices=["pathfinder", "laplace"], default=None,
                        help="start from Pathfinder (or fit_vi's Laplace fit) with its dense covariance as the mass matrix")
    args = parser.parse_args()

    from vi_toolkit import posteriordb
    from vi_toolkit.io import write_json
    from vi_toolkit.models.posteriordb_targets import translations

    root = Path(args.root) if args.root else posteriordb.default_root()
    if root is None:
        sys.exit("no posteriordb folder: pass --root or set $VI_TOOLKIT_POSTERIORDB")
    names = args.names or sorted(n for n in translations() if (root / n).is_dir())
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = OUT / f"{name}.json"
        if path.exists() and not args.force:
            continue
        try:
            record = validate(name, root, args.draws, args.warmup, init=args.init)
        except Exception as exc:  # noqa: BLE001 - a translation that fails is recorded with its error
            record = {"posterior": name, "validated": False, "error": f"{type(exc).__name__}: {exc}"}
        record["load_average"] = os.getloadavg()
        write_json(path, record)
        print(json.dumps({k: v for k, v in record.items() if k != "load_average"}), flush=True)
    records = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    write_json(OUT.parent / "corpus_nuts.json",
                      {"validated": sum(r["validated"] for r in records), "posteriors": len(records),
                       "records": records})
    print(f"{sum(r['validated'] for r in records)} of {len(records)} translations validated by NUTS")


if __name__ == "__main__":
    main()
