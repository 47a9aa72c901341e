"""`vae-autoencoder`: autoencoder or VAE, and latent arithmetic (questions 3 and 4).

Both models have the same networks and the same squared-error reconstruction term (a Gaussian decoder with a
fixed scale) on scikit-learn's digits. The autoencoder is the VAE pair with its encoder's scale fixed near 0
(``ae_encoder_scale``) and the KL weight near 0 (``ae_beta``): a deterministic code, no prior pulling on it.

- **Autoencoder or VAE?** (question 3) The reconstruction error as each test code is perturbed, z + r sd * eps
  with eps ~ N(0, I) and sd the per-unit spread of that model's codes (so both are perturbed alike relative to
  their own code cloud), for growing r; and the quality of images decoded from z ~ N(0, I): a digit
  classifier's confidence (scikit-learn's LogisticRegression trained on the training digits) and the squared
  distance to the nearest training image (how far from the data the samples land).
- **Latent arithmetic** (question 4) Attribute vectors are class-mean differences of the codes, v = m_t - m_s;
  adding v to the code of each test image of class s and decoding, how often does the classifier now say t?
"""

from dataclasses import dataclass

import pandas as pd
import torch
from matplotlib.figure import Figure

from vi_toolkit import images, plots
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.experiments.vae import image_figure
from vi_toolkit.isolation import isolated
from vi_toolkit.models.vae import train as train_vae


@dataclass(frozen=True)
class Config:
    """Settings of `vae-autoencoder` (defaults are the full-size run).

    z_dim: latent dimension
    hidden: hidden layer widths of encoder and decoder
    decoder_scale: the Gaussian decoder's fixed scale (squared-error loss)
    ae_encoder_scale: the autoencoder's fixed encoder scale (near 0: a deterministic code)
    ae_beta: the autoencoder's KL weight (near 0: no prior)
    epochs: training epochs per model
    batch_size: images per mini-batch
    lr: Adam step size
    radii: perturbation radii r, in units of the codes' spread per unit
    samples: prior draws decoded per model
    """

    z_dim: int = 8
    hidden: tuple[int, ...] = (64, 64)
    decoder_scale: float = 0.25  # at 0.1 the reconstruction term outweighs the KL so far that the VAE is an autoencoder
    ae_encoder_scale: float = 1e-3
    ae_beta: float = 1e-6
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-3
    radii: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    samples: int = 500


DEMO = {"epochs": 15, "samples": 200}


def _train(config, x, seed, autoencoder):
    return train_vae(x, epochs=config.epochs, lr=config.lr, seed=seed, objective="elbo-analytic",
                     z_dim=config.z_dim, hidden=config.hidden, decoder="gaussian", decoder_scale=config.decoder_scale,
                     batch_size=config.batch_size, encoder_scale=config.ae_encoder_scale if autoencoder else None,
                     beta=config.ae_beta if autoencoder else 1.0)[0]


def perturbed_error(vae, x, radii, seed):
    """Mean squared error per pixel of decode(E[z|x] + r sd eps) against x, eps ~ N(0, I), sd the spread of the
    codes E[z|x] per unit, for each r: list of floats."""
    with torch.no_grad(), isolated(seed):
        z = vae.encoder(x)[0]
        eps = torch.randn_like(z)
        return [float(((vae.mean(z + r * z.std(0) * eps) - x) ** 2).mean()) for r in radii]


def arithmetic(vae, clf, x, y, train_x, train_y):
    """Per (source s, target t != s): the fraction of test images of class s whose code plus m_t - m_s (class
    means of the training codes) decodes to an image the classifier labels t: DataFrame (source, target, hit)."""
    with torch.no_grad():
        codes = vae.encoder(train_x)[0]
        means = torch.stack([codes[train_y == c].mean(0) for c in range(10)])
        z = vae.encoder(x)[0]
        rows = []
        for s in range(10):
            zs = z[y == s]
            for t in range(10):
                if t != s:
                    labels = clf.predict(vae.mean(zs + means[t] - means[s]).clamp(0, 1).numpy())
                    rows.append({"source": s, "target": t, "hit": float((labels == t).mean())})
    return pd.DataFrame(rows), means


def _perturb_figure(table):
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for model, part in table.groupby("model", sort=False):
        ax.plot(part.radius, part.mse, marker="o", color=plots.method_colour(model), label=model)
    ax.set_xlabel("perturbation radius r (in units of the codes' spread)")
    ax.set_ylabel("reconstruction MSE per pixel")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@on_one_thread
