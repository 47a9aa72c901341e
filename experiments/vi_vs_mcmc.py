"""`vi-vs-mcmc`: every guide family and objective against NUTS and a gold-standard reference posterior.

The target is a posteriordb posterior (its reference draws) or a registered pair with an exact posterior.
A posteriordb translation is the registered pair whose ``posteriordb`` attribute names the folder; its model
takes the data JSON's entries by name (``model(y, sigma)`` gets ``data["y"]``, ``data["sigma"]``).
"""

import inspect
from dataclasses import dataclass

import numpy as np
import torch

import models
import vi_toolkit as vt
from vi_toolkit import plots, posteriordb
from vi_toolkit.threads import one_thread
from vi_toolkit.compare import compare, method_draws, reference_draws_and_moments
from vi_toolkit.errors import ConfigError, DataError, UnknownNameError
from vi_toolkit.experiment import Experiment

AUTO = "auto"  # eight schools from posteriordb where the data is present, else the conjugate linear regression
FALLBACK = "linear-regression"


@dataclass(frozen=True)
class Config:
    target: str = AUTO
    guides: tuple[str, ...] = ("normal", "mvn", "iaf")
    objectives: tuple[str, ...] = ("elbo", "renyi", "forward-kl")
    steps: int = 4000
    lr: float = 0.01
    num_particles: int = 8
    vi_draws: int = 4000
    draws: int = 1000
    warmup: int = 1000
    chains: int = 2


DEMO = {"guides": ("normal", "mvn"), "objectives": ("elbo",), "steps": 1000, "draws": 300, "warmup": 250,
        "chains": 1, "vi_draws": 2000}


def posteriordb_pair(name):
    """The registered pair translating posteriordb posterior ``name`` (its ``posteriordb`` attribute)."""
    for pair_name in models.available():
        pair = models.get(pair_name)
        if getattr(pair, "posteriordb", None) == name:
            return pair
    raise UnknownNameError(f"no registered model translates posteriordb posterior {name!r}")


def posteriordb_args(pair, data):
    """The model's positional arguments from a posteriordb data dict, by parameter name (float tensors)."""
    names = list(inspect.signature(pair.model).parameters)
    missing = [n for n in names if n not in data]
    if missing:
        raise DataError(f"posteriordb data has no entries {missing} for {type(pair).__name__}.model{tuple(names)}")
    values = [data[n] for n in names]
    if not hasattr(pair, "check_data"):
        return tuple(torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in values)
    checked = pair.check_data(*values)
    return checked if isinstance(checked, tuple) else (checked,)


def load_target(target):
    """(label, pair, args, reference): the pair, its data, and reference draws or the exact posterior."""
    root = posteriordb.default_root()
    if target == AUTO:
        target = "eight_schools-eight_schools_noncentered" if root else FALLBACK
    if target in models.available():
        pair = models.get(target)
        if getattr(pair, "posteriordb", None):
            target = pair.posteriordb
        elif pair.has_exact_posterior:
            args = pair.simulate(seed=0)
            return target, pair, args, pair.posterior(*args)  # exact: sampled for W1
        else:
            raise ConfigError(f"target {target!r} has neither an exact posterior nor posteriordb reference draws")
    if root is None or not (root / target).is_dir():
        raise ConfigError(
            f"target {target!r} is neither a registered pair nor a posteriordb posterior under {root}; "
            f"set ${posteriordb.ENV_ROOT} or choose one of {models.available()}"
        )
    pair = posteriordb_pair(target)
    post = posteriordb.load(root / target)
    return target, pair, posteriordb_args(pair, post.data), post.reference_draws()


def _fits(config, pair, args, seed):
    fits = {}
    for guide in config.guides:
        for objective in config.objectives:
            fits[f"VI {guide} {objective}"] = vt.fit_vi(
                pair.model, guide, *args, objective=objective, steps=config.steps, lr=config.lr,
                num_particles=config.num_particles, seed=seed, progress=False,
            )
    fits["NUTS"] = vt.run_mcmc(
        pair.model, *args, draws=config.draws, warmup=config.warmup, chains=config.chains, seed=seed, progress=False
    )
    return fits


def pair_plot(draws, x, y, max_points=800):
    """Scatter of parameters ``x`` and ``y``: one colour per method (reference first)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, (method, values) in enumerate(draws.items()):
        ax.scatter(values[x][:max_points], values[y][:max_points], s=4, alpha=0.4, color=f"C{k % 10}", label=method)
    if all(np.min(values[y]) > 0 for values in draws.values()):
        ax.set_yscale("log")  # a scale parameter: its funnel shows on a log axis
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    return fig


def run(config, folder, seed):
    label, pair, args, reference = load_target(config.target)
    with one_thread():  # small models: intra-op threads only contend (a full-rank fit ran 4x slower on two)
        fits = _fits(config, pair, args, seed)
    table = compare(fits, reference, draws=config.vi_draws, seed=seed)
    table.insert(0, "target", label)
    folder.save_table("comparison", table)
    ref_draws, moments = reference_draws_and_moments(reference, config.vi_draws, seed)
    draws = {"reference": ref_draws} if ref_draws is not None else {}
    for method, result in fits.items():
        flat = method_draws(result, config.vi_draws, seed)
        draws[method] = {label: flat[label] for label in moments}  # the reference's parameters only
        folder.save_result(method.replace(" ", "-"), result)
    labels = list(moments)
    folder.save_figure("marginals", plots.marginals(draws, exact=None if ref_draws is not None else moments))
    x, y = ("mu", "tau") if {"mu", "tau"} <= set(labels) else labels[:2]
    folder.save_figure(f"pair-{x}-{y}", pair_plot(draws, x, y))
    folder.save_figure("losses", plots.loss_traces({m: r.losses for m, r in fits.items() if r.kind == "vi"}))
    rows = table.set_index("method")
    return (
        f"{label}: largest standardized mean error against the reference: "
        + ", ".join(f"{m} {v:.2f}" for m, v in rows.std_mean_error_max.items())
        + "; sd ratio range: "
        + ", ".join(f"{m} {a:.2f}-{b:.2f}" for m, a, b in zip(rows.index, rows.sd_ratio_min, rows.sd_ratio_max))
        + ". PSIS k-hat: "
        + ", ".join(f"{m} {k:.2f} ({v.split(':')[0]})" for m, k, v in zip(rows.index, rows.khat, rows.verdict) if v)
        + "."
    )


EXPERIMENT = Experiment(
    name="vi-vs-mcmc",
    description="Every guide family and objective against NUTS and a gold-standard reference posterior "
    "(posteriordb reference draws, or an exact posterior): standardized mean error, sd ratio, 1-Wasserstein, "
    "ELBO and the PSIS k-hat verdict per fit. target=auto: eight schools (posteriordb) if present, else the "
    "conjugate linear regression.",
    config=Config,
    demo=DEMO,
    run=run,
)
