"""`vae`: variational autoencoders (amortized VI) on image data, with per-image ELBO and IWAE-k bounds.

The main fit and each variant (one setting changed, e.g. ``encoder_scale=1.0`` for an encoder whose variance
is fixed at the prior's, ``objective=elbo-analytic`` for the closed-form KL, ``beta=4``) are trained with
fit_vi on mini-batches and evaluated on test images by the ELBO and IWAE-k (k up to 1000 by default), and
checked for posterior collapse: active latent units (Cov_x E_q[z_d|x] > 0.01), KL per unit, and the
reconstruction error relative to predicting the mean training image (near 1 for a collapsed VAE).

The demo's 8x8 digits collapsed with the old demo settings (40 epochs of 14 mini-batches of 100 at step size
1e-3: 560 Adam steps): the decoder learned the mean image before the encoder carried information, and a
Bernoulli decoder on binarized 8x8 images gains little from the code. Mini-batches of 32 at step size 3e-3 (the
same 40 epochs, 1720 steps) train it out of that state.
"""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from vi_toolkit import images, iwae, plots
from vi_toolkit.errors import ConfigError
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import save_captions
from vi_toolkit.isolation import threads_limited
from vi_toolkit.models.vae import train as train_vae


@dataclass(frozen=True)
class Config:
    """Settings of `vae` (defaults are the full-size run).

    dataset: digits (bundled), mnist or fashion-mnist (from root)
    root: folder with MNIST/raw/ or FashionMNIST/raw/ (see vi_toolkit.images)
    decoder: bernoulli, cbernoulli, gaussian or gaussian-learned
    binarize: dynamic binarization for the bernoulli decoder (test images binarized once)
    z_dim: latent dimension
    hidden: hidden layer widths of encoder and decoder
    activation: hidden-layer activation (tanh, relu, ...)
    encoder_scale: 0: learned encoder variance; > 0: fixed at this scale
    beta: weight of the KL term (beta-VAE)
    warmup_epochs: KL warm-up length in epochs
    objective: elbo-plain (Monte Carlo KL) or elbo-analytic (closed-form KL)
    epochs: training epochs
    batch_size: images per mini-batch
    lr: Adam step size
    variants: extra fits with one setting changed, each key=value
    iwae_ks: importance samples k of the test IWAE-k bounds
    n_eval: test images for the bounds (0: all)
    checkpoint_dir: per-epoch checkpoints here (a rerun with the same folder resumes); empty: the run folder
    threads: intra-op threads of training and evaluation (small networks: more threads mostly synchronize)
    """

    dataset: str = "digits"  # digits (bundled), mnist or fashion-mnist (from root)
    root: str = ""  # folder with MNIST/raw/ or FashionMNIST/raw/ (see vi_toolkit.images)
    decoder: str = "bernoulli"  # bernoulli, cbernoulli, gaussian, gaussian-learned
    binarize: bool = True  # dynamic binarization for the bernoulli decoder (test images binarized once)
    z_dim: int = 8
    hidden: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    encoder_scale: float = 0.0  # 0: learned encoder variance; > 0: fixed at this scale
    beta: float = 1.0
    warmup_epochs: int = 0  # KL warm-up length
    objective: str = "elbo-plain"  # Monte Carlo KL; "elbo-analytic" for the closed form
    epochs: int = 300
    batch_size: int = 100
    lr: float = 1e-3
    variants: tuple[str, ...] = ("encoder_scale=1.0", "objective=elbo-analytic")
    iwae_ks: tuple[int, ...] = (1, 10, 100, 1000)
    n_eval: int = 0  # test images for the bounds (0: all)
    checkpoint_dir: str = ""  # per-epoch checkpoints here (a rerun with the same folder resumes); "" = run folder
    threads: int = 1


DEMO = {"epochs": 40, "batch_size": 32, "lr": 3e-3, "hidden": (64, 64), "variants": ("encoder_scale=1.0",), "iwae_ks": (1, 10, 100, 1000)}

