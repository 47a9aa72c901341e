"""Gradient evaluations and seconds for Pathfinder, DADVI and batch-and-match to reach default ADVI's accuracy.

    python benchmarks/reach_advi.py [NAME ...] [--root FOLDER] [--seed 0] [--fit-seeds 2] [--draw-seeds 2] [--force]

The methods issue's yardstick, on every NUTS-validated posteriordb posterior (``benchmarks/results/corpus_nuts``):
the worst marginal's 1-Wasserstein distance to the reference draws, in reference sds (``vt.compare``'s
``w1_max``), that ``vt.fit_vi(model, "mvn")`` (full-rank ADVI) reaches at its defaults, and the smallest budget
at which each method reaches it. Budgets (:data:`LADDERS`): batch-and-match's steps (16 draws each),
DADVI's fixed draws, Pathfinder's paths; every method otherwise at its defaults.

Both sides are measured in the same run, so seconds share the machine's load. The distance of a fit is the
mean over ``--fit-seeds`` fits and, for each, over ``--draw-seeds`` sets of 4000 draws. Every method uses the
same draws seeds: the Gaussians' draws are then transforms of the same standard normals, so the difference
between two close fits is theirs more than the draws'.

"Equal or better error" needs a margin, since the distance is a Monte Carlo estimate: a method reaches ADVI at
a budget when its mean distance is at most :data:`MARGIN` times ADVI's there and at every larger budget of its
ladder (a fit that dips under once and comes back up has not reached it); "strict" is the same with no
margin. (The README gives the measured Monte Carlo error that justifies 10%.) The cost is then the mean
gradient evaluations (the Laplace start's included; Pathfinder's count also holds its ELBO and importance
draws, which need no gradient) and seconds of that budget's fits. A posterior where the largest budget does not
reach it counts as not reached: no saving, infinite time (``null`` in the JSON). A posterior where ADVI itself
fails is left out of the medians and named apart. Medians over posteriors are printed and saved.

One JSON per posterior in ``benchmarks/results/reach_advi/`` (a posterior already there with the same seeds is
skipped unless ``--force``: the run resumes), and all of them with the summary in
``benchmarks/results/reach_advi.json``, with the load average; the figure ``reach_advi.png``: per method, each
posterior's ladder as distance over ADVI's against gradient evaluations over ADVI's.
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


def seeds(seed, fits, draws):
    """(fit seeds, draws seeds): ``fits`` and ``draws`` independent seeds from two streams of
    ``numpy.random.SeedSequence(seed)``, so that the draws seeds do not depend on how many fits there are."""
    import numpy as np

    fit_stream, draw_stream = np.random.SeedSequence(seed).spawn(2)
    return tuple([int(child.generate_state(1)[0]) for child in stream.spawn(n)]
                 for stream, n in ((fit_stream, fits), (draw_stream, draws)))


def measure(target, reference, method, options, fit_seeds, draw_seeds):
    """Mean W1 (worst marginal, reference sds) over the fits with ``fit_seeds`` and their draws with
    ``draw_seeds``, mean gradient evaluations and seconds; or the first error, which is recorded (a failing
    method or budget is a result of the benchmark, not the end of it)."""
    import vi_toolkit as vt
    from vi_toolkit.agreement import flatten
    from vi_toolkit.compare import method_draws, standardized_w1

    w1, grad_evals, seconds = [], [], []
    for fit_seed in fit_seeds:
        start = time.perf_counter()
        try:
            fit = vt.run_method(method, target.pair.model, *target.args, seed=fit_seed, **options)
            seconds.append(time.perf_counter() - start)
            grad_evals.append(fit.info["grad_evals"])
            for draw_seed in draw_seeds:
                flat = flatten(method_draws(fit, DRAWS, draw_seed))
                w1.append(max(standardized_w1(flat, *reference).values()))
        except Exception as exc:  # noqa: BLE001 - recorded with its error
            return {**options, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {**options, "w1_max": statistics.fmean(w1), "w1_max_each": w1,
            "grad_evals": statistics.fmean(grad_evals), "seconds": statistics.fmean(seconds)}


def reached(record, method, margin=MARGIN):
    """The first rung of ``method``'s ladder from which on every rung's mean W1 is at most ``margin`` times
    ADVI's (None if none is, or ADVI failed)."""
    if "w1_max" not in record["advi"]:
        return None
    rungs = record["methods"][method]["rungs"]
    for i, rung in enumerate(rungs):
        if all(r.get("w1_max", math.inf) <= margin * record["advi"]["w1_max"] for r in rungs[i:]):
            return rung
    return None


