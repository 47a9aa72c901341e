"""``fit_to_draws``: the forward-KL-optimal member of a Gaussian guide family given posterior draws.

For a Gaussian family on the unconstrained space, minimizing the Monte Carlo estimate of KL(p||q) over the
draws z_s ~ p is maximum likelihood: moment matching of the unconstrained draws u_s = T^-1(z_s) (KL is
invariant under the bijection T to each site's support). Mean-field families match each coordinate's mean
and variance, the full-rank family the mean vector and covariance matrix. The result is the reference point
for the forward-KL objectives: what they would reach with unlimited exact posterior draws.
"""

import time

import pyro
import torch
from torch.distributions import transform_to
from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal

from . import traces
from .errors import ConfigError, DataError, UnknownNameError
from .guides import AUTOGUIDES, make_guide
from .log_density import UnconstrainedModel
from .problem import PROBE_PARTICLES, Problem
from .vi_result import VIResult

FAMILIES = {"normal": AutoNormal, "diag": AutoDiagonalNormal, "mvn": AutoMultivariateNormal}


def _guide(guide, model):
    """(guide, name, model) from an autoguide name (with ``model``) or an autoguide instance."""
    if isinstance(guide, str):
        if guide not in FAMILIES:
            raise UnknownNameError(
                f"fit_to_draws fits Gaussian families only; got guide {guide!r}, use one of {sorted(FAMILIES)}"
            )
        if model is None:
            raise ConfigError(
                f"guide {guide!r} is a name: pass the model too, fit_to_draws({guide!r}, draws, model=...)"
            )
        return (*make_guide(guide, model), model)
    name = next((n for n, cls in FAMILIES.items() if type(guide) is cls), None)
    if name is None:
        raise UnknownNameError(
            f"fit_to_draws fits Gaussian families only; got {type(guide).__name__}, use one of "
            f"{[AUTOGUIDES[n].__name__ for n in sorted(FAMILIES)]} or their names {sorted(FAMILIES)}"
        )
    return guide, name, guide.model


def _unconstrained(draws, problem, structure):
    """site -> draws mapped to the unconstrained space, as a float tensor (n, *unconstrained shape); checked:
    DataError for missing sites, wrong shapes, too few draws, and values that are not finite, lie outside
    the site's support, or do not vary (no Gaussian has zero variance)."""
    if not isinstance(draws, dict):
        raise DataError(f"draws must be a dict site -> array (n, *site_shape), got {type(draws).__name__}")
    missing = sorted(set(structure.latent_shapes) - set(draws))
    if missing:
        raise DataError(f"draws lack the model's latent site(s) {missing}; pass draws of every latent site")
    values, sizes = {}, set()
    for name, shape in structure.latent_shapes.items():
        value = torch.as_tensor(draws[name], dtype=torch.get_default_dtype())
        if tuple(value.shape[1:]) != shape or value.shape[0] < 2:
            raise DataError(
                f"draws[{name!r}] must have shape (n, *{shape}) with n >= 2 draws, got {tuple(value.shape)}"
            )
        values[name] = value
        sizes.add(value.shape[0])
    if len(sizes) > 1:
        raise DataError(f"every site needs the same number of draws, got {sorted(sizes)}")
    target = UnconstrainedModel(problem.model, problem.args, problem.kwargs, structure.max_plate_nesting,
                                vectorized=False)
    out = target.unconstrained_sites(values)
    for name, u in out.items():
        if not (u.std(0) > 0).all():
            raise DataError(
                f"draws of site {name!r} do not vary in {int((u.std(0) == 0).sum())} coordinate(s); a Gaussian "
                "family needs draws that vary in every coordinate"
            )
    return out


def _assign(name, value):
    """Set parameter ``name`` to the constrained ``value`` in place, so the guide module sharing it sees it."""
    store = pyro.get_param_store()
    constraint = store.get_state()["constraints"][name]
    with torch.no_grad():
        store[name].unconstrained().copy_(transform_to(constraint).inv(value))


