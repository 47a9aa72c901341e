"""DADVI and batch-and-match against full-rank ADVI on posteriordb posteriors: accuracy per gradient evaluation.

    python benchmarks/new_methods.py [NAME ...] [--root FOLDER] [--seed 0]

For each posterior (posteriordb's reference draws as the gold standard) fits ``vt.dadvi`` (30 fixed draws, LRVB
covariance), ``vt.dadvi(..., lrvb=False)`` (its mean-field fit), ``vt.batch_and_match`` (defaults: B = 16,
200 steps, lambda_t = B D / (t + 1); and with a constant lambda = 1e4, the one setting tried after the default
failed on sblri-blr; and at the default schedule started from DADVI's LRVB fit, ``init=dadvi.gaussian()``,
its gradients counted with DADVI's) and ``vt.fit_vi(model, "mvn")`` (defaults), and records per method the
log-density gradient evaluations (per draw: DADVI's M per gradient or Hessian-vector product, BaM's B per step,
ADVI's one per step), seconds, and ``vt.compare``'s standardized mean error, sd ratios and 1-Wasserstein
distance (``w1_max``: the worst marginal, in reference sds; 4000 draws of each fit). One seed; the machine's
load average is recorded with the timings. JSON to ``benchmarks/results/new_methods.json``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "results" / "new_methods.json"
POSTERIORS = ["sblri-blr", "eight_schools-eight_schools_noncentered", "earnings-earn_height",
              "kidiq-kidscore_momhsiq", "mesquite-logmesquite_logvolume", "arK-arK"]


def fits(problem, seed):
    """method -> (result, gradient evaluations) of every method on ``problem``."""
    import vi_toolkit as vt

    dadvi = vt.dadvi(problem, seed=seed)
    mean_field = vt.dadvi(problem, seed=seed, lrvb=False)
    bam = vt.batch_and_match(problem, seed=seed)
    bam_constant = vt.batch_and_match(problem, learning_rate=1e4, decay=False, seed=seed)
    bam_from_dadvi = vt.batch_and_match(problem, init=dadvi.gaussian(), seed=seed)
    advi = vt.fit_vi(problem, "mvn", seed=seed, progress=False)
    return {"dadvi (LRVB)": (dadvi, dadvi.grad_evals), "dadvi (mean-field)": (mean_field, mean_field.grad_evals),
            "batch-and-match": (bam, bam.grad_evals),
            "batch-and-match (constant lambda 1e4)": (bam_constant, bam_constant.grad_evals),
            "batch-and-match from DADVI": (bam_from_dadvi, dadvi.grad_evals + bam_from_dadvi.grad_evals),
            "advi mvn": (advi, len(advi.losses))}


def benchmark(name, root, seed):
    """One posterior's rows: one per method."""
    import vi_toolkit as vt
    from vi_toolkit.models.posteriordb_targets import load_target

    _, pair, args, reference = load_target(name, root=root)
    problem = vt.Problem.of(pair.model, *args)
    rows = []
    for method, (result, grad_evals) in fits(problem, seed).items():
        row = vt.compare({method: result}, reference, draws=4000, seed=seed).iloc[0]
        rows.append({
            "posterior": name, "dim": problem.dim, "method": method, "grad_evals": int(grad_evals),
            "seconds": float(result.seconds), "w1_max": float(row.w1_max),
            "std_mean_error_max": float(row.std_mean_error_max), "sd_ratio_min": float(row.sd_ratio_min),
            "sd_ratio_max": float(row.sd_ratio_max), "khat": float(row.khat),
            "converged": result.info.get("converged"), "load_average": os.getloadavg()[0],
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=POSTERIORS, help="posteriordb posteriors")
    parser.add_argument("--root", default=None, help="posteriordb folder (default: the toolkit's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from vi_toolkit.io import write_json

    rows = []
    for name in args.names:
        try:
            rows += benchmark(name, args.root, args.seed)
        except Exception as exc:  # noqa: BLE001 - a posterior that fails is recorded with its error
            rows.append({"posterior": name, "error": f"{type(exc).__name__}: {exc}"})
            print(json.dumps(rows[-1]), flush=True)
    write_json(OUT, {"seed": args.seed, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "rows": rows})


if __name__ == "__main__":
    main()
