"""Posterior draws as ArviZ InferenceData, the one posterior format of the toolkit (VI and MCMC alike).

Every result's ``to_inference_data()`` holds the same groups (see :func:`predictive_groups`):

- ``posterior``: site -> (chain, draw, *site_shape), latent and ``pyro.deterministic`` sites;
- ``log_likelihood``: per observed site, the pointwise log-likelihood log p(y_i | z) of each data point at each
  draw, (chain, draw, *data_shape) (event dimensions summed), what ``az.loo``/``az.waic``/``az.compare`` read;
- ``observed_data``: the observed sites' values, (*data_shape, *event_shape);
- ``posterior_predictive``: one replicate of each observed site per draw, y_rep ~ p(y | z), what
  ``az.plot_ppc`` reads;
- ``sample_stats`` (NUTS): diverging, lp, energy, tree_depth, step_size, acceptance_rate per draw and chain.

Dimensions beyond (chain, draw) are named ``{site}_dim_{i}`` as ArviZ does, so an observed site has the same
dimension names in ``log_likelihood``, ``observed_data`` and ``posterior_predictive``.
"""

import warnings

import arviz as az
import numpy as np
import pyro.poutine as poutine
import torch

from . import traces


def to_numpy(draws):
    """site -> numpy array, from tensors or arrays."""
    return {name: np.asarray(value.detach().cpu() if hasattr(value, "detach") else value) for name, value in draws.items()}


def from_chains(posterior, sample_stats=None, attrs=None, log_likelihood=None, observed_data=None,
                posterior_predictive=None):
    """InferenceData from ``site -> array (chains, draws, *site_shape)`` (and the same for the optional
    ``sample_stats``, ``log_likelihood`` and ``posterior_predictive`` groups; ``observed_data`` without the
    chain and draw dimensions); dims beyond the first two are named ``{site}_dim_{i}`` as ArviZ does."""
    groups = {"log_likelihood": log_likelihood, "observed_data": observed_data,
              "posterior_predictive": posterior_predictive}
    groups = {name: to_numpy(value) for name, value in groups.items() if value}
    idata = az.from_dict(posterior=to_numpy(posterior), sample_stats=sample_stats, **groups)
    if attrs:
        idata.posterior.attrs.update({k: v for k, v in attrs.items() if v is not None})
    return idata


def draws_from_inference_data(idata):
    """site -> array (chains * draws, *site_shape), chains stacked in order."""
    out = {}
    for name, var in idata.posterior.data_vars.items():
        values = var.values
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out


def _observed(trace, conditioned=()):
    """The observed sample sites of a trace, except the latent sites ``conditioned`` on draws and
    ``pyro.deterministic`` sites (functions of the draws, recorded in the posterior group): name -> site."""
    return {name: site for name, site in trace.nodes.items()
            if traces.is_sample(site) and site["is_observed"] and name not in conditioned
            and not site["infer"].get("_deterministic")}


def _pointwise(site, n):
    """(log-likelihood (n, *data_shape), replicate (n, *value_shape)) of an observed site of a trace run on
    ``n`` draws at once (n=1: one draw without a particle dimension)."""
    fn, value = site["fn"], site["value"]
    batch = torch.broadcast_shapes(fn.batch_shape, value.shape[: value.dim() - len(fn.event_shape)])
    if batch != fn.batch_shape:  # data broadcast against a smaller distribution: one replicate per data point
        fn = fn.expand(batch)
    log_lik, replicate = fn.log_prob(value), fn.sample()
    return log_lik, replicate


PREDICTIVE_LIMIT = 2**24  # draws x observed values above which predictive=None leaves the three groups out


def predictive_groups(problem, chains, *, vectorized=None, predictive=None):
    """``log_likelihood``, ``observed_data`` and ``posterior_predictive`` of ``problem`` (its model and data)
    at the draws ``chains`` (site -> array (chains, draws, *shape); its latent sites are used), as keyword
    arguments of :func:`from_chains`. Empty when the model has no observed site, or latent sites that the draws
    lack (assignments summed out by enumeration, say: a likelihood given one sampled value would mislead).

    The model runs conditioned on each draw: where it broadcasts (``problem.broadcasts``, unless ``vectorized``
    says otherwise) all draws at once inside a particle plate, else one draw at a time (a likelihood written with
    ``x @ beta``). Replicates are drawn from the torch random stream in force: run this inside the result's
    ``isolated(seed)`` block.

    ``predictive``: True computes the groups, False leaves them out, None (the default) computes them unless
    draws x observed values exceed :data:`PREDICTIVE_LIMIT` (2^24, e.g. 4000 draws of 4000 data points: a
    VAE's images would take gigabytes), where they are left out; pass ``predictive=True`` to force them."""
    if predictive is False:
        return {}
    try:
        return _predictive_groups(problem, chains, vectorized, predictive)
    except Exception as exc:  # noqa: BLE001 - the user's model; the posterior is still worth returning
        if predictive:
            raise
        warnings.warn(f"log_likelihood and posterior_predictive left out: running the model on the draws failed "
                      f"({type(exc).__name__}: {exc})", RuntimeWarning, stacklevel=3)
        return {}


