"""The log density of a model in unconstrained coordinates: the target of AIS and of score checks.

This module's one job: map a batch of unconstrained latent vectors u (P, D) to the model's latent values
z = T(u), site by site with ``biject_to(support)``, and give ``log p(T(u)) + log|det J_T(u)|`` (the prior
part) and ``log p(x | T(u))`` (the likelihood), each (P,) and differentiable in u. The densities themselves
come from :func:`vi_toolkit.log_weights.log_joint`: vectorized where the model broadcasts over particles, and
one particle at a time where not (batched by ``torch.func.vmap`` where that is exact, else in a loop).
:func:`precise_target` runs it on float64 data where the model computes in float64 and agrees there with its own
run: what Newton, DADVI and batch-and-match steps need on an ill-conditioned posterior.
"""

import contextlib
import copy
import math

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import biject_to

from . import traces
from .errors import DataError, ModelGuideError
from .isolation import isolated
from .log_weights import log_joint, log_joint_vmappable
from .problem import model_broadcasts


class UnconstrainedModel:
    """The model's densities at a batch of unconstrained latent vectors u (P, D), z = T(u) site by site
    (``biject_to(support)``): ``log_prior(u) = log p(T(u)) + log|det J_T(u)|`` and ``log_likelihood(u) =
    log p(x | T(u))``, each of shape (P,). ``vectorized``: None decides by a probe (does every site broadcast
    over a particle plate?); the model is run once per particle where it does not (by ``torch.func.vmap`` where
    that gives what a loop gives, decided on the first call of :meth:`densities`)."""

    def __init__(self, model, args, kwargs, max_plate_nesting, vectorized=None):
        self.model, self.args, self.kwargs, self.mpn = model, tuple(args), dict(kwargs), max_plate_nesting
        with isolated(0):  # the traces below draw from the prior: on a private stream
            trace = poutine.trace(model).get_trace(*self.args, **self.kwargs)
            if vectorized is None:
                vectorized = model_broadcasts(model, self.args, self.kwargs, max_plate_nesting)
            self.vectorized = bool(vectorized)
            particles = self._trace(2) if self.vectorized else None
        self.sites = {}  # site -> (transform, shape of one draw, shape in a vectorized trace after P)
        self.supports = {}
        for name, site in trace.nodes.items():
            if traces.is_latent(site):
                if site["fn"].support.is_discrete:
                    raise ModelGuideError(
                        f"an unconstrained density needs continuous latent sites; {name!r} is discrete"
                    )
                shape = tuple(site["value"].shape)
                tail = tuple(particles.nodes[name]["value"].shape[1:]) if particles is not None else shape
                self.sites[name] = (biject_to(site["fn"].support), shape, tail)
                self.supports[name] = site["fn"].support
        self.dim = sum(math.prod(transform.inv.forward_shape(shape)) for transform, shape, _ in self.sites.values())
        self.vmap = None  # a model that does not broadcast: run by torch.func.vmap? (decided on first use)

    def _trace(self, n):
        return poutine.trace(traces.vectorize(self.model, n, self.mpn)).get_trace(*self.args, **self.kwargs)

    def unconstrained_sites(self, draws):
        """site -> constrained draws (n, *site_shape) as site -> u (n, *unconstrained shape). DataError for
        values that are not finite or lie outside the site's support (where the map to u is undefined)."""
        out = {}
        for name, (transform, shape, _) in self.sites.items():
            z = torch.as_tensor(draws[name], dtype=torch.get_default_dtype())
            z = z.reshape((len(z),) + shape)
            bad = ~torch.isfinite(z)
            if bad.any():
                raise DataError(f"draws of site {name!r} hold {int(bad.sum())} NaN or infinite value(s)")
            support = self.supports[name]
            outside = ~support.check(z)
            if outside.any():
                raise DataError(
                    f"{int(outside.sum())} draw(s) of site {name!r} lie outside its support ({support}); the "
                    "model gives them zero density"
                )
            u = transform.inv(z)
            if not torch.isfinite(u).all():
                raise DataError(
                    f"draws of site {name!r} lie on the boundary of its support ({support}) in "
                    "floating point: they have no finite unconstrained value"
                )
            out[name] = u
        return out

    def unconstrained(self, draws):
        """site -> constrained draws (n, *site_shape) as u (n, D); see :meth:`unconstrained_sites`."""
        return torch.cat([u.reshape(len(u), -1) for u in self.unconstrained_sites(draws).values()], dim=1)

    def constrained(self, u):
        """u (P, D) -> (site -> z of shape (P, *shape in the model's run), log|det J| of shape (P,))."""
        values, log_det, start = {}, torch.zeros(len(u)), 0
        for name, (transform, shape, tail) in self.sites.items():
            u_shape = tuple(transform.inv.forward_shape(shape))
            size = math.prod(u_shape)
            part = u[:, start : start + size].reshape((len(u),) + u_shape)
            start += size
            z = transform(part)
            log_det = log_det + transform.log_abs_det_jacobian(part, z).reshape(len(u), -1).sum(1)
            values[name] = z.reshape((len(u),) + tail)
        return values, log_det

    def densities(self, u):
        """(log_prior(u), log_likelihood(u)), each (P,); differentiable in u."""
        values, log_det = self.constrained(u)
        if not self.vectorized and self.vmap is None:
            self.vmap = log_joint_vmappable(self.model, self.args, self.kwargs, values)
        prior, likelihood = log_joint(self.model, self.args, self.kwargs, values, self.mpn,
                                      vectorized=self.vectorized, vmap=self.vmap)
        return prior + log_det, likelihood

    def prior_draws(self, n):
        """n draws from the prior, as u (n, D)."""
        shapes = {name: shape for name, (_, shape, _) in self.sites.items()}
        draws, _ = traces.site_draws(self.model, self.args, self.kwargs, shapes, n, self.mpn,
                                     vectorized=self.vectorized)
        return self.unconstrained(draws)


