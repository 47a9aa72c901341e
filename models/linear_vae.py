"""The bound sandwich of a linear-Gaussian VAE, where log p(x) is exact: ELBO <= IWAE-k <= log p(x) <= CUBO_2 per
data point, for each encoder family.

The data are probabilistic PCA (:func:`ppca_data`); the ``"vae"`` pair with ``hidden=()`` and a Gaussian decoder
with a learned noise scale is the matching model, whose log p(x) under the fitted decoder is exact
(:meth:`vi_toolkit.models.vae.VAE.exact_log_likelihood`). So the gap of each encoder (a learned variance
against one fixed at a constant) is measured, not estimated.

    from vi_toolkit.models.linear_vae import ppca_data, vae_bounds
    tables, rows = vae_bounds(ppca_data(2000, 8, 2, 0.3, seed=0), z_dim=2, seed=0)
"""

import pandas as pd
import torch

import vi_toolkit as vt
from vi_toolkit.bounds import cubo, elbo, iwae
from vi_toolkit.isolation import isolated
from vi_toolkit.models import get
from vi_toolkit.validate import whole


def ppca_data(n, d, latents, noise, seed):
    """x = W z + mu + noise * eps, z ~ N(0, I_latents), W and mu standard normal: probabilistic PCA, (n, d)."""
    g = torch.Generator().manual_seed(seed)
    w, mu = torch.randn(d, latents, generator=g), torch.randn(d, generator=g)
    return torch.randn(n, latents, generator=g) @ w.T + mu + noise * torch.randn(n, d, generator=g)


def encoder_label(scale):
    """The label of an encoder family: 0 is a learned variance, > 0 a variance fixed at ``scale``^2."""
    return "VAE, learned q variance" if scale == 0 else f"VAE, q scale fixed at {scale:g}"


def vae_bounds(x, *, z_dim=2, encoder_scales=(0.0, 1.0), steps=3000, lr=0.02, eval_points=500,
               ks=(1, 10, 100, 1000), batches=100, seed=0):
    """Per-data-point bounds of a linear-Gaussian VAE fitted to ``x`` (N, D), per encoder family:
    (label -> bound table, summary rows).

    One VAE per entry of ``encoder_scales`` (0: learned encoder variance; > 0: fixed at that scale), fitted by
    ``vt.fit_vi`` (closed-form KL, ``steps`` steps at ``lr``, mini-batches of up to 500, seed ``seed``). Each
    table holds the ELBO, IWAE-k for each k in ``ks`` and CUBO_2 from one pool of max(ks) * ``batches``
    log-weights per point on the first ``eval_points`` points, in nats per point, and the exact mean
    log p(x_n) (rows ``bound, k, value, se, guide``). A summary row per family: seconds, ELBO, the gap
    log p(x) - ELBO (= KL(q||p) per point), IWAE-k, log p(x) and CUBO_2.
    """
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    ks = tuple(whole("k", k) for k in ks)
    batches = whole("batches", batches)
    x_eval = x[: whole("eval_points", eval_points)]
    tables, rows = {}, []
    for scale in encoder_scales:
        label = encoder_label(scale)
        pair = get("vae", x_dim=x.shape[1], z_dim=z_dim, hidden=(), decoder="gaussian-learned",
                   decoder_variance="shared", decoder_scale=1.0, encoder_scale=scale or None,
                   batch_size=min(500, len(x)), seed=seed)
        fit = vt.fit_vi(pair.model, pair.guide, pair.prepare(x), objective="elbo-analytic", steps=steps, lr=lr,
                        seed=seed, progress=False)
        vae = fit.model.__self__  # fit_vi trains its own copy of the pair: the fitted networks are there
        n, draws = len(x_eval), max(ks) * batches
        with torch.no_grad(), isolated(seed):  # in chunks of about 10^5 (draw, point) pairs: memory stays bounded
            log_w = torch.cat([vae.log_weights(x_eval, len(c)) for c in torch.arange(draws).split(max(1, 100_000 // n))])
        per_point = lambda e: (e.value / n, e.se / n)  # noqa: E731
        log_px = float(vae.exact_log_likelihood(x_eval).mean())
        table = [("ELBO", 1, *per_point(elbo(log_w)))]
        table += [(f"IWAE-{k}", k, *per_point(iwae(log_w, k))) for k in ks]
        table += [("log p(x) exact", None, log_px, 0.0), ("CUBO_2", None, *per_point(cubo(log_w)))]
        tables[label] = pd.DataFrame(table, columns=["bound", "k", "value", "se"]).assign(guide=label)
        values = dict(zip(tables[label].bound, tables[label].value))
        rows.append({"guide": label, "seconds": fit.seconds, "elbo": values["ELBO"], "kl_q_p": log_px - values["ELBO"],
                     **{f"iwae_{k}": values[f"IWAE-{k}"] for k in ks}, "log_evidence": log_px,
                     "cubo_2": values["CUBO_2"]})
    return tables, rows
