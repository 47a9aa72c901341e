"""Sequential against parallel NUTS chains: ``vt.run_mcmc`` on the breast-cancer logistic regression (31
coefficients, Normal(0, 1) priors), 2 chains, same seed, timed end to end (the call, as a user waits for it).

Three runs in one process, in this order: sequential (``parallel=False``), parallel on a cold pool (the workers
start and import torch and Pyro inside the timed call) and parallel on the warm pool the previous call left.
torch keeps its default thread count (the model is small, so each chain runs on one thread either way). The
load average is recorded before and after each run, and so is what two processes at once get done on the
machine at that moment (two copies of a pure-Python loop against one): parallel chains can be no faster than
that allows, and the machine's other work slows the runs it overlaps.
Writes benchmarks/results/chains.json and prints a markdown table.

    python benchmarks/chains.py [--draws 500] [--warmup 500] [--seed 0]
"""

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pyro
import torch

from vi_toolkit import models, workers
import vi_toolkit as vt
from vi_toolkit.io import write_json
from vi_toolkit.models.classifier import load


BUSY = "import time; t = time.perf_counter(); x = sum(i * i for i in range(20_000_000)); print(time.perf_counter() - t)"


def machine_parallelism():
    """What two processes get done at once on this machine, now: the time of a pure-Python loop run alone over
    its time when two copies run at the same time, times 2 (2.0: two free cores; 1.0: one core's worth)."""
    import subprocess
    import sys

    def run(copies):
        procs = [subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True) for _ in range(copies)]
        return max(float(p.communicate()[0]) for p in procs)

    alone, together = run(1), run(2)
    return {"alone_seconds": alone, "two_at_once_seconds": together, "throughput_of_two": 2 * alone / together}


def timed(label, pair, args, options, parallel):
    load_before = os.getloadavg()
    start = time.perf_counter()
    result = vt.run_mcmc(pair.model, *args, parallel=parallel, **options)
    seconds = time.perf_counter() - start
    row = {
        "run": label,
        "seconds": seconds,
        "result_seconds": result.seconds,
        "parallel": result.info["parallel"],
        "sequential_because": result.info.get("sequential_because"),
        "jit": result.info["jit"],
        "divergences": result.divergences,
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
    }
    print(f"{label}: {seconds:.1f} s (parallel={row['parallel']}), load {load_before[0]:.2f} -> {row['load_average_after'][0]:.2f}",
          flush=True)
    return row, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "chains.json"))
    opts = parser.parse_args()
    load_start = os.getloadavg()
    warnings.simplefilter("ignore")
    split = load("breast_cancer", 0.25, seed=0)
    pair = models.get("logistic", prior_scale=1.0)
    args = pair.prepare(split.X_train, split.y_train)
    options = dict(draws=opts.draws, warmup=opts.warmup, chains=2, seed=opts.seed, progress=False)

    before = machine_parallelism()
    print(f"machine: two processes at once do {before['throughput_of_two']:.2f}x the work of one", flush=True)
    workers.shutdown()  # a cold pool for the first parallel run (none has been started in this process anyway)
    rows, results = [], {}
    for label, parallel in (("sequential", False), ("parallel, cold pool", True), ("parallel, warm pool", True)):
        row, results[label] = timed(label, pair, args, options, parallel)
        rows.append(row)
    sequential = results["sequential"]
    for row in rows:
        row["speedup_vs_sequential"] = rows[0]["seconds"] / row["seconds"]
        row["same_draws_as_sequential"] = all(
            np.array_equal(results[row["run"]].chains[site], sequential.chains[site]) for site in sequential.chains
        )
    report = {
        "benchmark": "chains",
        "model": "logistic (breast_cancer, 75% train split, prior_scale 1)",
        "draws": opts.draws,
        "warmup": opts.warmup,
        "chains": 2,
        "seed": opts.seed,
        "cores": workers.cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": platform.machine(),
        "load_average_before": list(load_start),
        "load_average_after": list(os.getloadavg()),
        "machine_parallelism_before": before,
        "machine_parallelism_after": machine_parallelism(),
        "rows": rows,
    }
    write_json(opts.out, report)
    print(json.dumps(report, indent=1, default=str))
    print(f"\n{opts.draws} + {opts.warmup} draws x 2 chains, {workers.cores()} cores, torch threads "
          f"{torch.get_num_threads()}; two processes at once did {before['throughput_of_two']:.2f}x (before) and "
          f"{report['machine_parallelism_after']['throughput_of_two']:.2f}x (after) the work of one\n")
    print("| run | seconds (end to end) | speed-up vs sequential | same draws as sequential | load average before -> after (1 min) |")
    print("|---|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['speedup_vs_sequential']:.2f}x | {r['same_draws_as_sequential']} | "
              f"{r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f} |")


if __name__ == "__main__":
    main()