def run(config, folder, seed):
    from sklearn.linear_model import LogisticRegression

    data = images.load("digits")
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(data.train_x.numpy(), data.train_y.numpy())
    x, y = data.test_x, data.test_y
    trained = {"VAE": _train(config, data.train_x, seed, False), "autoencoder": _train(config, data.train_x, seed, True)}
    perturb, quality, hits, panels = [], [], {}, []
    for name, vae in trained.items():
        perturb += [{"model": name, "radius": r, "mse": e}
                    for r, e in zip(config.radii, perturbed_error(vae, x, config.radii, seed))]
        samples = vae.sample(config.samples, seed=seed).clamp(0, 1)
        proba = clf.predict_proba(samples.numpy())
        nearest = torch.cdist(samples, data.train_x).min(1).values ** 2 / data.dim
        quality.append({"model": name, "prior_sample_confidence": float(proba.max(1).mean()),
                        "nearest_training_mse": float(nearest.mean()),
                        "distinct_labels": int(len(set(proba.argmax(1).tolist()))),
                        "test_image_confidence": float(clf.predict_proba(x.numpy()).max(1).mean())})
        hits[name], means = arithmetic(vae, clf, x, y, data.train_x, data.train_y)
        with torch.no_grad():  # one test image of each class s, edited towards s + 1 (mod 10)
            first = torch.stack([x[y == s][0] for s in range(10)])
            z = vae.encoder(first)[0]
            edited = vae.mean(z + means[(torch.arange(10) + 1) % 10] - means)
        panels.append([first, vae.reconstruct(first), edited, samples[:10]])
    perturb, quality = pd.DataFrame(perturb), pd.DataFrame(quality)
    hit_table = pd.concat([h.assign(model=m) for m, h in hits.items()], ignore_index=True)
    folder.save_table("perturbation", perturb)
    folder.save_table("prior-samples", quality)
    folder.save_table("latent-arithmetic", hit_table)
    folder.save_figure("perturbation", _perturb_figure(perturb))
    folder.save_figure("images", image_figure(panels, data.shape, list(trained)))
    save_captions(folder, figures={
        "perturbation": "Question 3: reconstruction error as the code is perturbed by r times its spread: the VAE's "
                        "decoder was trained on noisy codes and degrades gracefully.",
        "images": "Questions 3 and 4, per model (panels), in rows: one test image per class, its reconstruction, "
                  "its code plus the attribute vector m_{s+1} - m_s towards the next class, and decoded prior draws.",
    }, tables={
        "perturbation": "Question 3: reconstruction MSE per pixel per model and radius.",
        "prior-samples": "Question 3: the classifier's mean confidence on decoded prior draws (test images for "
                         "comparison), how many classes they cover, and their mean squared distance per pixel to the "
                         "nearest training image.",
        "latent-arithmetic": "Question 4: per model, source and target class, the fraction of edits the classifier "
                             "labels as the target.",
    })
    p = perturb.set_index(["model", "radius"]).mse
    q = quality.set_index("model")
    r_top = max(config.radii)
    rate = hit_table.groupby("model").hit.mean()
    return (
        f"Q3 (autoencoder or VAE?): perturbing the code by {r_top:g} times its spread raises the reconstruction MSE "
        f"from {p['VAE', 0.0]:.4f} to {p['VAE', r_top]:.4f} for the VAE and from {p['autoencoder', 0.0]:.4f} to "
        f"{p['autoencoder', r_top]:.4f} for the autoencoder; a classifier is "
        f"{q.prior_sample_confidence['VAE']:.2f} confident on the VAE's prior samples vs "
        f"{q.prior_sample_confidence['autoencoder']:.2f} on the autoencoder's (test images "
        f"{q.test_image_confidence['VAE']:.2f}), and they lie {q.nearest_training_mse['VAE']:.4f} vs "
        f"{q.nearest_training_mse['autoencoder']:.4f} (MSE per pixel) from the nearest training image. "
        f"Q4 (latent arithmetic): adding the class-mean difference m_t - m_s to a code changes the classifier's "
        f"label to t in {rate['VAE']:.0%} of edits for the VAE "
        f"({rate['autoencoder']:.0%} for the autoencoder), over all 90 ordered class pairs of the test images."
    )


EXPERIMENT = Experiment(
    name="vae-autoencoder",
    description="Questions 3 and 4: an autoencoder against a VAE with the same networks (perturbed codes, prior "
    "samples judged by a classifier), and latent arithmetic with class-mean attribute vectors.",
    config=Config,
    demo=DEMO,
    run=run,
)
