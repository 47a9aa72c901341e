"""`vae-likelihoods`: which reconstruction term, and the decoder's mean or a sample? (questions 1 and 2)

- **BCE or MSE?** (question 1) One VAE per decoder on the same images, pixels in [0, 1]: the binary
  cross-entropy (``bce``, Bernoulli on continuous pixels), the continuous Bernoulli, a Gaussian with a fixed
  scale (the squared error, MSE) and a Gaussian with a learned scale per pixel. Test log-likelihood (IWAE-k)
  in one unit, bits per dimension of continuous data in [0, 1], with proper densities: the digits' 17 grey
  levels are dequantized, x = (16 x_digits + u) / 17 with u ~ U(0, 1), and the BCE-trained decoder is
  evaluated as the density its loss stands for, the continuous Bernoulli with its logits. (A Gaussian puts
  some mass outside [0, 1]; its log-likelihood on [0, 1] is, if anything, understated.) Beside it, the
  per-pixel loss against the predicted value for targets 0.2 and 0.4: the BCE's minimum is the entropy
  H(t) of the target, so a pixel at 0.4 costs more than one at 0.2 even when predicted exactly.
- **Decoder mean or a sample?** (question 2) For the learned-variance decoder, decoder means and samples side
  by side: sharpness (mean absolute difference between neighbouring pixels, against the test images'), a
  digit classifier's confidence (scikit-learn's LogisticRegression on the training digits) and log p(x|z) of
  each (the mean is the mode: E[log p(sample|z)] = log p(mean|z) - D/2).
"""

import math
from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure

from vi_toolkit import images
from vi_toolkit import iwae as iw
from vi_toolkit.errors import ConfigError
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.experiments.vae import image_figure
from vi_toolkit.isolation import isolated
from vi_toolkit.models.vae import train as train_vae

LABELS = {"bce": "BCE (Bernoulli)", "cbernoulli": "continuous Bernoulli", "gaussian": "Gaussian, fixed scale (MSE)",
          "gaussian-learned": "Gaussian, learned scale"}
LEVELS = 17  # grey levels of scikit-learn's digits (0..16)


@dataclass(frozen=True)
class Config:
    """Settings of `vae-likelihoods` (defaults are the full-size run).

    decoders: reconstruction terms compared (bce, cbernoulli, gaussian, gaussian-learned)
    decoder_scale: the fixed Gaussian's scale (and the learned one's initial scale)
    z_dim: latent dimension
    hidden: hidden layer widths of encoder and decoder
    epochs: training epochs per VAE
    batch_size: images per mini-batch
    lr: Adam step size
    k: importance samples of the test log-likelihood (IWAE-k)
    samples: prior draws for the mean-or-sample comparison
    """

    decoders: tuple[str, ...] = ("bce", "cbernoulli", "gaussian", "gaussian-learned")
    decoder_scale: float = 0.1
    z_dim: int = 8
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    k: int = 1000
    samples: int = 500


DEMO = {"epochs": 15, "k": 100, "samples": 200}


