"""Gradient evaluations and seconds for Pathfinder, DADVI and batch-and-match to reach default ADVI's accuracy.

    python benchmarks/reach_advi.py [NAME ...] [--root FOLDER] [--fit-seeds 2] [--draw-seeds 2] [--force]

The methods issue's yardstick, on every NUTS-validated posteriordb posterior (``benchmarks/results/corpus_nuts``):
the worst marginal's 1-Wasserstein distance to the reference draws, in reference sds (``vt.compare``'s
``w1_max``), that ``vt.fit_vi(model, "mvn")`` (full-rank ADVI) reaches at its defaults, and the smallest budget
at which each method reaches it. Budgets (:data:`LADDERS`): batch-and-match's steps (16 draws each),
DADVI's fixed draws, Pathfinder's paths; every method otherwise at its defaults.

Both sides are measured in the same run, so seconds share the machine's load. The distance of a fit is the
mean over ``--fit-seeds`` fits and, for each, over ``--draw-seeds`` sets of 4000 draws. Every method uses the
same draws seeds: the Gaussians' draws are then transforms of the same standard normals, so the difference
between two close fits is theirs more than the draws'.

"Equal or better error" needs a margin, since the distance is a Monte Carlo estimate: over the 34 posteriors
(2 x 2 replicates), ADVI's own replicates spread by a median 6% of their mean (interquartile range 4-13%), and
the standard error of a method's mean distance minus ADVI's was a median 6.5% of ADVI's (batch-and-match,
every budget). On nes1976 batch-and-match's means at 10-200 steps were 0.042-0.050 against ADVI's 0.044. So a
method reaches ADVI at a budget when its mean distance is at most :data:`MARGIN` times ADVI's there and at
every larger budget of its ladder (a fit that dips under once and comes back up has not reached it);
``reached_strict`` is the same with no margin. The cost is then the mean gradient evaluations (the Laplace start's included) and
seconds of that budget's fits. A posterior where the largest budget does not reach it counts as not reached:
no saving, infinite time. Medians over posteriors are printed and saved.

One JSON per posterior in ``benchmarks/results/reach_advi/`` (a posterior already there is skipped unless
``--force``: the run resumes), and all of them with the summary in ``benchmarks/results/reach_advi.json``, with
the load average; the figure ``reach_advi.png``: per method, each posterior's ladder as distance over ADVI's
against gradient evaluations over ADVI's.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "reach_advi"
VALIDATION = RESULTS / "corpus_nuts"
LADDERS = {  # method -> (budget option, budgets)
    "batch-match": ("steps", (10, 25, 50, 100, 200)),
    "dadvi": ("num_draws", (30, 100)),
    "pathfinder": ("num_paths", (1, 4)),
}
DRAWS = 4000
MARGIN = 1.1  # "equal error": at most 10% above ADVI's mean distance, ~1.5 standard errors (module docstring)


def validated(folder=VALIDATION):
    """The posteriors whose Pyro translation NUTS validated, from the records of ``benchmarks/corpus_nuts.py``."""
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))]
    return [r["posterior"] for r in records if r["validated"]]


def seeds(seed, n):
    """``n`` independent seeds from ``numpy.random.SeedSequence(seed)``."""
    import numpy as np

    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(n)]


def measure(target, method, options, fit_seeds, draw_seeds):
    """Mean W1 (worst marginal, reference sds) over the fits with ``fit_seeds`` and their draws with
    ``draw_seeds``, mean gradient evaluations and seconds; or the first error."""
    import vi_toolkit as vt
    from vi_toolkit.agreement import flatten
    from vi_toolkit.compare import method_draws, reference_draws_and_moments, standardized_w1

    ref_draws, ref_moments = reference_draws_and_moments(target.reference)
    w1, grad_evals, seconds = [], [], []
    for fit_seed in fit_seeds:
        start = time.perf_counter()
        try:
            fit = vt.run_method(method, target.pair.model, *target.args, seed=fit_seed, **options)
        except vt.VIToolkitError as exc:
            return {**options, "error": f"{type(exc).__name__}: {exc}"[:200]}
        seconds.append(time.perf_counter() - start)
        grad_evals.append(fit.info["grad_evals"])
        for draw_seed in draw_seeds:
            flat = flatten(method_draws(fit, DRAWS, draw_seed))
            w1.append(max(standardized_w1(flat, ref_draws, ref_moments).values()))
    return {**options, "w1_max": statistics.fmean(w1), "w1_max_each": w1,
            "grad_evals": statistics.fmean(grad_evals), "seconds": statistics.fmean(seconds)}


def reached(rungs, target_w1):
    """The first rung from which on every rung's mean W1 is at most ``target_w1`` (None if none is)."""
    for i, rung in enumerate(rungs):
        if all(r.get("w1_max", math.inf) <= target_w1 for r in rungs[i:]):
            return rung
    return None


def posterior_record(name, root, fit_seeds, draw_seeds):
    """One posterior: ADVI's mean W1 and cost, and each method's ladder and the rung where it reaches ADVI."""
    from vi_toolkit.models.posteriordb_targets import load_target

    target = load_target(name, root=root)
    advi = measure(target, "mvn", {}, fit_seeds, draw_seeds)
    record = {"posterior": name, "advi": advi, "methods": {}, "load_average": os.getloadavg()}
    for method, (option, budgets) in LADDERS.items():
        rungs = [measure(target, method, {option: b}, fit_seeds, draw_seeds) for b in budgets]
        target_w1 = advi.get("w1_max", -math.inf)
        record["methods"][method] = {"rungs": rungs, "reached": reached(rungs, MARGIN * target_w1),
                                     "reached_strict": reached(rungs, target_w1)}
    return record


