"""Tracing helpers shared by the engine, results and bounds: site discovery, vectorized particles, draws of
sites. (Log-probabilities of traces are reduced to log-weights in :mod:`vi_toolkit.log_weights`.)"""

import math
import warnings
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.subsample_messenger import _Subsample as Subsample

from .errors import ModelGuideError, VIToolkitError

PARTICLE_PLATE = "_vt_particles"


@dataclass(frozen=True)
class Structure:
    """What one trace of a model/guide pair shows: its latent sites, their shapes and its plate nesting."""

    latent_shapes: dict  # model latent site -> value shape of one draw
    max_plate_nesting: int
    deterministic_shapes: dict  # model pyro.deterministic site -> value shape of one draw


def plate_nesting(trace):
    """The number of vectorized plate dimensions the trace uses (Pyro's max_plate_nesting)."""
    dims = [
        -frame.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized and frame.dim is not None
    ]
    return max(dims, default=0)


def is_sample(site):
    """A real sample site: not a plate's subsample site."""
    return site["type"] == "sample" and not isinstance(site["fn"], Subsample)


def is_latent(site):
    return is_sample(site) and not site["is_observed"] and not site["infer"].get("is_auxiliary")


def trace_pair(model, guide, args, kwargs):
    """One guide trace and the model trace replayed against it, both with log-probabilities."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def inspect_pair(model, guide, args, kwargs, *, enumerated_ok=False):
    """Trace the pair once and check that it fits together: every model latent has a guide site and no
    guide sample site is missing from the model. With ``enumerated_ok``, model sites marked for enumeration
    may be absent from the guide (they are summed out). Raises :class:`ModelGuideError` or :class:`DataError`."""
    try:
        model_trace, guide_trace = trace_pair(model, guide, args, kwargs)
    except VIToolkitError:
        raise  # the pair's own typed error (bad data, say) says more than a wrapper would
    except (ValueError, RuntimeError, TypeError, IndexError, KeyError, NotImplementedError) as exc:
        raise ModelGuideError(
            f"running the model and guide once failed: {type(exc).__name__}: {exc}. "
            "Check that they take the same arguments and that the data has the shape the model expects"
        ) from exc
    from .problem import check_observed  # (problem.py builds on this module)

    check_observed(model_trace)
    latent = {
        n
        for n, s in model_trace.nodes.items()
        if is_latent(s) and not (enumerated_ok and s["infer"].get("enumerate") and n not in guide_trace)
    }
    guide_sites = {
        n
        for n, s in guide_trace.nodes.items()
        if is_sample(s) and not s["infer"].get("is_auxiliary")
    }
    missing = sorted(latent - guide_sites)
    if missing:
        raise ModelGuideError(
            f"the guide has no sample site for the model's latent site(s) {missing}; "
            "add them to the guide (or use an autoguide such as guide='normal')"
        )
    model_sites = {n for n, s in model_trace.nodes.items() if is_sample(s)}
    extra = sorted(guide_sites - model_sites)
    if extra:
        raise ModelGuideError(
            f"the guide samples site(s) {extra} that the model does not have; rename them to the model's "
            "site names, or mark them infer={'is_auxiliary': True}"
        )
    shapes = {n: tuple(model_trace.nodes[n]["value"].shape) for n in model_trace.nodes if n in latent}
    deterministic = {
        n: tuple(s["value"].shape) for n, s in model_trace.nodes.items() if s.get("infer", {}).get("_deterministic")
    }
    return Structure(shapes, max(plate_nesting(model_trace), plate_nesting(guide_trace)), deterministic)


def vectorize(fn, num_particles, max_plate_nesting):
    """``fn`` run inside an outermost plate of ``num_particles`` particles, at dim -(max_plate_nesting+1)."""

    def wrapped(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1)):
            return fn(*args, **kwargs)

    return wrapped


def vectorized_pair(model, guide, args, kwargs, num_particles, max_plate_nesting):
    """One trace of ``guide`` with ``num_particles`` vectorized particles and the model replayed against it."""
    guide_trace = poutine.trace(vectorize(guide, num_particles, max_plate_nesting)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(
        poutine.replay(vectorize(model, num_particles, max_plate_nesting), trace=guide_trace)
    ).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def broadcasts(model, guide, args, kwargs, num_particles, max_plate_nesting):
    """True when the pair runs with vectorized particles and every model site carries the particle dim.

    A site whose log-probability lacks the particle dimension (e.g. a likelihood built with ``x @ beta``)
    would be silently down-weighted by a vectorized ELBO; such pairs fall back to a loop over particles.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model_trace, guide_trace = vectorized_pair(model, guide, args, kwargs, num_particles, max_plate_nesting)
            model_trace.compute_log_prob()
            guide_trace.compute_log_prob()
    except (ValueError, RuntimeError, IndexError, TypeError, NotImplementedError):
        return False
    return carries_particles(model_trace, num_particles, max_plate_nesting)


