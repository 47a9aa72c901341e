"""VSBC: simulation-based calibration of a VI method on a model (Yao, Vehtari, Simpson and Gelman 2018, "Yes,
but did it work?: Evaluating variational inference", section 4).

This module's one job: simulate parameters and data from the model's prior, refit each simulated data set with
the given VI settings (or any fit callable), and report how the true parameters sit in the fitted posteriors.

For simulation s: theta^(s) ~ p(theta), y^(s) ~ p(y | theta^(s)) (the model run with its observed sites freed,
``poutine.uncondition``), q^(s) fitted to y^(s), and per scalar parameter j

    p_sj = Pr_q(s)(theta_j < theta_j^(s)),   estimated by the fraction of the fit's draws below theta_j^(s).

If q^(s) were the exact posterior, each p_j would be Uniform(0, 1) over simulations. The paper's VSBC checks the
*symmetry* of p_j's distribution (a KS test of p_j against 1 - p_j, and the mean of p_j against 0.5): a biased
q (its mass too high or too low for theta_j on average) makes it asymmetric. A q with the right centre but the
wrong spread leaves p_j symmetric: under-dispersion (mean-field VI on correlated posteriors) piles p_j near 0 and
1 (var(p_j) > 1/12), over-dispersion near 1/2 (var < 1/12). So this module also reports a KS test of p_j against
Uniform(0, 1), which catches both, and var(p_j). (KS of p against 1 - p compares two dependent samples: its
p-value is the paper's heuristic, not an exact level.)
"""

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from scipy import stats
from tqdm.auto import tqdm

from .errors import ConfigError
from .posterior import Posterior
from .problem import Problem
from .validate import between, seed as check_seed, whole
from .vi import fit_vi


@dataclass
class VSBCResult:
    """``p``: DataFrame (simulation x parameter) of p_sj = Pr_q(theta_j < theta_j^true); ``table``: one row per
    parameter (mean_p with its standard error, var_p beside 1/12, the symmetry KS test of p vs 1 - p and the
    uniformity KS test of p vs U(0, 1), each with its p-value, and a verdict at level ``alpha``); ``truth``:
    DataFrame of the simulated parameters; ``figure()``: histograms of p per parameter."""

    p: pd.DataFrame
    table: pd.DataFrame
    truth: pd.DataFrame
    alpha: float
    info: dict = field(default_factory=dict)

    def figure(self, bins=10, max_panels=12):
        """Histograms of p_j over the simulations, one panel per parameter (the first ``max_panels``), with the
        count a uniform p would give per bin; each panel titled with the parameter and its verdict."""
        names = list(self.p.columns[:max_panels])
        ncols = min(3, len(names))
        nrows = math.ceil(len(names) / ncols)
        fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows + 0.6), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        edges = np.linspace(0.0, 1.0, bins + 1)
        rows = self.table.set_index("parameter")
        for ax, name in zip(axes, names):
            ax.hist(self.p[name], bins=edges, color="#ff7f0e", edgecolor="white")
            ax.axhline(len(self.p) / bins, color="black", linestyle="--", linewidth=1, label="uniform (calibrated)")
            ax.set_xlim(0, 1)
            ax.set_title(f"{name}: {rows.loc[name, 'verdict']}", fontsize=9)
            ax.set_xlabel("p = Pr_q(θ < θ_true)")
            ax.set_ylabel("simulations")
        for ax in axes[len(names):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=8, loc="upper center")
        fig.suptitle(f"VSBC: {len(self.p)} simulations from the prior, refitted ({self.info.get('method', 'fit')})")
        return fig


