"""`vae-estimators`: two questions about a VAE's estimators, answered on a linear-Gaussian VAE whose log p(x) is
exact (probabilistic PCA data, :mod:`vi_toolkit.models.linear_vae`).

- **Closed-form or Monte Carlo KL?** (question 7) Two VAEs trained alike, one with KL(q(z|x) || p(z)) in closed
  form (``elbo-analytic``), one with its one-draw Monte Carlo estimate log q(z|x) - log p(z) (``elbo-plain``).
  Along each fit, the variance of the gradient of the mini-batch ELBO under both estimators at the same
  parameters (the trace of the gradient's covariance over repeated draws of z); at the end, each VAE's test
  ELBO against its exact log p(x).
- **How does q(z|x) give p(x)?** (question 10) By importance sampling: p(x) = E_q[p(x, z) / q(z|x)], so
  p_k(x) = (1/k) sum_i p(x, z_i) / q(z_i|x) with z_i ~ q(z|x) is unbiased for p(x) (its mean ratio to the
  exact p(x) is 1) and log p_k(x) (IWAE-k) climbs from the ELBO (k = 1) to log p(x) as k grows. Shown per
  test point against the exact log p(x).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

import vi_toolkit as vt
from vi_toolkit import models, plots
from vi_toolkit import iwae as iw
from vi_toolkit.estimators import logmeanexp
from vi_toolkit.experiment import Experiment
from vi_toolkit.experiments.common import on_one_thread, save_captions
from vi_toolkit.isolation import isolated
from vi_toolkit.models.linear_vae import ppca_data

KL_OBJECTIVES = {"closed form": "elbo-analytic", "Monte Carlo": "elbo-plain"}


@dataclass(frozen=True)
class Config:
    """Settings of `vae-estimators` (defaults are the full-size run).

    points: probabilistic PCA training points
    x_dim: dimension of each point
    z_dim: latent dimension (of the data and of the VAE)
    noise: observation noise sd of the data
    steps: SVI steps of each VAE fit
    lr: Adam step size
    batch_size: points per mini-batch
    probes: times along each fit at which the gradient variance is measured
    repeats: gradient draws per probe
    eval_points: test points for the bounds and the per-point IWAE-k curves
    ks: importance samples k of the IWAE-k curves
    pool: log-weights per test point behind the curves (a multiple of the largest k)
    """

    points: int = 2000
    x_dim: int = 8
    z_dim: int = 2
    noise: float = 0.3
    steps: int = 3000
    lr: float = 0.02
    batch_size: int = 100
    probes: int = 12
    repeats: int = 50
    eval_points: int = 500
    ks: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
    pool: int = 10000


DEMO = {"points": 1000, "steps": 1000, "probes": 8, "repeats": 30, "eval_points": 200, "pool": 4000,
        "ks": (1, 3, 10, 30, 100, 1000)}


def gradient_variance(vae, x, kl, repeats, seed):
    """tr Cov[grad_theta ELBO_hat(x)] over ``repeats`` draws of z, ELBO_hat the batch mean of the one-draw ELBO
    with the KL in closed form or by Monte Carlo (``kl``), theta all of the VAE's parameters."""
    params = [p for p in vae.parameters() if p.requires_grad]
    with isolated(seed):
        grads = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(vae.elbo(x, kl).mean(), params)])
                             for _ in range(repeats)])
    return float(grads.var(0).sum())


def _fit_with_probes(pair, x, probe_x, objective, config, seed):
    """Train ``pair`` with ``objective`` by the explicit init/step loop; at ``probes`` evenly spaced steps, the
    gradient variance of both KL estimators at the current parameters: (VIResult, rows)."""
    state = vt.svi.init(pair.model, pair.guide, pair.prepare(x), objective=objective, steps=config.steps,
                        lr=config.lr, seed=seed, schedule=vt.Schedule(early_stop=False))
    probe_at = set(np.linspace(0, config.steps, config.probes).astype(int).tolist())
    vae, rows = state.problem.model.__self__, []  # the fit's own copy of the VAE: its networks move with the steps
    step = 0
    while True:
        if step in probe_at:
            for name in KL_OBJECTIVES:
                rows.append({"step": step, "estimator": name,
                             "variance": gradient_variance(vae, probe_x, _kl_name(name), config.repeats, seed + step)})
        if state.done:
            break
        vt.svi.step(state)
        step += 1
    return state.result(), rows