def dequantize(x, seed):
    """(x * (LEVELS - 1) + u) / LEVELS, u ~ U(0, 1): the grey levels spread uniformly over [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return (x * (LEVELS - 1) + torch.rand(x.shape, generator=g)) / LEVELS


def bits_per_dim(log_lik, dim):
    """-log p(x) / (D log 2): nats per image to bits per dimension."""
    return -log_lik / (dim * math.log(2))


def sharpness(x, shape):
    """Mean |x_ij - x_i,j+1| and |x_ij - x_i+1,j| over neighbouring pixel pairs, per image: (N,)."""
    img = x.reshape(len(x), *shape)
    return torch.cat([(img[:, :, 1:] - img[:, :, :-1]).abs().flatten(1),
                      (img[:, 1:] - img[:, :-1]).abs().flatten(1)], 1).mean(1)


def pixel_losses(targets=(0.2, 0.4), scale=0.1, grid=199):
    """Per-pixel loss (nats) against the predicted value p in (0, 1) for each target t: BCE -t log p -
    (1-t) log(1-p), continuous Bernoulli -log CB(t; lambda=p), Gaussian -log N(t; p, scale^2)."""
    p = torch.linspace(0.005, 0.995, grid)
    rows = []
    for t in targets:
        value = torch.full_like(p, t)
        losses = {"BCE (Bernoulli)": -(t * p.log() + (1 - t) * (1 - p).log()),
                  "continuous Bernoulli": -torch.distributions.ContinuousBernoulli(probs=p).log_prob(value),
                  f"Gaussian, scale {scale:g} (MSE)": -torch.distributions.Normal(p, scale).log_prob(value)}
        rows += [pd.DataFrame({"target": t, "loss": name, "predicted": p.numpy(), "nats": v.numpy()})
                 for name, v in losses.items()]
    return pd.concat(rows, ignore_index=True)


def _pixel_figure(table):
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, table.loss.nunique())
    for ax, (name, part) in zip(axes, table.groupby("loss", sort=False)):
        for i, (t, curve) in enumerate(part.groupby("target")):
            line, = ax.plot(curve.predicted, curve.nats, label=f"target {t:g}")
            best = curve.nats.idxmin()
            ax.plot(curve.predicted[best], curve.nats[best], "o", color=line.get_color())
            ax.annotate(f"{curve.nats[best]:.3f} at {curve.predicted[best]:.2f}", (curve.predicted[best], curve.nats[best]),
                        textcoords="offset points", xytext=(4, 8 + 14 * i), fontsize=7, color=line.get_color())
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("predicted value (decoder output)")
        ax.set_ylim(top=min(float(part.nats.quantile(0.9)), 20) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("per-pixel loss [nats]")
    fig.tight_layout()
    return fig


def _train(decoder, config, x, seed):
    return train_vae(x, epochs=config.epochs, lr=config.lr, seed=seed, z_dim=config.z_dim, hidden=config.hidden,
                     decoder=decoder, decoder_scale=config.decoder_scale, batch_size=config.batch_size)


def _classifier(data, seed):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, random_state=seed).fit(data.train_x.numpy(), data.train_y.numpy())


@on_one_thread
def run(config, folder, seed):
    unknown = set(config.decoders) - set(LABELS)
    if unknown:
        raise ConfigError(f"decoders {sorted(unknown)} unknown; choose from {', '.join(LABELS)}")
    data = images.load("digits")
    train_x, test_x = dequantize(data.train_x, seed), dequantize(data.test_x, seed + 1)
    dim, mean_image = data.dim, train_x.mean(0)
    rows, panels, trained = [], [], {}
    for decoder in config.decoders:
        vae, fit = _train(decoder, config, train_x, seed)
        trained[decoder] = vae
        density = vae.as_density()  # the BCE decoder as the continuous Bernoulli its loss stands for
        log_lik = iw.iwae(density.log_weights, test_x, config.k, seed=seed)
        usage = vae.latent_usage(test_x)
        rows.append({"decoder": LABELS[decoder], "bits_per_dim": float(bits_per_dim(log_lik, dim).mean()),
                     "se": float(bits_per_dim(log_lik, dim).std() / math.sqrt(len(log_lik))),
                     f"test_log_lik_iwae_{config.k}": float(log_lik.mean()),
                     "reconstruction_ratio": vae.reconstruction_ratio(test_x, mean_image),
                     "active_units": usage.n_active, "collapse": usage.status, "seconds": fit.seconds})
        with torch.no_grad():
            panels.append([test_x[:8], vae.reconstruct(test_x[:8]), vae.sample(8, seed=seed)[:8]])
    table = pd.DataFrame(rows)
    folder.save_table("likelihoods", table)
    folder.save_figure("likelihood-images", image_figure(
        panels, data.shape, [f"{LABELS[d]}\n{r['bits_per_dim']:.2f} bits/dim" for d, r in zip(config.decoders, rows)]))
    losses = pixel_losses(scale=config.decoder_scale)
    folder.save_table("pixel-loss", losses)
    folder.save_figure("pixel-loss", _pixel_figure(losses))
    h = {t: float(losses[(losses.loss == "BCE (Bernoulli)") & (losses.target == t)].nats.min()) for t in (0.2, 0.4)}

    mean_or_sample = ""
    if "gaussian-learned" in trained:
        vae, clf = trained["gaussian-learned"], _classifier(data, seed)
        with torch.no_grad(), isolated(seed):
            z = vae.prior().sample((config.samples,))
            p = vae.decode(z)
            kinds = {"decoder mean": p.mean, "decoder sample": p.sample(), "test images": test_x}
            ll = {"decoder mean": p.log_prob(p.mean), "decoder sample": p.log_prob(kinds["decoder sample"])}
        q2 = pd.DataFrame([{"images": name, "sharpness": float(sharpness(v, data.shape).mean()),
                            "classifier_confidence": float(clf.predict_proba(v.clamp(0, 1).numpy()).max(1).mean()),
                            "log_p_x_given_z": float(ll[name].mean()) if name in ll else float("nan")}
                           for name, v in kinds.items()])
        folder.save_table("mean-or-sample", q2)
        folder.save_figure("mean-or-sample", image_figure(
            [kinds["decoder mean"][:64].reshape(8, 8, -1), kinds["decoder sample"][:64].reshape(8, 8, -1)],
            data.shape, ["decoder means at z ~ p(z)", "samples x ~ p(x|z) at the same z"]))
        s = q2.set_index("images")
        mean_or_sample = (
            f" Q2 (decoder mean or a sample?): for the learned-variance Gaussian, samples are "
            f"{s.sharpness['decoder sample'] / s.sharpness['decoder mean']:.1f}x as rough as the means "
            f"(neighbour difference {s.sharpness['decoder sample']:.3f} vs {s.sharpness['decoder mean']:.3f}; "
            f"test images {s.sharpness['test images']:.3f}), the classifier is "
            f"{s.classifier_confidence['decoder mean']:.2f} confident on means vs "
            f"{s.classifier_confidence['decoder sample']:.2f} on samples, and log p(x|z) is "
            f"{s.log_p_x_given_z['decoder mean'] - s.log_p_x_given_z['decoder sample']:.1f} nats higher at the "
            f"mean (D/2 = {dim / 2:.0f} expected): show means, report the likelihood of the distribution.")
    save_captions(folder, figures={
        "likelihood-images": "Question 1: per decoder, test images (top), reconstructions (middle) and decoder means "
                             "at prior draws (bottom), with the test log-likelihood in bits per dimension.",
        "pixel-loss": "Question 1: per-pixel loss against the predicted value for targets 0.2 and 0.4. The BCE's "
                      "minimum is the target's entropy H(t): predicting 0.4 exactly costs more than predicting 0.2 "
                      "exactly; the Gaussian's minimum is the same for both; the continuous Bernoulli's normalizer "
                      "moves its minimum away from the target.",
        "mean-or-sample": "Question 2: the learned-variance Gaussian decoder: means (left) and samples at the same "
                          "z (right).",
    }, tables={
        "likelihoods": "Question 1: test log-likelihood (IWAE-k, proper densities on dequantized pixels) in bits per "
                       "dimension (lower is better), reconstruction error relative to the mean image, active units.",
        "pixel-loss": "Question 1: the curves of the per-pixel loss figure.",
        "mean-or-sample": "Question 2: sharpness, classifier confidence and log p(x|z) of decoder means, samples and "
                          "test images.",
    })
    best = table.loc[table.bits_per_dim.idxmin()]
    return (
        "Q1 (BCE or MSE?): test log-likelihood in bits per dimension (dequantized digits, lower is better): "
        + ", ".join(f"{r.decoder} {r.bits_per_dim:.3f}" for r in table.itertuples())
        + f"; best: {best.decoder}"
        + ("" if best.collapse == "ok" else f" although {best.collapse} (the density of the mostly blank pixels "
           "outweighs what the code adds: a likelihood can rank a model that ignores z first)")
        + ". Reconstruction error relative to the mean image: "
        + ", ".join(f"{r.decoder} {r.reconstruction_ratio:.2f} ({r.active_units} of {config.z_dim} units active"
                    + ("" if r.collapse == "ok" else f": {r.collapse}") + ")" for r in table.itertuples())
        + f". The decoder's loss scale sets what the same KL costs: the squared error with scale "
        f"{config.decoder_scale:g} weighs a pixel's squared error by 1/(2 s^2) = "
        f"{1 / (2 * config.decoder_scale ** 2):.0f}, the (continuous) Bernoulli's loss is far flatter, so the KL term "
        f"can switch its units off. The BCE at its minimum costs H(0.2) = {h[0.2]:.3f} vs H(0.4) = {h[0.4]:.3f} nats "
        "per pixel: it is not a density on [0, 1] and favours pixels near 0 and 1."
        + mean_or_sample
    )


EXPERIMENT = Experiment(
    name="vae-likelihoods",
    description="Questions 1 and 2: BCE, continuous Bernoulli, fixed- and learned-variance Gaussian decoders on the "
    "same dequantized digits (test bits per dimension), per-pixel losses; decoder means against samples.",
    config=Config,
    demo=DEMO,
    run=run,
)