def as_float64(obj):
    """``obj`` (tensors, or tuples, lists and dicts of them) with every floating-point tensor in float64."""
    if isinstance(obj, torch.Tensor):
        return obj.double() if obj.is_floating_point() else obj
    if isinstance(obj, (tuple, list)):
        return type(obj)(as_float64(item) for item in obj)
    if isinstance(obj, dict):
        return {key: as_float64(value) for key, value in obj.items()}
    return obj


def agrees_in_float64(own, precise, dim):
    """Whether the model's run on float64 data is the one to use: its total log density ``precise(u)`` at u = 0
    (2, ``dim``) is float64 and agrees with ``own(u)``, the run on its own data, to 1e-4 relative. False where
    the float64 run fails (a model holding float32 modules, say)."""
    try:
        u = torch.zeros(2, dim, dtype=torch.float64)
        ran, mine = precise(u), own(u)
        return bool(ran.dtype == torch.float64 and torch.allclose(ran, mine.double(), rtol=1e-4, atol=1e-3))
    except Exception:  # noqa: BLE001 - a model that fails on float64 data runs on its own data
        return False


@contextlib.contextmanager
def precise_target(problem, seed):
    """The model's :class:`UnconstrainedModel` on a private stream ``seed`` and the problem's thread count, run
    on float64 data where the model computes in float64 there and agrees with its run on its own data (to
    1e-4 at u = 0), else on its own data (a model holding float32 modules, say); ``dtype`` on the yielded object
    says which, and is the dtype to give it u in. Torch's default dtype is left alone. Pyro's argument
    validation is off in the block: a value outside a distribution's support (an overflowing trial step) gives
    a non-finite density, which the fit handles, not an exception."""
    with problem.isolated(seed), pyro.validation_enabled(False):
        model = UnconstrainedModel(problem.model, problem.args, problem.kwargs, problem.max_plate_nesting,
                                   problem.broadcasts)
        model.dtype = torch.get_default_dtype()
        # the same sites, read off the model's run on its own data (a run on float64 data would draw float32
        # prior values to put beside it), evaluated on float64 data
        precise = copy.copy(model)
        precise.args, precise.kwargs = as_float64(problem.args), as_float64(problem.kwargs)
        if agrees_in_float64(lambda u: sum(model.densities(u.to(model.dtype))), lambda u: sum(precise.densities(u)),
                             model.dim):
            model, model.dtype = precise, torch.float64
        yield model