def summary(records, criterion="reached"):
    """Per method: posteriors reached (``criterion``: "reached" or "reached_strict"), and the medians over
    posteriors of ADVI's gradient evaluations over the method's (0 where not reached) and of the method's
    seconds over ADVI's (infinite where not reached)."""
    out = {}
    for method in LADDERS:
        hits = [(r["methods"][method][criterion], r["advi"]) for r in records]
        ratios = [advi["grad_evals"] / hit["grad_evals"] if hit else 0.0 for hit, advi in hits]
        times = [hit["seconds"] / advi["seconds"] if hit else math.inf for hit, advi in hits]
        out[method] = {"posteriors": len(records), "reached": sum(hit is not None for hit, _ in hits),
                       "median_grad_evals_advi_over_method": statistics.median(ratios),
                       "median_seconds_method_over_advi": statistics.median(times),
                       "reached_at_10x_fewer_grad_evals": sum(x >= 10 for x in ratios)}
    return out


def figure(records):
    """One panel per method: each posterior's ladder, W1 / ADVI's W1 against gradient evaluations / ADVI's (log
    axes), with the target region (10x fewer evaluations, W1 within :data:`MARGIN`) shaded and the rung where
    the method reaches ADVI marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(13, 4.6))
    axes = fig.subplots(1, len(LADDERS))
    for ax, method in zip(axes, LADDERS):
        ax.fill_between([1e-3, 0.1], 1e-3, MARGIN, color="0.88", zorder=0)
        ax.axhline(MARGIN, color="0.4", lw=0.8, ls="--")
        ax.axvline(0.1, color="0.4", lw=0.8, ls=":")
        for r in records:
            advi = r["advi"]
            rungs = [x for x in r["methods"][method]["rungs"] if "w1_max" in x]
            if not rungs or "w1_max" not in advi:
                continue
            x = [g["grad_evals"] / advi["grad_evals"] for g in rungs]
            y = [g["w1_max"] / advi["w1_max"] for g in rungs]
            ax.plot(x, y, color="tab:blue", alpha=0.35, lw=1, marker="o", ms=2.5)
            hit = r["methods"][method]["reached"]
            if hit:
                ax.plot(hit["grad_evals"] / advi["grad_evals"], hit["w1_max"] / advi["w1_max"], "o", ms=5,
                        color="tab:green" if hit["grad_evals"] * 10 <= advi["grad_evals"] else "tab:orange")
        summary_row = summary(records)[method]
        ratio = summary_row["median_grad_evals_advi_over_method"]
        ax.set_title(f"{method} ({LADDERS[method][0]}): reached on {summary_row['reached']} of {len(records)}, "
                     f"median {ratio:.1f}x" if ratio else f"{method}: reached on {summary_row['reached']} of "
                     f"{len(records)}, median not reached", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.008, 6)
        ax.set_ylim(0.4, None)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".lstrip("0.")[0] in "25" else ""))
        ax.set_xlabel("gradient evaluations / ADVI's")
        ax.set_ylabel("max 1-Wasserstein / ADVI's")
    fig.suptitle("Reaching default full-rank ADVI: each line one posterior's budget ladder; shaded: the target "
                 "(10x fewer evaluations, distance within 1.1x ADVI's)\ndots: where the method reaches ADVI "
                 "for good (green: with 10x fewer evaluations or more)", fontsize=9)
    fig.tight_layout()
    return fig


def main():
    from vi_toolkit.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="posteriordb posteriors (default: every NUTS-validated one)")
    parser.add_argument("--root", default=None, help="posteriordb folder (default: the toolkit's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-seeds", type=int, default=2)
    parser.add_argument("--draw-seeds", type=int, default=2)
    parser.add_argument("--force", action="store_true", help="re-run posteriors that have a record already")
    args = parser.parse_args()
    streams = seeds(args.seed, args.fit_seeds + args.draw_seeds)
    fit_seeds, draw_seeds = streams[:args.fit_seeds], streams[args.fit_seeds:]
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or validated():
        path = OUT / f"{name}.json"
        if path.exists() and not args.force:
            continue
        record = posterior_record(name, args.root, fit_seeds, draw_seeds)
        write_json(path, record)
        hits = {m: (f"{r['reached']['grad_evals']:.0f} evals" if r["reached"] else "not reached")
                for m, r in record["methods"].items()}
        print(f"{name}: ADVI W1 {record['advi'].get('w1_max', math.nan):.3f} at {record['advi'].get('grad_evals', 0):.0f} "
              f"evals; {hits}", flush=True)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(OUT.glob("*.json"))]
    result = {"summary": summary(records), "summary_strict": summary(records, "reached_strict"), "margin": MARGIN,
              "ladders": LADDERS, "fit_seeds": fit_seeds, "draw_seeds": draw_seeds,
              "draws": DRAWS, "records": records}
    write_json(RESULTS / "reach_advi.json", result)
    figure(records).savefig(RESULTS / "reach_advi.png", dpi=110)
    print(json.dumps({"margin": result["summary"], "strict": result["summary_strict"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
