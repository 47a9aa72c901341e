"""VAE on dynamically binarized MNIST (issue 4): the IWAE paper's one-stochastic-layer VAE under a CPU budget.

Architecture of Burda et al. 2016 (Table 1, VAE k=1): 784-200-200-50 encoder, 50-200-200-784 Bernoulli
decoder, tanh, dynamic binarization, batch 100, Adam 1e-3. The Pyro run is fit_vi on ``models.vae``
(``elbo-plain``: reparameterized Trace_ELBO, JIT-compiled as fit_vi does by default; ``--no-jit`` for the plain
one), for ``--budget-minutes`` of wall-clock time (fit_vi's ``max_seconds``: set-up included, the step size
decayed over the last 20% of the budget). Reported: test ELBO (100 draws per image) and test NLL = -IWAE-k (k = ``--iwae-k``,
default 5000) on the first ``--iwae-images`` test images (0: all 10000), beside the paper's 86.76. The test set
is binarized once (seed 1).

Speed: one epoch (600 steps) of fit_vi, set-up (and JIT compilation) included, with and without the JIT, against
a pure-PyTorch loop of the same networks, batch size, dynamic binarization and Adam; best of
``--timing-repeats``; ratio = Pyro / PyTorch.

Data: ../shared/data/mnist (the four IDX .gz files), unpacked into a temporary torchvision root; the
benchmark prints "skipped" and exits 0 when the folder is absent.

With ``--iwae-train 5`` the IWAE (k=5, RenyiELBO alpha=0) is also trained under the same budget and evaluated
on the first ``--iwae-train-images`` test images (default 2000: IWAE-5000 costs about 0.1 s per image here);
``--skip-vae`` runs that part alone and keeps the VAE's results in the JSON.

    python benchmarks/vae_mnist.py [--budget-minutes 20] [--iwae-k 5000] [--iwae-images 0] [--iwae-train 5]
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit import images, iwae
from vi_toolkit.io import write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
PAPER_NLL = 86.76  # Burda et al. 2016, Table 1, VAE k=1, one stochastic layer
PAPER_IWAE_NLL = 85.54  # the same, IWAE k=5
ANCHOR = "pure-PyTorch loop, 145 epochs in 10 min: test ELBO -96.0, IWAE-5000 NLL 90.2 (first 2000 test images)"
ARCH = dict(x_dim=784, z_dim=50, hidden=(200, 200), activation="tanh", decoder="bernoulli", binarize=True,
            batch_size=100)


def fit_pyro(x, seed, epochs=1000, seconds=None, progress=False, jit=True, particles=1):
    """fit_vi on the VAE pair for ``epochs`` epochs or ``seconds`` (fit_vi's time budget, set-up included: the
    step size decays over its last 20%), whichever ends first: (fitted VAE, VIResult). ``particles`` > 1 trains
    the IWAE with that k: Pyro's RenyiELBO at alpha=0, the per-image IWAE-k bound here (see vi_toolkit.iwae)."""
    pair = models.get("vae", seed=seed, **ARCH)
    steps = epochs * math.ceil(len(x) / ARCH["batch_size"])
    objective = "elbo-plain" if particles == 1 else vt.Objective("renyi", alpha=0.0)
    fit = vt.fit_vi(pair.model, pair.guide, x, objective=objective, steps=steps, lr=1e-3, seed=seed, jit=jit,
                    num_particles=particles, progress=progress, schedule=vt.Schedule(early_stop=False),
                    max_seconds=seconds)
    return fit.model.__self__, fit


def torch_epoch(x, seed):
    """Seconds for one epoch of a hand-written PyTorch VAE loop: same networks (fresh), batch, binarization and
    Adam (betas 0.9, 0.99 as fit_vi), loss -(N/B) sum_batch [log p(x|z) + log p(z) - log q(z|x)]."""
    vae = models.get("vae", seed=seed, **ARCH)
    optim = torch.optim.Adam(vae.parameters(), lr=1e-3, betas=(0.9, 0.99))
    torch.manual_seed(seed)
    n, batch = len(x), ARCH["batch_size"]
    start = time.perf_counter()
    for idx in torch.randperm(n).split(batch):
        rows = torch.bernoulli(x[idx])
        loss = -vae.log_weights(rows, 1).sum() * (n / len(idx))
        optim.zero_grad()
        loss.backward()
        optim.step()
    return time.perf_counter() - start


def timing(x, repeats, seed):
    """Best-of-``repeats`` seconds per epoch (set-up included) of fit_vi with JIT, without, and of the PyTorch
    loop."""
    jit_s, plain_s, torch_s = [], [], []
    for r in range(repeats):
        jit_s.append(fit_pyro(x, seed + r, epochs=1, jit=True)[1].seconds)
        plain_s.append(fit_pyro(x, seed + r, epochs=1, jit=False)[1].seconds)
        torch_s.append(torch_epoch(x, seed + r))
    return min(jit_s), min(plain_s), min(torch_s)