def _predictive_groups(problem, chains, vectorized, predictive):
    unknown = sorted(set(problem.latent_shapes) - set(chains))
    if unknown:  # e.g. assignments summed out by enumeration: a likelihood given one sampled value would mislead
        if predictive:
            raise ValueError(f"the draws lack latent site(s) {unknown}: the likelihood would depend on them")
        return {}
    latent = {name: np.asarray(chains[name]) for name in problem.latent_shapes}
    first = next(iter(chains.values()))
    n_chains, n_draws = first.shape[:2]
    n = n_chains * n_draws
    model, args, kwargs = problem.model, problem.args, problem.kwargs
    flat = {name: torch.as_tensor(value.reshape((n,) + value.shape[2:])).to(torch.get_default_dtype())
            for name, value in latent.items()}
    with torch.no_grad():
        plain = poutine.trace(poutine.condition(model, data={k: v[0] for k, v in flat.items()})).get_trace(
            *args, **kwargs)
        observed = _observed(plain, flat)
        size = n * sum(site["value"].numel() for site in observed.values())
        if not observed or (predictive is None and size > PREDICTIVE_LIMIT):
            return {}
        data_shapes = {name: tuple(site["fn"].log_prob(site["value"]).shape) for name, site in observed.items()}
        value_shapes = {name: tuple(site["value"].shape) for name, site in observed.items()}
        log_lik, replicate = None, None
        if problem.broadcasts if vectorized is None else vectorized:
            try:
                log_lik, replicate = _vectorized(model, args, kwargs, flat, plain, problem.max_plate_nesting,
                                                 data_shapes, value_shapes, n)
            except Exception:  # noqa: BLE001 - a model that does not broadcast after all: run per draw
                log_lik = None
        if log_lik is None:
            log_lik = {name: [] for name in observed}
            replicate = {name: [] for name in observed}
            for s in range(n):
                trace = poutine.trace(poutine.condition(model, data={k: v[s] for k, v in flat.items()})).get_trace(
                    *args, **kwargs)
                for name, site in _observed(trace, flat).items():
                    lp, rep = _pointwise(site, 1)
                    log_lik[name].append(torch.broadcast_to(lp, data_shapes[name]))
                    replicate[name].append(torch.broadcast_to(rep, value_shapes[name]))
            log_lik = {name: torch.stack(v) for name, v in log_lik.items()}
            replicate = {name: torch.stack(v) for name, v in replicate.items()}

    def shaped(values):
        return {name: v.detach().cpu().numpy().reshape((n_chains, n_draws) + tuple(v.shape[1:]))
                for name, v in values.items()}

    return {
        "log_likelihood": shaped(log_lik),
        "posterior_predictive": shaped(replicate),
        "observed_data": {name: site["value"].detach().cpu().numpy() for name, site in observed.items()},
    }


def _vectorized(model, args, kwargs, flat, plain, mpn, data_shapes, value_shapes, n):
    """All draws at once: each latent value reshaped to (n, 1.., *shape) so that it broadcasts against the
    model's plates inside a particle plate at dim -(mpn+1), as Pyro's Predictive does."""
    data = {}
    for name, value in flat.items():
        site = plain.nodes[name]
        append = mpn - len(site["fn"].batch_shape)
        data[name] = value.reshape((n,) + (1,) * append + tuple(site["value"].shape))
    trace = poutine.trace(poutine.condition(traces.vectorize(model, n, mpn), data=data)).get_trace(*args, **kwargs)
    log_lik, replicate = {}, {}
    for name, site in _observed(trace, flat).items():
        lp, rep = _pointwise(site, n)
        log_lik[name] = _broadcast(lp, n, data_shapes[name])
        replicate[name] = _broadcast(rep, n, value_shapes[name])
    if set(log_lik) != set(data_shapes):
        raise ValueError("the vectorized trace has other observed sites")
    return log_lik, replicate


def _broadcast(value, n, shape):
    """``value`` with a leading particle dimension of ``n`` (possibly followed by singleton plate dimensions) as
    an array (n, *shape)."""
    if value.dim() == 0 or value.shape[0] != n:
        raise ValueError("no particle dimension")
    rest = list(value.shape[1:])
    while len(rest) > len(shape) and rest[0] == 1:
        rest.pop(0)
    if len(rest) > len(shape):
        raise ValueError(f"shape {tuple(value.shape)} does not fit (n, {shape})")
    value = value.reshape([n] + [1] * (len(shape) - len(rest)) + rest)
    return torch.broadcast_to(value, (n,) + tuple(shape)).clone()