def carries_particles(trace, num_particles, max_plate_nesting):
    """Whether every sample site's log-probability in ``trace`` (computed) has the particle dimension."""
    dim = max_plate_nesting + 1
    for site in trace.nodes.values():
        if is_sample(site):
            lp = site["log_prob"]
            if lp.dim() < dim or lp.shape[-dim] != num_particles:
                return False
    return True


def chunks(total, size):
    """Sizes of consecutive chunks of at most ``size`` that add up to ``total``."""
    for start in range(0, total, size):
        yield min(size, total - start)


def per_draw(value, n, shape):
    """``value`` from a trace of ``n`` particles as a tensor (n, *shape), or None where it does not hold one
    value per particle (a value that lacks the particle dimension)."""
    value = torch.as_tensor(value)
    if value.dim() == 0 or value.shape[0] != n or value.numel() != n * math.prod(shape):
        return None if n > 1 or value.numel() != math.prod(shape) else value.reshape((1,) + shape)
    return value.reshape((n,) + shape)


def subsample_indices(trace):
    """The plate indices drawn in ``trace`` (subsample site -> indices): what a rerun must reuse to see the
    same mini-batch."""
    return {name: site["value"] for name, site in trace.nodes.items()
            if site["type"] == "sample" and isinstance(site["fn"], Subsample)}


def subsampled(trace):
    """Whether a plate of ``trace`` draws a mini-batch: a subsample smaller than the plate."""
    return any(site["type"] == "sample" and isinstance(site["fn"], Subsample)
               and site["fn"].subsample_size is not None and site["fn"].subsample_size < site["fn"].size
               for site in trace.nodes.values())


def _stack(outputs):
    """Per-particle outputs (tensors, or tuples or dicts of them) stacked along a new first dimension."""
    first = outputs[0]
    if isinstance(first, dict):
        return {key: torch.stack([out[key] for out in outputs]) for key in first}
    if isinstance(first, tuple):
        return tuple(torch.stack(parts) for parts in zip(*outputs))
    return torch.stack(outputs)


def _looped(fn, values):
    count = len(next(iter(values.values())))
    return _stack([fn({name: value[i] for name, value in values.items()}) for i in range(count)])


def _vmapped(fn, values):
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vmap's notes on operators that it runs one sample at a time
        return torch.func.vmap(fn, randomness="error")(values)


def vmappable(fn, values):
    """Whether ``torch.func.vmap`` runs ``fn`` over the particles of ``values`` and gives what a loop gives
    (checked on the first two particles). It does for most models written for one draw; a model that reads
    a tensor's value in Python (``if x > 0``, ``.item()``) or samples an unconditioned site does not."""
    head = {name: value[:2] for name, value in values.items()}
    try:
        batched, looped = _vmapped(fn, head), _looped(fn, head)
    except Exception:  # noqa: BLE001 - any failure under vmap means: loop
        return False
    pairs = [(batched[k], looped[k]) for k in looped] if isinstance(looped, dict) else (
        list(zip(batched, looped)) if isinstance(looped, tuple) else [(batched, looped)])
    return all(a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True) for a, b in pairs)


def over_particles(fn, values, *, vmap=None):
    """``fn`` (a function of one particle's values, site -> tensor, returning tensors or a tuple or dict of
    them) on every particle of ``values`` (site -> tensor (P, ...)), stacked along a new first dimension:
    batched by ``torch.func.vmap`` (``vmap=True``), in a Python loop (False), or by vmap where
    :func:`vmappable` says it is exact (None)."""
    if vmap is None:
        vmap = vmappable(fn, values)
    return _vmapped(fn, values) if vmap else _looped(fn, values)


def holds_particles(trace, n, max_plate_nesting, shapes):
    """Whether a trace of ``n`` vectorized particles holds one value of each site in ``shapes`` per particle
    and a log-probability with the particle dimension at every sample site."""
    if any(per_draw(trace.nodes[name]["value"], n, shape) is None for name, shape in shapes.items()):
        return False
    try:
        trace.compute_log_prob()
    except (ValueError, RuntimeError, IndexError, TypeError, NotImplementedError):
        return False
    return carries_particles(trace, n, max_plate_nesting)