def _param_names(site, shape):
    """Scalar parameter names of a site: 'beta' for a scalar, 'beta[0]', 'w[1,2]' for elements."""
    if not shape:
        return [site]
    return [f"{site}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]


def _simulate(problem):
    """One draw of (theta, y) from the prior of ``problem`` (a :class:`vi_toolkit.problem.Problem`), on the
    current random stream: (true latent values {site: array}, arguments with the observed data
    replaced by the simulated data, keyword arguments likewise, the model conditioned on the simulated values of
    observed sites that are not passed as an argument as such, e.g. ``obs=y[idx]``)."""
    trace = poutine.trace(poutine.uncondition(problem.model)).get_trace(*problem.args, **problem.kwargs)
    args, kwargs, unmatched, truth = list(problem.args), dict(problem.kwargs), {}, {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or site["infer"].get("_deterministic"):
            continue
        if not site["infer"].get("was_observed"):
            truth[name] = site["value"].detach().cpu().numpy()
            continue
        obs, value = site["infer"]["obs"], site["value"].detach()
        slots = [i for i, a in enumerate(args) if a is obs] + [k for k, a in kwargs.items() if a is obs]
        for slot in slots:
            if isinstance(slot, int):
                args[slot] = value
            else:
                kwargs[slot] = value
        if not slots:
            unmatched[name] = value
    if not truth:
        raise ConfigError("the model has no latent sample sites to calibrate (every site is observed or deterministic)")
    fitted = poutine.condition(problem.model, data=unmatched) if unmatched else problem.model
    return truth, tuple(args), kwargs, fitted


def _p_values(draws, truth):
    """{parameter: Pr_q(theta_j < theta_j^true)} from the fit's draws {site: (n, *shape)}."""
    out = {}
    for site, true in truth.items():
        if site not in draws:
            raise ConfigError(f"the fit's draws lack latent site {site!r} (they have {sorted(draws)}); "
                              "the fit must return draws of every latent site of the model")
        values = np.asarray(draws[site], dtype=float)
        below = (values < true).mean(axis=0).reshape(-1)
        out.update(zip(_param_names(site, true.shape), below))
    return out


def _calibration_table(p, alpha):
    """Per parameter: mean_p (se), var_p, KS of p vs 1 - p (symmetry) and of p vs U(0, 1), and a verdict."""
    rows = []
    for name in p.columns:
        values = p[name].to_numpy()
        symmetry = stats.ks_2samp(values, 1.0 - values)
        uniform = stats.kstest(values, "uniform")
        symmetric, is_uniform = symmetry.pvalue >= alpha, uniform.pvalue >= alpha
        if symmetric and is_uniform:
            verdict = "calibrated"
        else:
            parts = []
            if not symmetric:
                parts.append("asymmetric: q " + ("too high" if values.mean() < 0.5 else "too low") + " on average")
            if not is_uniform:
                spread = values.var()
                parts.append("p not uniform" + (": q under-dispersed" if spread > 1 / 12 and symmetric
                                                else ": q over-dispersed" if symmetric else ""))
            verdict = "; ".join(parts)
        rows.append({
            "parameter": name, "mean_p": values.mean(), "mean_p_se": values.std(ddof=1) / math.sqrt(len(values)),
            "var_p": values.var(ddof=1), "symmetry_ks": symmetry.statistic, "symmetry_pvalue": symmetry.pvalue,
            "uniform_ks": uniform.statistic, "uniform_pvalue": uniform.pvalue, "symmetric": bool(symmetric),
            "uniform": bool(is_uniform), "verdict": verdict,
        })
    return pd.DataFrame(rows)


def vsbc(model, *args, fit_settings=None, fit=None, n_sims=100, draws=1000, seed=0, alpha=0.01, progress=True,
         **model_kwargs):
    """VSBC of a VI method on ``model``: ``n_sims`` simulations theta ~ p(theta), y ~ p(y | theta), each refitted,
    and per parameter p_j = Pr_q(theta_j < theta_j^true) (the module docstring): a :class:`VSBCResult`.

    ``args``/``model_kwargs``: the model's arguments, with observed data of the shape to simulate (its values are
    not used). Observed sites whose ``obs=`` is an argument itself get the simulated data in that argument; others
    (``obs=y[idx]``) are conditioned on it with ``poutine.condition``.
    ``fit_settings``: settings of :func:`vi_toolkit.fit_vi` (``guide`` among them, default "normal"), the
    default refit; or ``fit``: any callable ``fit(model, *args, seed=..., **model_kwargs)`` returning a posterior
    result (``draws(n, seed)``) or a dict {site: draws (n, *shape)}.
    Simulation, fit and draws of simulation s run on seeds spawned from ``seed``
    (``numpy.random.SeedSequence``); the caller's random streams are left as they were. ``alpha``: the level of
    each test (per parameter); ``progress``: a progress bar over the simulations.
    """
    n_sims, draws, alpha = whole("n_sims", n_sims, 2), whole("draws", draws), between("alpha", alpha, 0.0, 1.0)
    if fit is not None and fit_settings is not None:
        raise ConfigError("give fit_settings (for the default vt.fit_vi refit) or fit (a callable), not both")
    if fit is not None and not callable(fit):
        raise ConfigError(f"fit must be a callable fit(model, *args, seed=...) -> posterior, got {type(fit).__name__}")
    if fit is None:
        settings = dict(fit_settings or {})
        if "seed" in settings or "progress" in settings:
            raise ConfigError("fit_settings must not set seed or progress: vsbc gives each simulation its own seed "
                              "and shows one progress bar (progress=)")
        guide = settings.pop("guide", "normal")

        def fit(model, *args, seed, **kwargs):
            return fit_vi(model, guide, *args, seed=seed, progress=False, **settings, **kwargs)

        method = f"fit_vi, guide {guide!r}" + (f", {settings}" if settings else "")
    else:
        method = getattr(fit, "__name__", type(fit).__name__)
    problem = Problem.of(model, *args, **model_kwargs)  # checks that the model runs on its data
    children = np.random.SeedSequence(check_seed(seed)).spawn(n_sims)
    ps, truths = [], []
    for child in tqdm(children, desc="VSBC simulations", disable=not progress):
        sim_seed, fit_seed, draw_seed = (int(s) for s in child.generate_state(3) % 2**31)
        # simulation and fit on the simulation's own stream and a scratch parameter store: the caller's are
        # untouched, also by a fit callable that draws on the global stream or creates parameters
        with problem.isolated(sim_seed, params={"params": {}, "constraints": {}}):
            truth, sim_args, sim_kwargs, fitted = _simulate(problem)
            result = fit(fitted, *sim_args, seed=fit_seed, **sim_kwargs)
            sample = result.draws(draws, seed=draw_seed) if isinstance(result, Posterior) else result
        ps.append(_p_values(sample, truth))
        truths.append({name: value for site, true in truth.items()
                       for name, value in zip(_param_names(site, true.shape), true.reshape(-1))})
    p = pd.DataFrame(ps)
    return VSBCResult(p=p, table=_calibration_table(p, alpha), truth=pd.DataFrame(truths), alpha=alpha,
                      info={"method": method, "n_sims": n_sims, "draws": draws, "seed": seed})
