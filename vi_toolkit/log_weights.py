"""Log densities of particles: the one place where traces become log p(x, z) - log q(z).

This module's one job: run a model (replayed against guide draws, or conditioned on given latent values) on
a set of particles and reduce each sample site's log-probability to one number per particle (joint: a
tensor (S,)) or one per particle and data point along a plate (per point: (S, N)). Particles run
*vectorized* (one trace inside an outer particle plate, for pairs whose every site broadcasts over it) or
one at a time (a likelihood written with ``x @ beta``, a Python loop over the data): batched by
``torch.func.vmap`` where that gives what a loop gives, else in a Python loop
(:func:`vi_toolkit.traces.over_particles`). The guide of such a model still runs vectorized if it broadcasts.

- :func:`log_weights`: importance log-weights log p(x, z_s) - log q(z_s), z_s ~ q (as Pyro's
  ``infer/importance.py``); what every bound, ``VIResult.log_weights`` and PSIS use.
- :func:`log_joint`: log p(z) and log p(x | z) of the model at given latent values, differentiable in them
  (the target of AIS, :mod:`vi_toolkit.log_density`).
- :func:`site_log_prob`: the reduction of one site's log-probability that both use.
"""

import pyro.poutine as poutine
import torch
from pyro.distributions.util import scale_and_mask

from . import traces


def site_log_prob(log_prob, particle_dim=None, plate_dim=None):
    """A site's log-probability summed over every dimension but ``particle_dim`` and ``plate_dim`` (negative
    dims; None: not kept), which stay in that order, of size 1 where the site does not carry them."""
    keep = [dim for dim in (particle_dim, plate_dim) if dim is not None]
    depth = max((-dim for dim in keep), default=0)
    if log_prob.dim() < depth:
        log_prob = log_prob.reshape((1,) * (depth - log_prob.dim()) + tuple(log_prob.shape))
    kept = {log_prob.dim() + dim for dim in keep}
    others = [dim for dim in range(log_prob.dim()) if dim not in kept]
    return log_prob.sum(others) if others else log_prob  # (sum over an empty list of dims would sum all)


def trace_log_prob(trace, particle_dim=None, plate_dim=None, select=None, scaled=True):
    """The sum of :func:`site_log_prob` over the trace's sample sites (those ``select(name)`` accepts);
    ``scaled=False`` leaves out each site's scale (a subsample's N / B), keeping its mask: the log densities of
    the points themselves."""
    trace.compute_log_prob()
    total = torch.zeros(())
    for name, site in trace.nodes.items():
        if traces.is_sample(site) and (select is None or select(name)):
            log_prob = site["log_prob"] if scaled else scale_and_mask(site["unscaled_log_prob"], mask=site["mask"])
            total = total + site_log_prob(log_prob, particle_dim, plate_dim)
    return total


def _per_particle(value, n, vectorized):
    """A vectorized result (size 1 or n in its first dim) as n rows; a looped one (one particle) as one row."""
    return torch.broadcast_to(value, (n,) + tuple(value.shape[1:])) if vectorized else value.unsqueeze(0)


def _model_terms(model, args, kwargs, latent, fixed=None, plate_dim=None):
    """fn(one particle's latent values) -> (log p(z), log p(x | z)) of the model conditioned on them (and on
    the plate indices ``fixed``), each () or per point (N,): the per-particle function of
    :func:`vi_toolkit.traces.over_particles`."""
    fixed = fixed or {}

    def terms(values):
        trace = poutine.trace(poutine.condition(model, data={**values, **fixed})).get_trace(*args, **kwargs)
        return (trace_log_prob(trace, None, plate_dim, latent.__contains__),
                trace_log_prob(trace, None, plate_dim, lambda name: name not in latent))

    return terms


