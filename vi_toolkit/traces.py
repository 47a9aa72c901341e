"""Tracing helpers shared by the engine, results and bounds: site discovery, vectorized particles, log weights."""

import warnings
from dataclasses import dataclass

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.subsample_messenger import _Subsample as Subsample

from .errors import DataError, ModelGuideError, VIToolkitError

PARTICLE_PLATE = "_vt_particles"


@dataclass(frozen=True)
class Structure:
    """What one trace of a model/guide pair shows: its latent sites, their shapes and its plate nesting."""

    latent_shapes: dict  # model latent site -> value shape of one draw
    max_plate_nesting: int
    deterministic_shapes: dict  # model pyro.deterministic site -> value shape of one draw


def _plate_nesting(trace):
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
    for name, site in model_trace.nodes.items():
        if is_sample(site) and site["is_observed"]:
            value = torch.as_tensor(site["value"])
            if value.is_floating_point() and not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(
                    f"observed site {name!r} holds {bad} NaN or infinite value(s); "
                    "remove or impute them before fitting"
                )
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
    return Structure(shapes, max(_plate_nesting(model_trace), _plate_nesting(guide_trace)), deterministic)


def vectorize(fn, num_particles, max_plate_nesting):
    """``fn`` run inside an outermost plate of ``num_particles`` particles, at dim -(max_plate_nesting+1)."""

    def wrapped(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, num_particles, dim=-(max_plate_nesting + 1)):
            return fn(*args, **kwargs)

    return wrapped


def particle_sum(log_prob, num_particles, max_plate_nesting):
    """Sum a site's log-probability over everything but the particle dimension -> shape (num_particles,)."""
    dim = max_plate_nesting + 1
    if log_prob.dim() < dim or log_prob.shape[-dim] == 1:
        return log_prob.sum().expand(num_particles)
    return log_prob.reshape(log_prob.shape[: log_prob.dim() - dim + 1] + (-1,)).sum(-1).reshape(num_particles)


def _vectorized_log_weights(model, guide, args, kwargs, n, mpn):
    guide_trace = poutine.trace(vectorize(guide, n, mpn)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(
        poutine.replay(vectorize(model, n, mpn), trace=guide_trace)
    ).get_trace(*args, **kwargs)
    log_w = torch.zeros(n)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if is_sample(site):
                log_w = log_w + sign * particle_sum(site["log_prob"], n, mpn)
    return log_w, model_trace, guide_trace


def broadcasts(model, guide, args, kwargs, num_particles, max_plate_nesting):
    """True when the pair runs with vectorized particles and every model site carries the particle dim.

    A site whose log-probability lacks the particle dimension (e.g. a likelihood built with ``x @ beta``)
    would be silently down-weighted by a vectorized ELBO; such pairs fall back to a loop over particles.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, model_trace, _ = _vectorized_log_weights(
                model, guide, args, kwargs, num_particles, max_plate_nesting
            )
    except (ValueError, RuntimeError, IndexError, TypeError, NotImplementedError):
        return False
    dim = max_plate_nesting + 1
    for site in model_trace.nodes.values():
        if is_sample(site):
            lp = site["log_prob"]
            if lp.dim() < dim or lp.shape[-dim] != num_particles:
                return False
    return True


@torch.no_grad()
def log_weights(model, guide, args, kwargs, num_samples, max_plate_nesting, *, vectorized=True, chunk=1000):
    """Importance log-weights log w_s = log p(x, z_s) - log q(z_s), z_s ~ q, as a tensor of shape (num_samples,)."""
    out = []
    remaining = num_samples
    while remaining > 0:
        n = min(chunk, remaining)
        if vectorized:
            out.append(_vectorized_log_weights(model, guide, args, kwargs, n, max_plate_nesting)[0])
        else:
            for _ in range(n):
                model_trace, guide_trace = trace_pair(model, guide, args, kwargs)
                out.append((model_trace.log_prob_sum() - guide_trace.log_prob_sum()).reshape(1))
        remaining -= n
    return torch.cat(out)


@torch.no_grad()
def posterior_draws(model, guide, args, kwargs, structure, num_samples, *, vectorized=True, chunk=1000):
    """Draws from the guide of the model's latent sites, and of its ``pyro.deterministic`` sites (the model
    replayed on each draw): site -> tensor of shape (num_samples, *site_shape)."""
    shapes = {**structure.latent_shapes, **structure.deterministic_shapes}
    parts = {name: [] for name in shapes}
    remaining = num_samples
    while remaining > 0:
        n = min(chunk, remaining) if vectorized else 1
        run_guide = vectorize(guide, n, structure.max_plate_nesting) if vectorized else guide
        trace = poutine.trace(run_guide).get_trace(*args, **kwargs)
        if structure.deterministic_shapes:
            run_model = vectorize(model, n, structure.max_plate_nesting) if vectorized else model
            model_trace = poutine.trace(poutine.replay(run_model, trace=trace)).get_trace(*args, **kwargs)
            trace.nodes.update({name: model_trace.nodes[name] for name in structure.deterministic_shapes})
        for name, shape in shapes.items():
            parts[name].append(trace.nodes[name]["value"].reshape((n,) + shape))
        remaining -= n
    return {name: torch.cat(values) for name, values in parts.items()}


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