_VARIABLE = ("decoder", "binarize", "z_dim", "hidden", "activation", "encoder_scale", "beta", "warmup_epochs",
             "objective", "epochs", "batch_size", "lr")


def _variant(config, text):
    """``config`` with one ``key=value`` change (key one of _VARIABLE)."""
    key, _, value = text.partition("=")
    if key not in _VARIABLE or not value:
        raise ConfigError(f"variant {text!r} must be key=value with key one of {', '.join(_VARIABLE)}")
    kind = type(getattr(config, key))
    try:
        if kind is tuple:
            parsed = tuple(int(v) for v in value.split(":"))  # hidden=64:64
        elif kind is bool:
            parsed = value.lower() in ("1", "true", "yes", "on")
        else:
            parsed = kind(value)
    except ValueError:
        raise ConfigError(f"variant {text!r}: {value!r} is not a valid {kind.__name__}") from None
    return dataclasses.replace(config, **{key: parsed})


def _for_decoder(config, x, seed):
    """x as the decoder of ``config`` reads it: binarized once (seeded) for a Bernoulli decoder without dynamic
    binarization, else as is (pixels in [0, 1])."""
    return images.binarize(x, seed=seed) if config.decoder == "bernoulli" and not config.binarize else x


def train(config, x, seed, checkpoint=None, progress=True):
    """Fit the VAE of ``config`` on ``x`` with fit_vi: (fitted VAE, VIResult). Steps = epochs * ceil(N/batch);
    constant Adam step size, decayed over the last 20% of the steps; a checkpoint every epoch."""
    per_epoch = math.ceil(len(x) / config.batch_size)  # the KL warm-up counts steps; an epoch is per_epoch of them
    return train_vae(x, epochs=config.epochs, lr=config.lr, seed=seed, objective=config.objective, progress=progress,
                     checkpoint=checkpoint, z_dim=config.z_dim, hidden=config.hidden, activation=config.activation,
                     decoder=config.decoder, encoder_scale=config.encoder_scale or None, beta=config.beta,
                     warmup_steps=config.warmup_epochs * per_epoch, batch_size=config.batch_size,
                     binarize=config.binarize and config.decoder == "bernoulli")


def grid(rows, shape, pad=1):
    """Rows of images (each row (n, H*W)) tiled into one array, ``pad`` blank pixels between tiles."""
    h, w = shape
    tile = lambda img: np.pad(np.asarray(img).reshape(h, w), ((0, pad), (0, pad)))  # noqa: E731
    return np.vstack([np.hstack([tile(img) for img in row]) for row in rows])