@torch.no_grad()
def site_draws(fn, args, kwargs, shapes, num_samples, max_plate_nesting, *, vectorized=None, chunk=1000):
    """Values of the sites ``shapes`` (site -> shape of one draw) in ``num_samples`` runs of ``fn``: in
    vectorized chunks of ``chunk`` particles (``vectorized=True``), one run per draw (False), or vectorized
    where a first chunk shows that ``fn`` broadcasts over particles (None). Returns (site -> tensor
    (num_samples, *shape), the runs as (particles, trace, vectorized))."""
    runs = []
    if vectorized is not False and num_samples > 0:
        n = min(chunk, num_samples)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trace = poutine.trace(vectorize(fn, n, max_plate_nesting)).get_trace(*args, **kwargs)
            works = vectorized or holds_particles(trace, n, max_plate_nesting, shapes)
        except Exception:  # noqa: BLE001 - a function that fails in a particle plate runs once per draw
            if vectorized:
                raise
            works = False
        if works:
            runs.append((n, trace, True))
            for n in chunks(num_samples - n, chunk):
                runs.append((n, poutine.trace(vectorize(fn, n, max_plate_nesting)).get_trace(*args, **kwargs), True))
    if not runs:
        runs = [(1, poutine.trace(fn).get_trace(*args, **kwargs), False) for _ in range(num_samples)]
    parts = {name: [] for name in shapes}
    for n, trace, _ in runs:
        for name, shape in shapes.items():
            value = per_draw(trace.nodes[name]["value"], n, shape)
            if value is None:
                raise ModelGuideError(
                    f"site {name!r} does not broadcast over vectorized particles (its value has shape "
                    f"{tuple(trace.nodes[name]['value'].shape)} for {n} particles of shape {shape})"
                )
            parts[name].append(value)
    return {name: torch.cat(values) for name, values in parts.items()}, runs


def _deterministic_values(model, args, kwargs, names, fixed):
    """fn(one particle's latent values) -> the model's deterministic sites ``names`` there (plate indices
    ``fixed``), for :func:`over_particles`."""

    def values(latent):
        trace = poutine.trace(poutine.condition(model, data={**latent, **fixed})).get_trace(*args, **kwargs)
        return {name: torch.as_tensor(trace.nodes[name]["value"]) for name in names}

    return values


@torch.no_grad()
def posterior_draws(model, guide, args, kwargs, structure, num_samples, *, vectorized=True, chunk=1000):
    """Draws from the guide of the model's latent sites, and of its ``pyro.deterministic`` sites (the model
    run on each draw): site -> tensor of shape (num_samples, *site_shape).

    ``vectorized``: the pair broadcasts over a particle plate. Where it does not, the guide still runs
    vectorized if it broadcasts, and the model's deterministic sites are computed per draw (by
    ``torch.func.vmap`` where exact, else in a loop). So is a deterministic value that lacks the particle
    dimension in a vectorized trace (a constant, or a reduction such as ``beta.sum()`` over all particles)."""
    mpn = structure.max_plate_nesting
    draws, runs = site_draws(guide, args, kwargs, structure.latent_shapes, num_samples, mpn,
                             vectorized=True if vectorized else None, chunk=chunk)
    shapes = structure.deterministic_shapes
    if not shapes:
        return draws
    parts, start, vmap = {name: [] for name in shapes}, 0, None
    for n, guide_trace, run_vectorized in runs:
        latent = {site: draws[site][start : start + n] for site in structure.latent_shapes}
        start += n
        values = {}
        if vectorized or not run_vectorized:  # the model runs as the guide ran: replayed against its trace
            run_model = vectorize(model, n, mpn) if run_vectorized else model
            model_trace = poutine.trace(poutine.replay(run_model, trace=guide_trace)).get_trace(*args, **kwargs)
            values = {name: per_draw(model_trace.nodes[name]["value"], n, shape) for name, shape in shapes.items()}
        missing = [name for name in shapes if values.get(name) is None]
        if missing:
            fn = _deterministic_values(model, args, kwargs, missing, subsample_indices(guide_trace))
            vmap = vmappable(fn, latent) if vmap is None else vmap  # decided on the first chunk
            values.update(over_particles(fn, latent, vmap=vmap))
        for name, shape in shapes.items():
            parts[name].append(values[name].reshape((n,) + shape))
    return {**draws, **{name: torch.cat(values) for name, values in parts.items()}}


def nonfinite_sites(model, guide, args, kwargs):
    """Names of sample sites whose value or log-probability is NaN/inf in one trace of the pair."""
    bad = []
    try:
        model_trace, guide_trace = trace_pair(model, guide, args, kwargs)
    except (ValueError, RuntimeError) as exc:
        return [f"(tracing failed: {exc})"]
    for label, trace in (("model", model_trace), ("guide", guide_trace)):
        for name, site in trace.nodes.items():
            if not is_sample(site):
                continue
            value = site["value"]
            try:
                log_prob = site["fn"].log_prob(value)
            except (ValueError, RuntimeError):
                log_prob = torch.tensor(float("nan"))
            if (torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()) or (
                not torch.isfinite(log_prob).all()
            ):
                bad.append(f"{label}:{name}")
    return bad
