"""``vt.bounds``: the bound sandwich ELBO <= IWAE-k <= log p(x) <= CUBO_2 at a fitted guide, with AIS.

This module's one job is the API: resolve what was passed (a :class:`~vi_toolkit.VIResult`, or a model and
a guide with data), check the settings, gather one pool of importance log-weights
(:mod:`vi_toolkit.log_weights`), and hand it to the estimators (:mod:`vi_toolkit.estimators`) and, for
log p(x) where no exact value is given, to annealed importance sampling (:mod:`vi_toolkit.ais` on
:mod:`vi_toolkit.log_density`). Where every latent (and observed) site sits in one data plate, the model has
only local latents and the bounds are *per data point*: log-weights (S, N), IWAE-k and CUBO_2 from k draws per
point, summed over points (the VAE convention). Otherwise they are *joint*: one weight per draw of the whole
latent vector. Models that do not broadcast over a particle dimension (``x @ beta``, a Python loop over the
data) are run one particle at a time. Everything runs on private random streams: the caller's are untouched.

The estimators, AIS and the unconstrained model are importable from here too (their earlier home).
"""

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import traces
from .ais import AIS, ais_log_evidence  # noqa: F401 - re-exported
from .errors import ConfigError
from .estimators import Estimate, cubo, elbo, iwae, log_mean_exp  # noqa: F401 - re-exported
from .log_density import UnconstrainedModel  # noqa: F401 - re-exported
from .log_weights import local_plate, log_weights
from .problem import Problem
from .validate import finite, whole

MAX_DRAWS = 10**7  # max(k) * batches: importance draws of one call
MAX_ENTRIES = 5 * 10**7  # draws * data points of a per-point pool: 400 MB as float64
BROADCAST_PROBE = 7  # particles of the check that a model/guide pair broadcasts (not a likely data size)

__all__ = ["AIS", "Bounds", "Estimate", "UnconstrainedModel", "ais_log_evidence", "bounds", "cubo", "elbo", "iwae",
           "log_mean_exp"]


@dataclass(frozen=True)
class Bounds:
    """The bound sandwich at one fitted guide. ``log_evidence``: exact (a float) or None; ``ais``: an
    :class:`Estimate` or None; ``iwae``: k -> Estimate. ``gap`` = log p(x) - ELBO = KL(q||p) (exact log p(x)
    where given, else AIS)."""

    elbo: Estimate
    iwae: dict
    cubo: Estimate
    ais: Estimate = None
    log_evidence: float = None
    num_weights: int = 0
    per: str = "joint"

    @property
    def gap(self):
        """KL(q||p) = log p(x) - ELBO, with the ELBO's standard error (and AIS's where it stands in)."""
        if self.log_evidence is not None:
            return Estimate(self.log_evidence - self.elbo.value, self.elbo.se)
        if self.ais is not None:
            return Estimate(self.ais.value - self.elbo.value, math.hypot(self.ais.se, self.elbo.se))
        return None

    def table(self):
        """One row per bound: bound, k, value, se, in the order of the sandwich."""
        rows = [{"bound": "ELBO", "k": 1, "value": self.elbo.value, "se": self.elbo.se}]
        rows += [{"bound": f"IWAE-{k}", "k": k, "value": e.value, "se": e.se} for k, e in self.iwae.items()]
        if self.log_evidence is not None:
            rows.append({"bound": "log p(x) exact", "k": None, "value": self.log_evidence, "se": 0.0})
        if self.ais is not None:
            rows.append({"bound": "log p(x) AIS", "k": None, "value": self.ais.value, "se": self.ais.se})
        rows.append({"bound": "CUBO_2", "k": None, "value": self.cubo.value, "se": self.cubo.se})
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class _Fitted:
    """A guide with its parameters and the problem it approximates; ``structure`` and ``vectorized`` None
    until inspected."""

    problem: Problem
    guide: object
    scope: object  # () -> context in which the guide sees its parameters
    structure: traces.Structure = None
    vectorized: bool = None

    @contextlib.contextmanager
    def isolated(self, seed):
        """The problem's isolation (thread count, private stream from ``seed``) with the guide's parameters."""
        with self.problem.isolated(seed), self.scope():
            yield


def _resolve(model, guide, args, kwargs):
    """The fitted guide that ``bounds`` was called with, as a :class:`_Fitted`."""
    from .vi_result import VIResult

    if isinstance(model, VIResult):
        if guide is not None or args or kwargs:
            raise ConfigError("bounds(result) uses the fit's own model and data: pass no guide or data with it")
        model, guide = model.model, model
    if isinstance(guide, VIResult):
        if not args and not kwargs:  # the fit's own data: what the fit found out about the pair holds
            return _Fitted(guide.problem, guide.guide, guide.scope, guide.structure, guide.vectorized)
        return _Fitted(Problem.of(model, *args, **kwargs), guide.guide, guide.scope)
    if callable(guide):
        return _Fitted(Problem.of(model, *args, **kwargs), guide, contextlib.nullcontext)  # the current param store
    raise ConfigError(
        "bounds needs a fitted guide: a VIResult, or a guide callable whose parameters are in the param store; "
        f"got {type(guide).__name__}"
    )