def image_figure(panels, shape, titles=None):
    """Panels side by side, each a list of rows of flat images of ``shape``, grey 0 (white) to 1 (black)."""
    fig = Figure(figsize=(4.2 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel, title in zip(axes.flat, panels, titles or [None] * len(panels)):
        ax.imshow(grid(panel, shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
        if title:
            ax.set_title(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def _figures(folder, vae, test_x, test_y, shape, curve, seed):
    n = 10
    recon = vae.reconstruct(test_x[:n])
    pairs = image_figure([[test_x[:n], recon]], shape, ["test images / reconstructions"])
    folder.save_figure("reconstructions", pairs)
    means = vae.sample(n * n, seed=seed).reshape(n, n, -1)
    draws = vae.sample(n * n, seed=seed, means=False).reshape(n, n, -1)
    folder.save_figure("prior-samples", image_figure([means, draws], shape, ["decoder means", "sampled images"]))
    values = torch.linspace(-3, 3, n)
    dims = min(vae.z_dim, 10)
    z = torch.zeros(dims, n, vae.z_dim)
    for d in range(dims):
        z[d, :, d] = values
    folder.save_figure("latent-traversal", image_figure([vae.mean(z)], shape, ["z_d from -3 to 3 (rows: d)"]))
    ends = vae.encoder(test_x[:2])[0]
    t = torch.linspace(0, 1, n)[:, None]
    path = vae.mean((1 - t) * ends[0] + t * ends[1])
    folder.save_figure("interpolation", image_figure([[path]], shape, ["between two test images"]))
    folder.save_figure("latent-space", _latent_figure(vae.encoder(test_x)[0].numpy(), test_y.numpy()))
    folder.save_figure("bounds-vs-k", _bounds_figure(curve))


def _latent_figure(loc, labels):
    """Encoder means of the test images coloured by label (the first two principal axes when z_dim > 2)."""
    if loc.shape[1] > 2:
        centred = loc - loc.mean(0)
        loc = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    points = ax.scatter(loc[:, 0], loc[:, 1], c=labels, cmap="tab10", s=8)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z1" if loc.shape[1] == 2 else "PC 1 of E[z|x]")
    ax.set_ylabel("z2" if loc.shape[1] == 2 else "PC 2 of E[z|x]")
    fig.tight_layout()
    return fig


def _bounds_figure(curve):
    """Test IWAE-k against k, one line per fit, the ELBO as a dashed line of the same colour."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for j, (label, table) in enumerate(curve.groupby("fit", sort=False)):
        iw = table[table.bound != "ELBO"]
        ax.plot(iw.k, iw["mean"], marker="o", color=plots.method_colour(label), label=f"{label}: IWAE-k")
        ax.axhline(float(table[table.bound == "ELBO"]["mean"].iloc[0]), color=plots.method_colour(label), linestyle="--",
                   label=f"{label}: ELBO")
    ax.set_xscale("log")
    ax.set_xlabel("k (importance samples)")
    ax.set_ylabel("nats per test image")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run(config, folder, seed):
    if config.dataset not in images.DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(images.DATASETS)}, got {config.dataset!r}")
    with threads_limited(config.threads):  # the caller's thread count is back afterwards
        return _run(config, folder, seed)


def _usage_figure(usages):
    """Mean KL(q(z_d|x) || N(0, 1)) per latent unit d, one group of bars per fit; active units hatched."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    width = 0.8 / len(usages)
    for j, (label, usage) in enumerate(usages.items()):
        d = np.arange(len(usage.kl))
        bars = ax.bar(d + j * width, usage.kl.numpy(), width, color=plots.method_colour(label),
                      label=f"{label}: {usage.n_active} of {len(d)} active")
        for bar, active in zip(bars, usage.active.tolist()):
            bar.set_hatch("//" if active else None)
    ax.set_xlabel("latent unit d")
    ax.set_ylabel("mean KL(q(z_d|x) || N(0,1))  [nats]")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def _run(config, folder, seed):
    data = images.load(config.dataset, root=config.root or None)
    test_y = data.test_y[: config.n_eval or None]
    fits = {"main": config, **{text: _variant(config, text) for text in config.variants}}
    checkpoints = Path(config.checkpoint_dir) if config.checkpoint_dir else folder.path / "checkpoints"
    rows, curves, losses, trained, usages = [], [], {}, {}, {}
    mean_image = data.train_x.mean(0)
    for label, cfg in fits.items():
        # test images are binarized once (seeded) for any Bernoulli decoder: a fixed test set for the bounds
        eval_x = _for_decoder(dataclasses.replace(cfg, binarize=False), data.test_x[: len(test_y)], seed + 1)
        name = label.replace("=", "-")
        train_x = _for_decoder(cfg, data.train_x, seed)
        vae, fit = train(cfg, train_x, seed, checkpoint=str(checkpoints / f"{name}.pt"))
        trained[label] = vae
        curve = iwae.bound_curve(vae.log_weights, eval_x, sorted(config.iwae_ks), seed=seed).assign(fit=label)
        curves.append(curve)
        losses[label] = fit.losses / len(train_x)
        if label == "main":
            test_x = eval_x
        usages[label] = usage = vae.latent_usage(eval_x)
        best = curve.iloc[-1]
        rows.append({"fit": label, "test_elbo": float(curve["mean"].iloc[0]), "se_elbo": float(curve.se.iloc[0]),
                     f"test_{best.bound.lower()}": float(best["mean"]), "active_units": usage.n_active,
                     "latent_units": cfg.z_dim, "collapse": usage.status,
                     # the pixel intensities (not the binarized images) against the reconstructions
                     "reconstruction_ratio": vae.reconstruction_ratio(data.test_x[: len(test_y)], mean_image),
                     "steps": len(fit.losses), "seconds": fit.seconds})
        folder.write_json(f"results/{name}/metrics.json", {"config": dataclasses.asdict(cfg), **rows[-1],
                                                           "kl_per_unit": usage.kl.tolist(),
                                                           "activity_per_unit": usage.activity.tolist()})
        torch.save(vae.state_dict(), folder.path / "results" / name / "vae.pt")
    curve = pd.concat(curves, ignore_index=True)
    folder.save_table("bounds", curve)
    folder.save_table("fits", pd.DataFrame(rows))
    folder.save_table("latent-usage", pd.concat([
        pd.DataFrame({"fit": label, "unit": range(len(u.kl)), "activity": u.activity.numpy(), "kl": u.kl.numpy(),
                      "active": u.active.numpy()}) for label, u in usages.items()], ignore_index=True))
    folder.save_figure("losses", plots.loss_traces(losses, ylabel="loss (negative ELBO per training image)"))
    folder.save_figure("latent-usage", _usage_figure(usages))
    _figures(folder, trained["main"], test_x, test_y, data.shape, curve, seed)
    save_captions(folder, figures={
        "bounds-vs-k": "Test IWAE-k per image against k for each fit (solid), with its ELBO (dashed): the "
                       "importance-weighted bound rises with k above the ELBO.",
        "reconstructions": "Ten test images (top) and their reconstructions by the main fit (bottom).",
        "latent-usage": "Mean KL(q(z_d|x) || p(z_d)) per latent unit over the test images (hatched: active, "
                        "Cov_x E[z_d|x] > 0.01). A collapsed VAE has every bar near 0.",
        "prior-samples": "Images decoded from prior draws of z: decoder means (left) and sampled images (right).",
        "latent-space": "Encoder means of the test images, coloured by their label.",
        "latent-traversal": "Decoder means as one latent coordinate moves from -3 to 3 (one row per coordinate).",
        "interpolation": "Decoder means along the straight line between the codes of two test images.",
        "losses": "Training loss per step (negative ELBO per image, faint: raw, solid: smoothed) of each fit.",
    }, tables={
        "fits": "One row per fit: test ELBO and the largest IWAE-k per image, active latent units, the "
                "reconstruction error relative to predicting the mean image (1: no better), steps and seconds.",
        "latent-usage": "Per fit and latent unit: activity Cov_x E[z_d|x], mean KL in nats, active or not.",
        "bounds": "Test ELBO and IWAE-k per image with standard errors, per fit and k."})
    best = f"IWAE-{max(config.iwae_ks)}"
    return (
        f"{config.dataset}, {config.decoder} decoder, {config.z_dim} latents, {len(test_y)} test images; "
        + "; ".join(f"{r['fit']}: test ELBO {r['test_elbo']:.2f}, {best} {r[f'test_{best.lower()}']:.2f} nats"
                    for r in rows)
        + f" per image. The importance-weighted bound lies above the ELBO by "
        f"{rows[0][f'test_{best.lower()}'] - rows[0]['test_elbo']:.2f} nats for the main fit. "
        + " ".join(f"{r['fit']}: {usages[r['fit']].sentence()}; reconstruction error {r['reconstruction_ratio']:.2f}"
                   " of the mean image's." for r in rows)
    )


EXPERIMENT = Experiment(
    name="vae",
    description="Variational autoencoders (amortized VI) on images: reconstructions, prior samples, latent space, "
    "and the test ELBO against the importance-weighted bound IWAE-k; variants with one setting changed.",
    config=Config,
    demo=DEMO,
    run=run,
)