def posterior_record(name, root, fit_seeds, draw_seeds):
    """One posterior: ADVI's mean W1 and cost, and each method's ladder."""
    from vi_toolkit.compare import reference_draws_and_moments
    from vi_toolkit.models.posteriordb_targets import load_target

    target = load_target(name, root=root)
    reference = reference_draws_and_moments(target.reference)
    record = {"posterior": name, "fit_seeds": fit_seeds, "draw_seeds": draw_seeds,
              "advi": measure(target, reference, "mvn", {}, fit_seeds, draw_seeds), "methods": {},
              "load_average": os.getloadavg()}
    for method, (option, budgets) in LADDERS.items():
        record["methods"][method] = {"rungs": [measure(target, reference, method, {option: b}, fit_seeds,
                                                       draw_seeds) for b in budgets]}
    return record


def summary(records, margin=MARGIN):
    """Per method, over the posteriors where ADVI ran: how many it reaches (within ``margin`` times ADVI's W1),
    and the medians of ADVI's gradient evaluations over the method's (0 where not reached) and of the method's
    seconds over ADVI's (None, i.e. infinite, where the median is not reached)."""
    ran = [r for r in records if "w1_max" in r["advi"]]
    out = {"advi_failed": [r["posterior"] for r in records if "w1_max" not in r["advi"]]}
    for method in LADDERS:
        hits = [(reached(r, method, margin), r["advi"]) for r in ran]
        ratios = [advi["grad_evals"] / hit["grad_evals"] if hit else 0.0 for hit, advi in hits]
        times = [hit["seconds"] / advi["seconds"] if hit else math.inf for hit, advi in hits]
        median_time = statistics.median(times) if ran else math.inf
        out[method] = {"posteriors": len(ran), "reached": sum(hit is not None for hit, _ in hits),
                       "median_grad_evals_advi_over_method": statistics.median(ratios) if ran else 0.0,
                       "median_seconds_method_over_advi": None if math.isinf(median_time) else median_time,
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
            hit = reached(r, method)
            if hit:
                ax.plot(hit["grad_evals"] / advi["grad_evals"], hit["w1_max"] / advi["w1_max"], "o", ms=5,
                        color="tab:green" if hit["grad_evals"] * 10 <= advi["grad_evals"] else "tab:orange")
        summary_row = summary(records)[method]
        ratio = summary_row["median_grad_evals_advi_over_method"]
        ax.set_title(f"{method} (budget: {LADDERS[method][0]})\nreached on {summary_row['reached']} of "
                     f"{summary_row['posteriors']}, " + (f"median {ratio:.1f}x" if ratio else "median not reached"),
                     fontsize=9)
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
    fit_seeds, draw_seeds = seeds(args.seed, args.fit_seeds, args.draw_seeds)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.names or validated():
        path = OUT / f"{name}.json"
        if path.exists() and not args.force:
            kept = json.loads(path.read_text(encoding="utf-8"))
            if (kept.get("fit_seeds"), kept.get("draw_seeds")) == (fit_seeds, draw_seeds):
                continue
        record = posterior_record(name, args.root, fit_seeds, draw_seeds)
        write_json(path, record)
        hits = {m: (f"{hit['grad_evals']:.0f} evals" if (hit := reached(record, m)) else "not reached")
                for m in LADDERS}
        print(f"{name}: ADVI W1 {record['advi'].get('w1_max', math.nan):.3f} at "
              f"{record['advi'].get('grad_evals', 0):.0f} evals; {hits}", flush=True)
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(OUT.glob("*.json"))]
    result = {"summary": summary(records), "summary_strict": summary(records, margin=1.0), "margin": MARGIN,
              "ladders": LADDERS, "fit_seeds": fit_seeds, "draw_seeds": draw_seeds, "draws": DRAWS,
              "load_average": [min(r["load_average"][0] for r in records), max(r["load_average"][0] for r in records)],
              "records": records}
    write_json(RESULTS / "reach_advi.json", result)
    figure(records).savefig(RESULTS / "reach_advi.png", dpi=110)
    print(json.dumps({"margin": result["summary"], "strict": result["summary_strict"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
