"""Sweep throughput: a grid of short CPU-bound trials run serially (in this process) and on a local Dask cluster.

    python benchmarks/sweep.py [--seeds 25] [--workers 2] [--out benchmarks/results/sweep.json]

The grid is vi-vs-mcmc at a tiny size (2 targets x 2 guides x ``--seeds`` seeds: 100 trials by default), each a
full trial (fits, NUTS, comparison table, figures, saved results, report.html). Reported: trials per second
serially, on a warm cluster (workers started and torch imported before the clock starts) and cold (the sweep
starting its own LocalCluster, as the CLI does); the speed-up; the scheduling overhead per trial (the cluster's
worker time not spent inside trials: ``(wall * workers - sum of trial seconds) / trials``) and Dask's own cost
per no-op task; and the machine's ceiling (the speed-up of a pure compute loop run on the workers at once
over one after another), before and after the cluster run. The load average before and after is recorded: other work on the machine shows in the numbers.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = {"objectives": "elbo", "steps": 20, "draws": 5, "warmup": 5, "chains": 1, "num_particles": 1,
        "posterior_draws": 50}


def settings_for(steps, draws):
    """The trial's settings: TINY with ``steps`` SVI steps and ``draws`` (= warm-up) NUTS draws."""
    return {**TINY, "steps": steps, "draws": draws, "warmup": draws}


def spec(seeds, settings=TINY):
    return {"experiment": "vi-vs-mcmc", "seeds": list(range(seeds)), "settings": settings,
            "grid": {"target": ["normal-mean", "linear-regression"], "guides": ["normal", "mvn"]}}


def _noop(i):
    return i


def _spin(_):
    """A fixed CPU-bound torch loop on one thread (about 2 s); returns its seconds."""
    import torch

    from vi_toolkit.isolation import threads_limited

    with threads_limited(1):
        x = torch.full((64, 64), 0.5)
        start = time.perf_counter()
        for _ in range(100_000):
            x = torch.tanh(x @ x * 0.01)
        return time.perf_counter() - start


def machine_ceiling(client, workers):
    """Speed-up of the same pure-compute loop on ``workers`` worker processes at once over one after another in
    this process: the most any sweep can get on this machine now (cores shared with other virtual machines
    show here, not in the load average)."""
    serial = sum(_spin(i) for i in range(workers))
    start = time.perf_counter()
    client.gather(client.map(_spin, range(workers), pure=False))
    return serial / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=TINY["steps"], help="SVI steps per fit (more: more CPU-bound)")
    parser.add_argument("--draws", type=int, default=TINY["draws"], help="NUTS draws and warm-up per trial")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep.json"))
    args = parser.parse_args()

    from distributed import Client

    from vi_toolkit.sweep import local_cluster, sweep, warm_worker

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    grid = spec(args.seeds, settings_for(args.steps, args.draws))
    try:
        # warm-up: this process's imports and first-trial costs are not the serial sweep's
        sweep(dict(grid, seeds=[10**6]), out=root / "warm", workers=0, progress=False)

        start = time.perf_counter()
        serial = sweep(grid, out=root / "serial", workers=0, progress=False)
        serial_wall = time.perf_counter() - start
        n = serial.trials
        serial_inside = float(serial.table.drop_duplicates("trial")["trial_seconds"].sum())

        cluster = local_cluster(args.workers)
        with Client(cluster) as client:
            client.run(warm_worker)
            sweep(dict(grid, seeds=[10**6]), out=root / "warm-cluster", client=client, progress=False)
            start = time.perf_counter()
            futures = client.map(_noop, range(1000), pure=False)
            client.gather(futures)
            noop_ms = (time.perf_counter() - start) / 1000 * 1e3
            ceiling_before = machine_ceiling(client, args.workers)
            start = time.perf_counter()
            warm = sweep(grid, out=root / "warm-run", client=client, progress=False)
            warm_wall = time.perf_counter() - start
            ceiling_after = machine_ceiling(client, args.workers)
        cluster.close()
        warm_inside = float(warm.table.drop_duplicates("trial")["trial_seconds"].sum())

        start = time.perf_counter()
        cold = sweep(grid, out=root / "cold-run", workers=args.workers, progress=False)
        cold_wall = time.perf_counter() - start
        assert serial.failed == warm.failed == cold.failed == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    result = {
        "trials": n,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "trial": "vi-vs-mcmc, " + ", ".join(f"{k}={v}" for k, v in settings_for(args.steps, args.draws).items()),
        "serial": {"seconds": serial_wall, "trials_per_second": n / serial_wall,
                   "mean_trial_seconds": serial_inside / n},
        "cluster_warm": {"seconds": warm_wall, "trials_per_second": n / warm_wall,
                         "speedup": serial_wall / warm_wall, "mean_trial_seconds": warm_inside / n,
                         "overhead_ms_per_trial": (warm_wall * args.workers - warm_inside) / n * 1e3},
        "cluster_cold": {"seconds": cold_wall, "trials_per_second": n / cold_wall, "speedup": serial_wall / cold_wall,
                         "includes": "starting and stopping the LocalCluster, torch imported in each worker"},
        "dask_noop_task_ms": noop_ms,
        "machine_ceiling_speedup": {"before": ceiling_before, "after": ceiling_after,
                                    "what": "a pure torch loop on each worker at once vs one after another"},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
