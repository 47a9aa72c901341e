"""How often each verdict of ``vi_toolkit.diagnostics.fit_verdict`` falls on Gaussian q's of known error.

The posterior p is N(0, I_d) (or a correlated Gaussian); q is a Gaussian of known mean shift and sd ratio, so
its error against p is exact: a fit is bad when some parameter's mean is more than 0.3 posterior sds off or its
sd ratio is outside 0.7-1.3. Per case and seed: S draws of q, log w = log p - log q (float32, as the toolkit's
weights are), the verdict. Writes benchmarks/results/verdicts.json and prints a markdown table.

    python benchmarks/verdicts.py [--seeds 20] [--draws 4000]
"""

import argparse
import json
import platform
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vi_toolkit.diagnostics import LEVELS, fit_verdict  # noqa: E402
from vi_toolkit.io import write_json  # noqa: E402


def gaussian_case(label, dim, shift=0.0, ratio=1.0, coordinates="all", correlation=0.0, jitter=0.0):
    """A case: p = N(0, Sigma) (unit variances, equicorrelation ``correlation``), q = N(m, diag(s^2)) with m and
    s from ``shift`` (posterior sds) and ``ratio`` (q sd over the mean-field optimum's, which is p's sd when
    uncorrelated) on ``coordinates`` ("all" or "one"); ``jitter``: per seed, an extra N(0, jitter^2) on every
    mean (in sds) and log sd (an SVI fit's noise)."""
    return {"label": label, "dim": dim, "shift": shift, "ratio": ratio, "coordinates": coordinates,
            "correlation": correlation, "jitter": jitter}


def run_case(case, seed, draws):
    d = case["dim"]
    gen = torch.Generator().manual_seed(seed)
    cov = torch.full((d, d), case["correlation"], dtype=torch.float64) + (1 - case["correlation"]) * torch.eye(
        d, dtype=torch.float64)
    p = torch.distributions.MultivariateNormal(torch.zeros(d, dtype=torch.float64), cov)
    base_sd = 1 / torch.linalg.inv(cov).diagonal().sqrt()  # the reverse-KL mean-field optimum's sds
    chosen = torch.ones(d, dtype=torch.bool) if case["coordinates"] == "all" else torch.arange(d) == 0
    loc = torch.where(chosen, torch.tensor(case["shift"], dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    sd = base_sd * torch.where(chosen, torch.tensor(case["ratio"], dtype=torch.float64),
                               torch.tensor(1.0, dtype=torch.float64))
    if case["jitter"]:
        loc = loc + case["jitter"] * torch.randn(d, generator=gen, dtype=torch.float64)
        sd = sd * torch.exp(case["jitter"] * torch.randn(d, generator=gen, dtype=torch.float64))
    z = loc + sd * torch.randn(draws, d, generator=gen, dtype=torch.float64)
    log_q = torch.distributions.Normal(loc, sd).log_prob(z).sum(-1)
    log_w = (p.log_prob(z) - 25.0 - log_q).float()  # log p(x) = -25, rounded to float32 like the toolkit's
    verdict = fit_verdict(log_w, {"z": z.numpy()})
    bad = bool((loc.abs() > 0.3).any() or ((sd < 0.7) | (sd > 1.3)).any())  # p's marginal sds are 1
    return verdict, bad


CASES = (
    [gaussian_case(f"exact {d}-D", d) for d in (1, 10)]
    + [gaussian_case(f"near-exact {d}-D (jitter {j})", d, jitter=j) for j in (0.02, 0.05) for d in (1, 10, 50)]
    + [gaussian_case(f"sd x{r} {d}-D", d, ratio=r) for d in (1, 10) for r in
       (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0, 3.0)]
    + [gaussian_case(f"sd x{r} one of 10", 10, ratio=r, coordinates="one") for r in (0.6, 0.7, 0.8, 1.2, 1.3, 1.5)]
    + [gaussian_case(f"shift {m} {d}-D", d, shift=m) for d in (1, 10) for m in (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)]
    + [gaussian_case(f"shift {m} one of 10", 10, shift=m, coordinates="one") for m in (0.2, 0.3, 0.5, 1.0)]
    + [gaussian_case(f"mean-field, correlation {c} {d}-D", d, correlation=c) for d in (2, 10)
       for c in (0.1, 0.3, 0.5, 0.7, 0.9)]
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--draws", type=int, default=4000)
    opts = parser.parse_args(argv)
    rows = []
    for case in CASES:
        levels, failed, bad_cases = Counter(), Counter(), 0
        for seed in range(opts.seeds):
            verdict, bad = run_case(case, seed, opts.draws)
            levels[verdict.level] += 1
            failed.update(check.name for check in verdict.failed)
            bad_cases += bad
        rows.append({**case, "bad": bad_cases, "seeds": opts.seeds, **{level: levels[level] for level in LEVELS},
                     "failed_checks": dict(failed)})
    good_on_bad = sum(row["good"] for row in rows if row["bad"])
    write_json(Path(__file__).parent / "results" / "verdicts.json",
               {"machine": platform.platform(), "settings": vars(opts), "good_on_bad_fits": good_on_bad, "rows": rows})
    print("| case | bad fits | good | usable | do not trust | checks short of good (seeds) |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        checks = ", ".join(f"{name} {count}" for name, count in sorted(row["failed_checks"].items()))
        print(f"| {row['label']} | {row['bad']}/{row['seeds']} | {row['good']} | {row['usable']} | "
              f"{row['do not trust']} | {checks} |")
    print(f"\n'good' on bad fits: {good_on_bad}")


if __name__ == "__main__":
    main()