def log_joint(model, args, kwargs, values, max_plate_nesting, *, vectorized=True, vmap=None):
    """(log p(z), log p(x | z)) of ``model`` at latent values ``values`` (site -> tensor with a leading dim of
    P particles: the vectorized trace's shape where ``vectorized``, else one draw's shape), each of shape
    (P,) and differentiable in the values. log p(z) sums the sites in ``values``, log p(x | z) all others.
    Not ``vectorized``: one particle at a time, batched by ``torch.func.vmap`` (``vmap`` True, or None where
    :func:`log_joint_vmappable`) or in a loop."""
    count = len(next(iter(values.values())))
    if not vectorized:
        return traces.over_particles(_model_terms(model, args, kwargs, set(values)), values, vmap=vmap)
    run = poutine.condition(traces.vectorize(model, count, max_plate_nesting), data=values)
    trace = poutine.trace(run).get_trace(*args, **kwargs)
    particle_dim = -(max_plate_nesting + 1)
    return tuple(
        _per_particle(trace_log_prob(trace, particle_dim, select=select), count, True)
        for select in (values.__contains__, lambda name: name not in values)
    )


def log_joint_vmappable(model, args, kwargs, values):
    """Whether :func:`log_joint` of a model that does not broadcast can run batched by ``torch.func.vmap``."""
    return traces.vmappable(_model_terms(model, args, kwargs, set(values)), values)


@torch.no_grad()
def log_weights(model, guide, args, kwargs, num_samples, max_plate_nesting, *, vectorized=True, plate_dim=None,
                chunk=1000, latent_shapes=None):
    """Importance log-weights log w_s = log p(x, z_s) - log q(z_s), z_s ~ q: a tensor (num_samples,), or with
    ``plate_dim`` (the dim of a plate that holds every sample site) per data point, (num_samples, N), whose
    row sums are the joint log-weights.

    ``vectorized``: the pair broadcasts over a particle plate; guide and model run in chunks of ``chunk``
    particles. Otherwise the guide still runs vectorized if it broadcasts, and the model is run on each draw
    (batched by ``torch.func.vmap`` where that is exact, else in a loop); a guide that does not broadcast
    either runs once per draw with the model replayed against it. ``latent_shapes``: the model's latent
    sites and their shapes (read off one trace of the pair when not given)."""
    if vectorized:
        particle_dim = -(max_plate_nesting + 1)
        out = []
        for n in traces.chunks(num_samples, chunk):
            model_trace, guide_trace = traces.vectorized_pair(model, guide, args, kwargs, n, max_plate_nesting)
            log_p = trace_log_prob(model_trace, particle_dim, plate_dim)
            out.append(_per_particle(log_p - trace_log_prob(guide_trace, particle_dim, plate_dim), n, True))
        return torch.cat(out)
    if latent_shapes is None:
        model_trace, guide_trace = traces.trace_pair(model, guide, args, kwargs)
        latent_shapes = {n: tuple(s["value"].shape) for n, s in model_trace.nodes.items()
                         if traces.is_latent(s) and n in guide_trace.nodes}
    draws, runs = traces.site_draws(guide, args, kwargs, latent_shapes, num_samples, max_plate_nesting, chunk=chunk)
    out, start, vmap = [], 0, None
    for n, guide_trace, run_vectorized in runs:
        if run_vectorized:  # the guide broadcasts, the model does not: run the model on each draw
            latent = {site: draws[site][start : start + n] for site in latent_shapes}
            terms = _model_terms(model, args, kwargs, set(latent), traces.subsample_indices(guide_trace), plate_dim)
            vmap = traces.vmappable(terms, latent) if vmap is None else vmap  # decided on the first chunk
            prior, likelihood = traces.over_particles(terms, latent, vmap=vmap)
            log_q = trace_log_prob(guide_trace, -(max_plate_nesting + 1), plate_dim)
            out.append(prior + likelihood - _per_particle(log_q, n, True))
        else:  # one draw of the guide, the model replayed against it
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
            log_p = trace_log_prob(model_trace, None, plate_dim)
            out.append((log_p - trace_log_prob(guide_trace, None, plate_dim)).unsqueeze(0))
        start += n
    return torch.cat(out)


def local_plate(model_trace, guide_trace):
    """(name, dim, size) of the innermost vectorized plate that holds every sample site of both traces (a
    model with only local latents: per-data-point log-weights along it), or None (global latents). A plate
    of vectorized particles does not count."""
    common = None
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if traces.is_sample(site):
                frames = {(f.name, f.dim, f.size) for f in site["cond_indep_stack"]
                          if f.vectorized and f.dim is not None and f.name != traces.PARTICLE_PLATE}
                common = frames if common is None else common & frames
    return max(common, key=lambda frame: frame[1]) if common else None
