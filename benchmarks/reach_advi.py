"""Gradient evaluations and seconds for batch-and-match to reach default full-rank ADVI's accuracy, per posterior.

    python benchmarks/reach_advi.py [NAME ...] [--corpus CSV] [--root FOLDER] [--seed 0]

The methods issue's yardstick: for each NUTS-validated posteriordb posterior, the 1-Wasserstein distance (the
worst marginal's, in reference sds) that ``vt.fit_vi(model, "mvn")`` reaches at its defaults (the ``mvn`` rows
of a corpus table, default ``benchmarks/results/corpus/defaults-all-methods.csv``), and the smallest budget at
which ``vt.batch_and_match`` at its defaults reaches it: T in :data:`STEPS` steps, each run with the same seed
(the decaying schedule lambda_t = B D / (t + 1) does not depend on T, so a run of T steps is the first T steps of
a longer one, and the ladder follows one trajectory). Gradient evaluations count the Laplace start's. A
posterior where even the largest budget does not reach ADVI's distance counts as not reached (infinite cost);
the medians over posteriors are printed. JSON to ``benchmarks/results/reach_advi.json``, with the load average.
"""

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).parent / "results" / "reach_advi.json"
CORPUS = Path(__file__).parent / "results" / "corpus" / "defaults-all-methods.csv"
STEPS = (10, 25, 50, 100, 200)


def ladder(name, root, seed, target_w1):
    """One posterior: batch-and-match's W1, gradient evaluations and seconds at each budget of :data:`STEPS`,
    and the first budget whose W1 is at most ``target_w1`` (None if none is)."""
    import vi_toolkit as vt
    from vi_toolkit.models.posteriordb_targets import load_target

    target = load_target(name, root=root)
    rungs = []
    for steps in STEPS:
        start = time.perf_counter()
        try:
            fit = vt.batch_and_match(target.pair.model, *target.args, steps=steps, seed=seed)
            w1 = float(vt.compare({"bam": fit}, target.reference, seed=seed).iloc[0].w1_max)
            rungs.append({"steps": steps, "w1_max": w1, "grad_evals": fit.grad_evals,
                          "seconds": time.perf_counter() - start})
        except Exception as exc:  # noqa: BLE001 - a failing budget is recorded with its error
            rungs.append({"steps": steps, "error": f"{type(exc).__name__}: {exc}"[:200]})
    reached = next((r for r in rungs if r.get("w1_max", math.inf) <= target_w1), None)
    return {"posterior": name, "advi_w1_max": target_w1, "rungs": rungs, "reached": reached}


def main():
    import pandas as pd

    from vi_toolkit.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="posteriordb posteriors (default: every mvn row of the table)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="corpus table with the mvn rows")
    parser.add_argument("--root", default=None, help="posteriordb folder (default: the toolkit's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = pd.read_csv(args.corpus, keep_default_na=False, na_values=[""])
    advi = table[(table.method == "mvn") & table.w1_max.notna()].set_index("posterior")
    names = args.names or list(advi.index)
    load_before = os.getloadavg()
    rows = []
    for name in names:
        rows.append(ladder(name, args.root, args.seed, float(advi.loc[name, "w1_max"])))
        reached = rows[-1]["reached"]
        print(f"{name}: ADVI W1 {rows[-1]['advi_w1_max']:.3f}, "
              + (f"reached at {reached['steps']} steps, {reached['grad_evals']} gradient evaluations "
                 f"(ADVI: {advi.loc[name, 'grad_evals']:.0f})" if reached else "not reached"), flush=True)
    # not reached: no saving (ratio 0) and infinite seconds; ADVI's seconds are the corpus run's (another load)
    ratios = [advi.loc[r["posterior"], "grad_evals"] / r["reached"]["grad_evals"] if r["reached"] else 0.0
              for r in rows]
    seconds = [r["reached"]["seconds"] / advi.loc[r["posterior"], "seconds"] if r["reached"] else math.inf
               for r in rows]
    summary = {"posteriors": len(rows), "reached": sum(r["reached"] is not None for r in rows),
               "median_grad_evals_ratio_advi_over_bam": float(statistics.median(ratios)),
               "median_seconds_ratio_bam_over_advi": float(statistics.median(seconds))}
    write_json(OUT, {"summary": summary, "rows": rows, "steps": STEPS, "seed": args.seed,
                     "load_before": load_before, "load_after": os.getloadavg()})
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
