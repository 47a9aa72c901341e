"""IWAE-k with DReG gradients (objective "iwae-dreg") on dynamically binarized MNIST, beside the README's IWAE row.

Two measurements, on the architecture, data and evaluation of benchmarks/vae_mnist.py (imported, not copied):

1. Gradient variance (``--variance-replicates``, default 200; 0 skips): the VAE after ``--warmup-epochs`` of
   ELBO training, one batch of 100 test images as the whole data set (no subsampling, so both estimators see the
   same per-image IWAE-k bound), k = ``--k-variance`` (default 50). For the encoder's and the decoder's
   parameters: the total variance over replicates (the trace of the gradient covariance) of the DReG estimator
   and of Pyro's RenyiELBO(alpha=0) (the plain IWAE gradient), and the norm of their mean gradients.
2. Training (``--budget-minutes``, default 20; 0 skips): fit_vi with objective="iwae-dreg", k = ``--k``
   (default 5) for the same wall-clock budget as the README's IWAE row (k=5, ``renyi``: test NLL 87.96 on the
   first 2000 test images), evaluated as vae_mnist.py does (test ELBO, NLL = -IWAE-5000 on the first
   ``--test-nll-images`` test images).

Writes benchmarks/results/vae_mnist_dreg.json with the load average before and after. Prints "skipped" and
exits 0 when the MNIST folder is absent.

    python benchmarks/vae_mnist_dreg.py [--budget-minutes 20] [--k 5] [--variance-replicates 200]
"""

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import RenyiELBO

import vi_toolkit as vt
from vi_toolkit import images, models
from vi_toolkit.dreg import TraceDReG_IWAE
from vi_toolkit.io import write_json
from vi_toolkit.isolation import isolated

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vae_mnist  # noqa: E402 - the sibling benchmark: architecture, data folder, evaluation

README_IWAE = {"k": 5, "objective": "renyi (alpha=0)", "budget_minutes": 20, "test_nll": 87.96, "test_nll_se": 0.54,
               "images": 2000}


def fit_dreg(x, seed, k, seconds, progress):
    """fit_vi on the VAE pair with objective="iwae-dreg" and k particles for ``seconds`` (set-up included; the
    step size decays over the last 20%): (fitted VAE, VIResult)."""
    pair = models.get("vae", seed=seed, **vae_mnist.ARCH)
    steps = 1000 * math.ceil(len(x) / vae_mnist.ARCH["batch_size"])
    fit = vt.fit_vi(pair.model, pair.guide, x, objective="iwae-dreg", steps=steps, lr=1e-3, seed=seed,
                    num_particles=k, progress=progress, schedule=vt.Schedule(early_stop=False), max_seconds=seconds)
    return fit.model.__self__, fit


def gradient_variance(vae, rows, k, replicates, seed):
    """{estimator: {encoder/decoder: (total variance, norm of the mean)}} of the gradients over ``replicates``
    draws on ``rows`` (the whole data set: no subsampling), DReG and RenyiELBO(alpha=0) at k particles."""
    vae.batch_size = len(rows)
    kw = dict(num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    out = {}
    for label, elbo in (("dreg", TraceDReG_IWAE(**kw)), ("iwae", RenyiELBO(alpha=0.0, **kw))):
        grads = {"encoder": [], "decoder": []}
        with isolated(seed, params={"params": {}, "constraints": {}}):
            for _ in range(replicates):
                elbo.loss_and_grads(vae.model, vae.guide, rows)
                for part in grads:
                    net = getattr(vae, part)
                    grads[part].append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
                vae.zero_grad(set_to_none=True)
        out[label] = {part: {"total_variance": float(torch.stack(g).var(0).sum()),
                             "mean_norm": float(torch.stack(g).mean(0).norm())} for part, g in grads.items()}
    for part in ("encoder", "decoder"):
        out[f"variance_ratio_{part}"] = out["dreg"][part]["total_variance"] / out["iwae"][part]["total_variance"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument("--test-nll-images", type=int, default=2000)
    parser.add_argument("--variance-replicates", type=int, default=200)
    parser.add_argument("--k-variance", type=int, default=50)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=vae_mnist.DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no MNIST at {args.data}")
        return 0
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        data = images.load("mnist", root=images.prepare_root(args.data, root))
    x, test_x = data.train_x, images.binarize(data.test_x, seed=1)
    out = Path(__file__).parent / "results" / "vae_mnist_dreg.json"
    results = {"load_before": os.getloadavg(), "readme_iwae": README_IWAE, "threads": args.threads}
    if args.variance_replicates:
        start = time.perf_counter()
        vae, _ = vae_mnist.fit_pyro(x, args.seed, epochs=args.warmup_epochs, progress=sys.stderr.isatty())
        results["variance"] = {"k": args.k_variance, "replicates": args.variance_replicates,
                               "warmup_epochs": args.warmup_epochs, **gradient_variance(
                                   vae, test_x[:100], args.k_variance, args.variance_replicates, args.seed)}
        results["variance"]["seconds"] = time.perf_counter() - start
        write_json(out, results)
        v = results["variance"]
        print(f"gradient variance, k={v['k']}, {v['replicates']} replicates: DReG / IWAE total variance = "
              f"{v['variance_ratio_encoder']:.3g} (encoder), {v['variance_ratio_decoder']:.3g} (decoder)")
    if args.budget_minutes:
        vae, fit = fit_dreg(x, args.seed, args.k, args.budget_minutes * 60, sys.stderr.isatty())
        per_epoch = math.ceil(len(x) / vae_mnist.ARCH["batch_size"])
        results["train"] = {"k": args.k, "budget_minutes": args.budget_minutes, "epochs": len(fit.losses) / per_epoch,
                            "train_seconds": fit.seconds,
                            **vae_mnist.evaluate(vae, test_x, args.iwae_k, args.test_nll_images, args.seed)}
        t = results["train"]
        print(f"| IWAE k={t['k']} with DReG ({t['epochs']:.0f} epochs in {t['train_seconds'] / 60:.1f} min) | test ELBO "
              f"{t['test_elbo']:.2f}, test NLL {t['test_nll']:.2f} ± {t['test_nll_se']:.2f} (first "
              f"{t['iwae_images']} test images; README IWAE k=5 row: {README_IWAE['test_nll']}) |")
    results["load_after"] = os.getloadavg()
    write_json(out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