def _set_moments(guide, name, unconstrained):
    """Write the moment-matched parameters into the guide's parameters."""
    prefix = guide._pyro_name
    if name == "normal":
        for site, u in unconstrained.items():
            _assign(f"{prefix}.locs.{site}", u.mean(0))
            _assign(f"{prefix}.scales.{site}", u.std(0, correction=0))
        return
    # AutoContinuous: one flat latent vector, sites in the prototype trace's order
    sites = [site for site, _ in guide.prototype_trace.iter_stochastic_nodes()]
    flat = torch.cat([unconstrained[site].reshape(len(unconstrained[site]), -1) for site in sites], dim=1)
    _assign(f"{prefix}.loc", flat.mean(0))
    if name == "diag":
        _assign(f"{prefix}.scale", flat.std(0, correction=0))
        return
    if flat.shape[0] <= flat.shape[1]:
        raise DataError(
            f"a full-rank fit of {flat.shape[1]} coordinates needs more draws than that, got {flat.shape[0]}"
        )
    cov = torch.cov(flat.T.double(), correction=0).reshape(flat.shape[1], flat.shape[1])
    cholesky, info = torch.linalg.cholesky_ex(cov)
    # a coordinate whose variance given the ones before it is below 1e-6 of its own is a linear combination
    # of them up to rounding: float32 guide parameters cannot hold that covariance
    if info or (cholesky.diagonal() ** 2 < 1e-6 * cov.diagonal()).any():
        raise DataError(
            "the draws' covariance (unconstrained space) is singular: some coordinates are linear combinations "
            "of others in every draw; use guide 'normal' or 'diag', or pass draws that vary jointly"
        )
    cholesky = cholesky.to(flat.dtype)
    scale = torch.diagonal(cholesky)
    _assign(f"{prefix}.scale", scale)
    _assign(f"{prefix}.scale_tril", cholesky / scale[:, None])


def fit_to_draws(guide, draws, *args, model=None, seed=0, **model_kwargs):
    """The member of ``guide``'s Gaussian family closest to the draws in forward KL: argmin_q KL(p_draws||q).

    - ``guide``: ``"normal"``, ``"diag"`` (mean-field) or ``"mvn"`` (full-rank) with ``model=``, or an
      ``AutoNormal`` / ``AutoDiagonalNormal`` / ``AutoMultivariateNormal`` instance.
    - ``draws``: site -> array (n, *site_shape) of posterior draws of every latent site (e.g.
      ``run_mcmc(...).draws()`` or reference draws); ``*args, **model_kwargs``: the model's data. Draws that
      are not finite, lie outside a site's support, or do not vary raise :class:`DataError`.
    - Returns a :class:`VIResult` (no loss history) with ``.draws``, ``.to_inference_data``, ``.elbo``, on its
      own parameters; ``seed`` is the private stream of setting up the guide (the caller's is left as it was).
    """
    start = time.perf_counter()
    guide, name, model = _guide(guide, model)
    problem = Problem.of(model, *args, **model_kwargs)
    model, args, kwargs = problem.model, problem.args, problem.kwargs
    params = {"params": {}, "constraints": {}}
    with problem.isolated(seed, params=params):
        structure = traces.inspect_pair(model, guide, args, kwargs)  # also creates the guide's params
        unconstrained = _unconstrained(draws, problem, structure)
        _set_moments(guide, name, unconstrained)
        vectorized = problem.broadcasts and traces.broadcasts(
            model, guide, args, kwargs, PROBE_PARTICLES, structure.max_plate_nesting
        )
    return VIResult(
        problem=problem,
        guide=guide,
        structure=structure,
        vectorized=vectorized,
        param_state=params,
        losses=[],
        seconds=time.perf_counter() - start,
        info={"objective": "fit-to-draws", "guide": name, "num_draws": len(next(iter(unconstrained.values())))},
    )