def vae_run(args, x, test_x, budget, per_epoch):
    """Epoch timings, then the VAE trained for ``budget`` seconds and evaluated: the results dict."""
    jit_epoch, plain_epoch, torch_epoch_s = timing(x, args.timing_repeats, args.seed)
    vae, fit = fit_pyro(x, args.seed, seconds=budget, progress=sys.stderr.isatty(), jit=args.jit)
    start = time.perf_counter()
    scores = evaluate(vae, test_x, args.iwae_k, args.iwae_images, args.seed)
    return {
        "budget_minutes": args.budget_minutes, "epochs": len(fit.losses) / per_epoch, "train_seconds": fit.seconds,
        "eval_seconds": time.perf_counter() - start, "train_images": len(x), "test_images": len(test_x), **scores,
        "paper_nll": PAPER_NLL, "anchor": ANCHOR,
        "epoch_seconds_pyro": plain_epoch, "epoch_seconds_pyro_jit": jit_epoch, "epoch_seconds_torch": torch_epoch_s,
        "ratio": plain_epoch / torch_epoch_s, "ratio_jit": jit_epoch / torch_epoch_s, "threads": args.threads,
        "jit": fit.info["jit"],
    }


def evaluate(vae, test_x, k, n_iwae, seed):
    """Test ELBO (mean over images, 100 draws each) and -IWAE-k on the first ``n_iwae`` images, with se."""
    elbo = iwae.elbo(vae.log_weights, test_x, 100, seed=seed)
    bound = iwae.iwae(vae.log_weights, test_x[: n_iwae or None], k, seed=seed)
    se = lambda t: float(t.std() / math.sqrt(len(t)))  # noqa: E731
    return {"test_elbo": float(elbo.mean()), "test_elbo_se": se(elbo), "iwae_k": k, "iwae_images": len(bound),
            "test_nll": -float(bound.mean()), "test_nll_se": se(bound)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument("--iwae-images", type=int, default=0)
    parser.add_argument("--timing-repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-jit", dest="jit", action="store_false", help="train without the JIT-compiled ELBO")
    parser.add_argument("--iwae-train", type=int, default=0, metavar="K",
                        help="also train the IWAE with K particles under the same budget (paper, k=5: 85.54)")
    parser.add_argument("--iwae-train-images", type=int, default=2000,
                        help="test images for the IWAE-trained model's bounds (0: all)")
    parser.add_argument("--skip-vae", action="store_true",
                        help="only the IWAE run (with --iwae-train), keeping the VAE's results in the JSON")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-images", type=int, default=0, help="use the first N training images (0: all)")
    parser.add_argument("--test-images", type=int, default=0, help="use the first N test images (0: all)")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: no MNIST at {args.data}")
        return 0
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        data = images.load("mnist", root=images.prepare_root(args.data, root))
    x = data.train_x[: args.train_images or None]
    test_x = images.binarize(data.test_x[: args.test_images or None], seed=1)

    out = Path(__file__).parent / "results" / "vae_mnist.json"
    budget = args.budget_minutes * 60
    per_epoch = math.ceil(len(x) / ARCH["batch_size"])
    if args.skip_vae:  # keep the VAE's figures of an earlier run
        results = json.loads(out.read_text())
    else:
        results = vae_run(args, x, test_x, budget, per_epoch)
        write_json(out, results)  # the VAE's figures are kept even if the IWAE run below is interrupted
    if args.iwae_train:
        k = args.iwae_train
        vae_k, fit_k = fit_pyro(x, args.seed, seconds=budget, progress=sys.stderr.isatty(), jit=args.jit, particles=k)
        results["iwae_train"] = {"k": k, "epochs": len(fit_k.losses) / per_epoch, "train_seconds": fit_k.seconds,
                                 "jit": fit_k.info["jit"],
                                 **evaluate(vae_k, test_x, args.iwae_k, args.iwae_train_images, args.seed)}
        write_json(out, results)
    r = results
    images_note = "all 10000" if r["iwae_images"] == 10000 else f"first {r['iwae_images']}"
    elbo_note = "all 10000" if r["test_images"] == 10000 else f"first {r['test_images']}"
    print("\n".join([
        f"| VAE on MNIST ({r['budget_minutes']:g}-min budget: {r['epochs']:.0f} epochs in {r['train_seconds'] / 60:.1f} min) "
        "| value |",
        "|---|---|",
        f"| test ELBO (nats, {elbo_note} test images) | {r['test_elbo']:.2f} ± {r['test_elbo_se']:.2f} |",
        f"| test NLL, IWAE-{r['iwae_k']} ({images_note} test images) | {r['test_nll']:.2f} ± {r['test_nll_se']:.2f} |",
        f"| paper (Burda et al. 2016, VAE k=1) | {PAPER_NLL} |",
        f"| one epoch: fit_vi / fit_vi JIT / pure PyTorch (s) | {r['epoch_seconds_pyro']:.2f} / "
        f"{r['epoch_seconds_pyro_jit']:.2f} / {r['epoch_seconds_torch']:.2f} |",
        f"| ratio to PyTorch (target <= 1.3): plain / JIT | {r['ratio']:.2f} / {r['ratio_jit']:.2f} |",
    ]))
    if "iwae_train" in r:
        t = r["iwae_train"]
        print(f"| IWAE k={t['k']} ({t['epochs']:.0f} epochs in {t['train_seconds'] / 60:.1f} min): test ELBO / NLL (first {t['iwae_images']} test images) | "
              f"{t['test_elbo']:.2f} / {t['test_nll']:.2f} ± {t['test_nll_se']:.2f} (paper, k=5: {PAPER_IWAE_NLL}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
