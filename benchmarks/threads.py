"""Thread policy: a default fit (torch's default thread count, nothing set by the user) against the same fit
with the caller pinned to one thread, on a quiet machine and beside one other CPU-bound process.

Cases: Bayesian logistic regression on breast cancer (the engine benchmark's model; 31 coefficients,
AutoNormal) and a small full-rank fit (AutoMultivariateNormal on a 5-predictor regression written with
``x @ beta``). Each measurement is a fresh Python process (so nothing carries over between variants), timing
``fit_vi`` for a fixed number of steps, best of ``--repeats``. A third variant switches the toolkit's thread
policy off (every fit at torch's default threads) to show what the policy buys. Writes
benchmarks/results/threads.json.

    python benchmarks/threads.py [--steps 1000] [--repeats 3]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import sys, time, warnings
warnings.simplefilter("ignore")
import torch
case, variant, steps, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if variant == "one-thread":
    torch.set_num_threads(1)  # what a user would do by hand
import pyro, pyro.distributions as dist
import vi_toolkit as vt
import vi_toolkit.isolation
if variant == "no-policy":
    vi_toolkit.isolation.SMALL_TENSOR = 0  # every fit at torch's default thread count
from vi_toolkit import models
if case == "logistic":
    from vi_toolkit.models.classifier import load
    split = load("breast_cancer", 0.25, seed=0)
    pair = models.get("logistic")
    model, guide = pair.model, "normal"
    args = (torch.as_tensor(split.X_train, dtype=torch.float32), torch.as_tensor(split.y_train, dtype=torch.float32))
else:
    def model(x, y):
        beta = pyro.sample("beta", dist.Normal(torch.zeros(x.shape[1]), 10.0).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    args = (x, x @ torch.arange(1.0, 6.0) + torch.randn(200, generator=g))
    guide = "mvn"
best = float("inf")
for _ in range(repeats):
    result = vt.fit_vi(model, guide, *args, steps=steps, schedule=vt.Schedule(early_stop=False), progress=False)
    best = min(best, result.seconds / steps)
print(1e3 * best, torch.get_num_threads(), result.info["threads"])
"""

BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def measure(case, variant, steps, repeats):
    out = subprocess.run([sys.executable, "-c", CHILD, case, variant, str(steps), str(repeats)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    ms, threads, fit_threads = out.stdout.split()[-3:]
    return float(ms), int(threads), fit_threads


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "threads.json"))
    opts = parser.parse_args()
    rows = []
    for load in ("quiet", "one busy process"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load != "quiet" else None
        try:
            time.sleep(1.0 if busy else 0.0)
            load_before = os.getloadavg()[0]
            for case in ("logistic", "full-rank"):
                ms = {}
                for variant in ("default", "one-thread", "no-policy"):
                    ms[variant], threads, fit_threads = measure(case, variant, opts.steps, opts.repeats)
                    if variant == "default":
                        default_threads, default_fit_threads = threads, fit_threads
                rows.append({
                    "machine_load": load, "loadavg_1min": load_before, "case": case,
                    "torch_default_threads": default_threads, "fit_threads": default_fit_threads,
                    "default_ms_per_step": ms["default"], "one_thread_ms_per_step": ms["one-thread"],
                    "no_policy_ms_per_step": ms["no-policy"],
                    "default_over_one_thread": ms["default"] / ms["one-thread"],
                    "no_policy_over_one_thread": ms["no-policy"] / ms["one-thread"],
                })
                print(json.dumps(rows[-1]), flush=True)
        finally:
            if busy:
                busy.kill()
                busy.wait()
    report = {"benchmark": "threads", "steps": opts.steps, "repeats": opts.repeats, "cores": os.cpu_count(),
              "machine": platform.machine(), "rows": rows,
              "worst_default_over_one_thread": max(r["default_over_one_thread"] for r in rows)}
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vi_toolkit.io import write_json

    write_json(opts.out, report)
    print("| machine | case | default ms/step | one thread ms/step | default / one thread | policy off / one thread |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['machine_load']} (load {r['loadavg_1min']:.2f}) | {r['case']} | {r['default_ms_per_step']:.2f} | "
              f"{r['one_thread_ms_per_step']:.2f} | {r['default_over_one_thread']:.2f} | "
              f"{r['no_policy_over_one_thread']:.2f} |")


if __name__ == "__main__":
    main()