def _kl_name(label):
    return "analytic" if label == "closed form" else "monte-carlo"


def per_point_iwae(log_w, ks):
    """IWAE-k(x_n) per point from a pool of log-weights (S, N): the mean over the S // k disjoint groups of k of
    log (1/k) sum_{i in group} w_i, for each k: tensor (len(ks), N)."""
    return torch.stack([logmeanexp(log_w[: len(log_w) // k * k].reshape(len(log_w) // k, k, -1), dim=1).mean(0)
                        for k in ks])


def unbiased_ratio(log_w, log_px):
    """p_1(x_n) / p(x_n) = w / p(x_n) averaged over the pool, per point: E = 1 (importance sampling is unbiased
    for p(x)); tensor (N,)."""
    return (log_w - log_px).exp().mean(0)


def _variance_figure(probes):
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for (trained, estimator), table in probes.groupby(["trained with", "estimator"], sort=False):
        ax.plot(table.step, table.variance, marker="o", color=plots.method_colour(estimator),
                linestyle="-" if trained == "closed form" else "--",
                label=f"{estimator} KL gradient (fit trained with {trained} KL)")
    ax.set_yscale("log")
    ax.set_xlabel("SVI step")
    ax.set_ylabel("tr Cov[gradient of the mini-batch ELBO]")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _curves_figure(ks, gaps, shown=6):
    """log p(x) - IWAE-k against k: ``shown`` test points (thin) and the mean over all (thick)."""
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for n in range(min(shown, gaps.shape[1])):
        ax.plot(ks, gaps[:, n], marker=".", alpha=0.6, label=f"test point {n}")
    ax.plot(ks, gaps.mean(1), color="k", linewidth=2.5, marker="o", label="mean over test points")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("k (importance samples from q(z|x))")
    ax.set_ylabel("log p(x) - IWAE-k  [nats]  (k=1: ELBO)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@on_one_thread
def run(config, folder, seed):
    x = ppca_data(config.points + config.eval_points, config.x_dim, config.z_dim, config.noise, seed)
    train_x, test_x = x[: config.points], x[config.points:]
    probe_x = train_x[: config.batch_size]
    probes, fits, rows = [], {}, []
    for label, objective in KL_OBJECTIVES.items():
        pair = models.get("vae", x_dim=config.x_dim, z_dim=config.z_dim, hidden=(), decoder="gaussian-learned",
                          decoder_variance="shared", decoder_scale=1.0, batch_size=config.batch_size, seed=seed)
        fit, probe_rows = _fit_with_probes(pair, train_x, probe_x, objective, config, seed)
        probes += [{**r, "trained with": label} for r in probe_rows]
        vae = fits[label] = fit.model.__self__
        log_px = vae.exact_log_likelihood(test_x)
        elbo = iw.elbo(vae.log_weights, test_x, num_samples=100, seed=seed)
        gap = log_px - elbo
        rows.append({"KL": label, "objective": objective, "test_elbo": float(elbo.mean()),
                     "exact_log_px": float(log_px.mean()), "gap": float(gap.mean()),
                     "gap_se": float(gap.std() / len(gap) ** 0.5), "seconds": fit.seconds})
    probes = pd.DataFrame(probes)
    ratio = probes.pivot_table(index=["trained with", "step"], columns="estimator", values="variance")
    ratio = ratio["Monte Carlo"] / ratio["closed form"]

    vae = fits["closed form"]  # importance sampling with the closed-form-trained encoder
    with torch.no_grad():
        log_w = iw.pool(vae.log_weights, test_x, config.pool, seed=seed).double()
        log_px = vae.exact_log_likelihood(test_x).double()
    ks = sorted(k for k in config.ks if k <= config.pool)
    gaps = (log_px - per_point_iwae(log_w, ks)).numpy()
    p_ratio = unbiased_ratio(log_w, log_px)
    curve = pd.DataFrame({"k": ks, "mean_gap": gaps.mean(1), "se_gap": gaps.std(1) / len(test_x) ** 0.5,
                          "max_gap": gaps.max(1)})
    per_point = pd.DataFrame(gaps.T, columns=[f"gap_k{k}" for k in ks]).assign(
        exact_log_px=log_px.numpy(), p_hat_over_p=p_ratio.numpy())

    folder.save_table("kl-fits", pd.DataFrame(rows))
    folder.save_table("kl-gradient-variance", probes)
    folder.save_table("iwae-curve", curve)
    folder.save_table("iwae-per-point", per_point)
    folder.save_figure("kl-gradient-variance", _variance_figure(probes))
    folder.save_figure("iwae-per-point", _curves_figure(ks, gaps))
    save_captions(folder, figures={
        "kl-gradient-variance": "Question 7: variance of the mini-batch ELBO's gradient (all parameters) with the KL "
                                "in closed form and by Monte Carlo, measured at the same parameters along each fit "
                                "(solid: fit trained with the closed form, dashed: with Monte Carlo).",
        "iwae-per-point": "Question 10: log p(x) - IWAE-k per test point (thin) and on average (thick) against k: "
                          "importance sampling with q(z|x) approaches the exact log p(x).",
    }, tables={
        "kl-fits": "Question 7: each fit's test ELBO, the exact log p(x) under its decoder and the gap (nats per "
                   "point, se over points).",
        "kl-gradient-variance": "Question 7: gradient variance per estimator, probe step and training objective.",
        "iwae-curve": "Question 10: mean and largest gap log p(x) - IWAE-k over the test points, per k.",
        "iwae-per-point": "Question 10: per test point, log p(x) - IWAE-k for each k, the exact log p(x) and the "
                          "pooled mean of p_1(x) / p(x) (1 in expectation).",
    })
    cf, mc = rows
    late = ratio.xs("closed form").iloc[len(ratio.xs("closed form")) // 2:]
    se_ratio = float(p_ratio.std() / len(p_ratio) ** 0.5)
    return (
        f"Q7 (closed-form or Monte Carlo KL?): the Monte Carlo KL's gradient variance is "
        f"{float(ratio.median()):.2f}x the closed form's (median over probes; {float(late.median()):.2f}x in the "
        f"second half of the closed-form fit); final gap log p(x) - test ELBO {cf['gap']:.4f} +- {cf['gap_se']:.4f} "
        f"(closed form) vs {mc['gap']:.4f} +- {mc['gap_se']:.4f} nats (Monte Carlo). "
        f"Q10 (how does q(z|x) give p(x)?): importance sampling p(x) = E_q[p(x,z)/q(z|x)]: the mean of p_1(x)/p(x) "
        f"is {float(p_ratio.mean()):.4f} +- {se_ratio:.4f} (1 = unbiased), and log p(x) - IWAE-k falls from "
        f"{curve.mean_gap.iloc[0]:.4f} (k=1, the ELBO) to {curve.mean_gap.iloc[-1]:.5f} nats (k={ks[-1]}) on "
        f"{len(test_x)} test points with exact log p(x)."
    )


EXPERIMENT = Experiment(
    name="vae-estimators",
    description="Questions 7 and 10 on a linear-Gaussian VAE with exact log p(x): closed-form against Monte Carlo KL "
    "(gradient variance along training, final gap), and importance sampling with q(z|x) (IWAE-k per point against "
    "the exact log p(x)).",
    config=Config,
    demo=DEMO,
    run=run,
)
