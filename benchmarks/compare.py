"""VI against NUTS on the posteriordb posteriors, both against posteriordb's gold-standard reference draws.

For each posterior and guide family: seconds, standardized mean error (max and mean over parameters), sd
ratio range, 1-Wasserstein (max, in reference sds) and the PSIS k-hat with its verdict; for NUTS (the peer,
same run): seconds, the same agreement columns, divergences and bulk ESS per second (min over parameters).
Writes benchmarks/results/compare.json and prints a markdown table.

    python benchmarks/compare.py [--steps 5000] [--draws 1000] [--warmup 1000] [--chains 2]
"""

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vi_toolkit as vt  # noqa: E402
from vi_toolkit.compare import compare  # noqa: E402
from vi_toolkit.io import write_json  # noqa: E402
from vi_toolkit.models.posteriordb_targets import load_target  # noqa: E402

POSTERIORS = ["eight_schools-eight_schools_noncentered", "sblri-blr", "low_dim_gauss_mix-low_dim_gauss_mix"]
GUIDES = ["normal", "mvn", "iaf", "pair"]  # "pair": the pair's own hand-written guide


def run_one(name, opts):
    label, pair, args, reference = load_target(name)
    fits = {}
    for guide in opts.guides:
        fits[f"VI {guide}"] = vt.fit_vi(
            pair.model, pair.guide if guide == "pair" else guide, *args, steps=opts.steps, lr=opts.lr,
            num_particles=opts.num_particles, seed=opts.seed, progress=False,
        )
    nuts = vt.run_mcmc(pair.model, *args, draws=opts.draws, warmup=opts.warmup, chains=opts.chains,
                       seed=opts.seed, progress=False)
    fits["NUTS"] = nuts
    # 10,000 draws and weights per VI fit: k-hat from 4,000 weights spreads by ~0.1
    table = compare(fits, reference, draws=10_000, seed=opts.seed)
    summary = nuts.summary()
    nuts_row = table.method == "NUTS"
    table.loc[nuts_row, "divergences"] = nuts.divergences
    table.loc[nuts_row, "ess_bulk_min"] = summary.ess_bulk.min()
    table.loc[nuts_row, "ess_per_second"] = summary.ess_bulk.min() / nuts.seconds
    table.insert(0, "posterior", label)
    return table


def _fmt(value, spec):
    """``value`` formatted, or blank where missing (None or NaN)."""
    return "" if value is None or value != value else format(value, spec)


def markdown(rows):
    lines = [
        "| posterior | method | seconds | max std. mean error | sd ratio range | max W1 (sds) | k-hat | verdict "
        "| ESS/s |",
        "|---|---|---:|---:|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['posterior'].split('-')[0]} | {r['method']} | {r['seconds']:.1f} | {r['std_mean_error_max']:.3f} | "
            f"{r['sd_ratio_min']:.2f}-{r['sd_ratio_max']:.2f} | {r['w1_max']:.3f} | {_fmt(r['khat'], '.2f')} | "
            f"{(r['verdict'] or '').split(':')[0]} | {_fmt(r.get('ess_per_second'), '.0f')} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posteriors", nargs="+", default=POSTERIORS)
    parser.add_argument("--guides", nargs="+", default=GUIDES)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--num-particles", type=int, default=8)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "compare.json"))
    opts = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    for name in opts.posteriors:  # fit_vi and run_mcmc choose their own thread count (one for these models)
        table = run_one(name, opts)
        rows += json.loads(table.to_json(orient="records"))
        print(table.to_string(), flush=True)
    nuts = [r for r in rows if r["method"] == "NUTS"]
    record = {
        "machine": platform.platform(),
        "settings": vars(opts),
        "rows": rows,
        "nuts_within_0.1_sd_everywhere": all(r["std_mean_error_max"] < 0.1 for r in nuts),
    }
    write_json(opts.out, record)
    print(markdown(rows))
    within = record["nuts_within_0.1_sd_everywhere"]
    print(f"\nNUTS within 0.1 reference sds of every reference mean on all posteriors: {within}")


if __name__ == "__main__":
    main()