def _check_k(k, batches):
    whole_k = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1  # noqa: E731
    if not (isinstance(k, (tuple, list, range)) and len(k) and all(map(whole_k, k))):
        raise ConfigError(f"k must be a non-empty sequence of positive whole numbers, got {k!r}")
    k = tuple(int(v) for v in k)
    if max(k) * batches > MAX_DRAWS:
        raise ConfigError(
            f"max(k) * batches = {max(k)} * {batches} = {max(k) * batches} importance draws exceeds the limit of "
            f"{MAX_DRAWS:.0e}; lower the largest k or batches"
        )
    return tuple(sorted(set(k)))


def _check_log_evidence(value):
    """The exact log evidence as a float (a number or a one-element tensor or array), or None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"log_evidence must be a finite number or None, got {value!r}") from None
    return finite("log_evidence", value)


def _ais_settings(ais, log_evidence):
    """The AIS settings to run with, or None: ``ais`` None runs AIS where no exact log evidence is given."""
    if isinstance(ais, AIS):
        return ais
    if ais is None:
        return AIS() if log_evidence is None else None
    if isinstance(ais, bool):
        return AIS() if ais else None
    raise ConfigError(f"ais must be None, True, False or a vt.AIS, got {type(ais).__name__}")


def bounds(model, guide=None, *args, k=(1, 10, 100, 1000), log_evidence=None, seed=0, batches=100, ais=None,
           per_point=True, progress=True, **model_kwargs):
    """The ELBO, IWAE-k for each k, CUBO_2, and log p(x) (exact if ``log_evidence`` is given, else by AIS),
    from one pool of ``max(k) * batches`` importance weights of the fitted guide.

    Call as ``bounds(result)`` with a :class:`~vi_toolkit.VIResult`, or ``bounds(model, guide, *args)`` with a
    VIResult or a guide callable whose parameters are in the param store. ``ais``: None runs AIS only where
    ``log_evidence`` is None; True or an :class:`AIS` runs it always (with those settings); False never.
    ``per_point``: per-data-point bounds where the model has only local latents (see the module docstring;
    ``Bounds.per`` says which was used); False forces joint bounds. ``progress``: a progress bar over AIS's
    temperatures. ``seed``: the private stream of the
    weights (AIS has its own, ``AIS.seed``). At most :data:`MAX_DRAWS` draws and :data:`MAX_ENTRIES`
    per-point log-weights. A model whose sites do not broadcast over vectorized particles (e.g. ``X @ beta``)
    is traced once per weight: lower ``k`` or ``batches`` for it.
    """
    batches = whole("batches", batches, 2)
    k = _check_k(k, batches)
    log_evidence = _check_log_evidence(log_evidence)
    draws = max(k) * batches
    settings = _ais_settings(ais, log_evidence)
    fitted = _resolve(model, guide, args, model_kwargs)
    problem, guide = fitted.problem, fitted.guide
    model, args, kwargs = problem.model, problem.args, problem.kwargs
    with fitted.isolated(0):  # inspection on its own stream: the weights start from ``seed`` whatever it drew
        if fitted.structure is None:
            structure = traces.inspect_pair(model, guide, args, kwargs)
            vectorized = problem.broadcasts and traces.broadcasts(
                model, guide, args, kwargs, BROADCAST_PROBE, structure.max_plate_nesting
            )
        else:
            structure, vectorized = fitted.structure, fitted.vectorized
        plate = local_plate(*traces.trace_pair(model, guide, args, kwargs)) if per_point else None
    mpn = structure.max_plate_nesting
    if plate is not None and draws * plate[2] > MAX_ENTRIES:
        raise ConfigError(
            f"per-data-point bounds from {draws} draws of {plate[2]} points hold {draws * plate[2]} log-weights, "
            f"over the limit of {MAX_ENTRIES:.0e}; lower the largest k or batches, or pass per_point=False"
        )
    with fitted.isolated(seed):
        log_w = log_weights(model, guide, args, kwargs, draws, mpn, vectorized=vectorized,
                            plate_dim=None if plate is None else plate[1])
        if settings is not None and settings.start == "guide":
            start = traces.posterior_draws(model, guide, args, kwargs, structure, settings.draws, vectorized=vectorized)
    ais_estimate = None
    if settings is not None:
        target = UnconstrainedModel(model, args, kwargs, mpn, vectorized=problem.broadcasts)
        if settings.start == "guide":
            start_u = target.unconstrained(start)
        else:
            with problem.isolated(settings.seed):
                start_u = target.prior_draws(settings.draws)
        ais_estimate = ais_log_evidence(target, start_u, settings, threads=problem.threads, progress=progress)
    return Bounds(
        elbo=elbo(log_w),
        iwae={kk: iwae(log_w, kk) for kk in k},
        cubo=cubo(log_w),
        ais=ais_estimate,
        log_evidence=log_evidence,
        num_weights=len(log_w),
        per="joint" if plate is None else f"data point (plate {plate[0]!r}, {log_w.shape[1]} points)",
    )
