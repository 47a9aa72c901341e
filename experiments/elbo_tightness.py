"""`elbo-tightness`: the bound sandwich ELBO <= IWAE-k <= log p(x) <= CUBO_2 against k, per guide family,
on the conjugate linear regression (exact log evidence), with AIS beside the exact value."""

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402
import vi_toolkit as vt  # noqa: E402
from vi_toolkit.bounds import AIS, bounds
from vi_toolkit.threads import one_thread  # noqa: E402
from vi_toolkit.errors import ConfigError  # noqa: E402
from vi_toolkit.experiment import Experiment  # noqa: E402


@dataclass(frozen=True)
class Config:
    n_obs: int = 100
    n_features: int = 4
    correlation: float = 0.9
    guides: tuple[str, ...] = ("normal", "lowrank", "mvn", "iaf")
    ks: tuple[int, ...] = (1, 10, 100, 1000)
    batches: int = 100
    steps: int = 3000
    lr: float = 0.02
    num_particles: int = 8
    ais_particles: int = 200
    ais_temperatures: int = 200

    def __post_init__(self):
        if not -1 / max(self.n_features - 1, 1) < self.correlation < 1:
            raise ConfigError(f"correlation must make a valid correlation matrix, got {self.correlation}")


DEMO = {"guides": ("normal", "mvn"), "steps": 1000, "batches": 50, "ais_temperatures": 100}


def correlated_regression(n, d, correlation, seed):
    """(X, y): features N(0, C) with C = (1 - r) I + r 1 1^T, y = X beta + N(0, 1), beta ~ N(0, I)."""
    g = torch.Generator().manual_seed(seed)
    corr = torch.full((d, d), correlation) + (1 - correlation) * torch.eye(d)
    X = torch.randn(n, d, generator=g) @ torch.linalg.cholesky(corr).T
    return X, X @ torch.randn(d, generator=g) + torch.randn(n, generator=g)


def sandwich_figure(tables, log_z):
    """Each guide's IWAE-k minus log p(y) against k (log axis), its CUBO_2 as a dashed line, 0 = log p(y)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (guide, table) in enumerate(tables.items()):
        iwae = table[table.bound.str.startswith("IWAE")]
        colour = f"C{i % 10}"
        ax.errorbar(iwae.k, iwae.value - log_z, yerr=2 * iwae.se, marker="o", color=colour, label=f"{guide}: IWAE-k")
        cubo = table[table.bound == "CUBO_2"].value.iloc[0] - log_z
        ax.axhline(cubo, color=colour, linestyle="--", linewidth=1, label=f"{guide}: CUBO_2")
    ax.axhline(0.0, color="k", linewidth=1.2, label="log p(y) (exact)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel("k (importance samples per bound)")
    ax.set_ylabel("bound - log p(y)  [nats]")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def run(config, folder, seed):
    pair = models.get("linear-regression")
    X, y = correlated_regression(config.n_obs, config.n_features, config.correlation, seed)
    log_z = pair.log_evidence(X, y)
    ais = AIS(particles=config.ais_particles, temperatures=config.ais_temperatures, seed=seed)
    tables, rows = {}, []
    with one_thread():  # small tensors: intra-op threads only contend
        for guide in config.guides:
            fit = vt.fit_vi(pair.model, guide, X, y, steps=config.steps, lr=config.lr,
                            num_particles=config.num_particles, seed=seed, progress=False)
            b = bounds(fit, k=config.ks, log_evidence=log_z, seed=seed, batches=config.batches, ais=ais)
            tables[guide] = b.table().assign(guide=guide)
            rows.append({"guide": guide, "seconds": fit.seconds, "elbo": b.elbo.value, "kl_q_p": b.gap.value,
                         "kl_se": b.gap.se, **{f"iwae_{k}": e.value for k, e in b.iwae.items()},
                         "log_evidence": log_z, "ais": b.ais.value, "ais_se": b.ais.se, "cubo_2": b.cubo.value})
    summary = pd.DataFrame(rows)
    folder.save_table("bounds", pd.concat(tables.values(), ignore_index=True))
    folder.save_table("summary", summary)
    folder.save_figure("sandwich", sandwich_figure(tables, log_z))
    return (
        f"log p(y) = {log_z:.3f}. Gap log p(y) - ELBO = KL(q||p): "
        + ", ".join(f"{r.guide} {r.kl_q_p:.3f}" for r in summary.itertuples())
        + f"; IWAE-{max(config.ks)} closes it to "
        + ", ".join(f"{r.guide} {log_z - getattr(r, f'iwae_{max(config.ks)}'):.3f}" for r in summary.itertuples())
        + " nats; AIS - log p(y): "
        + ", ".join(f"{r.guide} {r.ais - log_z:+.3f}" for r in summary.itertuples())
        + "; CUBO_2 - log p(y): "
        + ", ".join(f"{r.guide} {r.cubo_2 - log_z:.3f}" for r in summary.itertuples())
        + "."
    )


EXPERIMENT = Experiment(
    name="elbo-tightness",
    description="The bound sandwich ELBO <= IWAE-k <= log p(y) <= CUBO_2 against k and across guide families on "
    "the conjugate linear regression with correlated features (exact log evidence; AIS shown beside it). "
    "The VAE half of this experiment is not done: the toolkit has no VAE pair yet.",
    config=Config,
    demo=DEMO,
    run=run,
)
