"""Where an autoguide fit starts: the Laplace approximation of the posterior in unconstrained coordinates.

An autoguide left to itself starts at the prior's median with scale 0.1 and takes Adam steps of a fixed size
``lr`` in every coordinate. On a regression with an unstandardized predictor (intercept and slope correlated at
-0.99, posterior sds of 1e-3 beside sds of 10) or with wide stand-in priors (``Normal(0, 1000)``), that start is
thousands of posterior sds away and the steps are too large for some coordinates and too small for others.
:func:`gaussian_start` finds the mode u* of log p(x, T(u)) + log|det J_T(u)| (the density a Gaussian guide
approximates) by damped Newton steps, and takes the inverse Hessian there as the covariance:
N(u*, H^-1). The search starts from the origin and from :data:`PRIOR_STARTS` prior draws, and the highest mode
wins: on a posterior with several modes (posteriordb's hmm_drive_0) the origin's can lie 60 nats below the
posterior's bulk, where every fit started from it would stay. :mod:`vi_toolkit.whitened_guides` then fits the autoguide in coordinates whitened by it, so the fit
starts at the Laplace approximation and every direction has unit scale.
"""

import math
from dataclasses import dataclass

import pyro.poutine as poutine
import torch

from . import traces
from .errors import VIToolkitError
from .isolation import isolated
from .log_density import precise_target

MAX_DIM = 500  # latent dimensions up to which the D x D Hessian is formed
PRIOR_STARTS = 7  # searches for the mode from prior draws, beside the one from the origin


@dataclass(frozen=True)
class GaussianStart:
    """N(loc, cov) over the unconstrained latent vector (sites in model order, as ``UnconstrainedModel`` and
    Pyro's ``AutoContinuous`` pack them); ``grad_evals`` log-density gradients it took; ``source`` where it
    came from."""

    loc: torch.Tensor
    cov: torch.Tensor
    grad_evals: int
    source: str

    @property
    def scale_tril(self):
        return torch.linalg.cholesky(self.cov)


def start_info(start, reason=""):
    """A fit's ``info["start"]``: where it started (``source``), why not from a Gaussian start (``reason``) and
    the start's gradient evaluations."""
    if start is None:
        return {"source": "none", "reason": reason, "grad_evals": 0}
    return {"source": start.source, "reason": "", "grad_evals": start.grad_evals}


def from_result(result, dim):
    """The Gaussian of a result with ``gaussian()`` (Pathfinder, DADVI, ...): (loc, cov) in the same
    unconstrained coordinates, checked against the model's dimension ``dim``."""
    loc, cov = (torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in result.gaussian())
    if loc.shape != (dim,) or cov.shape != (dim, dim):
        raise VIToolkitError(f"init's Gaussian has shape {tuple(loc.shape)}, {tuple(cov.shape)}; this model has "
                             f"{dim} unconstrained latent dimensions: init from a result of the same model and data")
    return GaussianStart(loc, 0.5 * (cov + cov.T), 0, result.info.get("method", type(result).__name__))


def gaussian_start(problem, seed=0):
    """(GaussianStart, "") at the mode of the model's unconstrained posterior density, or (None, reason) where
    there is none to use: a model with discrete or subsampled latent sites, more than :data:`MAX_DIM` latent
    dimensions, or a density without a proper mode (the Hessian is not positive definite there)."""
    reason = _unsupported(problem)
    if reason:
        return None, reason
    try:
        with precise_target(problem, seed) as target:
            if target.dim > MAX_DIM:
                return None, f"{target.dim} latent dimensions (the Laplace start forms a Hessian up to {MAX_DIM})"
            return _highest_mode(target)
    except VIToolkitError as exc:
        return None, str(exc)
    except (RuntimeError, ValueError) as exc:  # the user's model failed away from its usual values
        return None, f"the model failed during the search for its mode: {type(exc).__name__}: {exc}"


def _unsupported(problem):
    """Why the Laplace start cannot be used on this model ("" when it can)."""
    with isolated(0):
        trace = poutine.trace(problem.model).get_trace(*problem.args, **problem.kwargs)
    for name, site in trace.nodes.items():
        if not traces.is_sample(site):
            continue
        if any(f.full_size is not None and f.full_size != f.size for f in site["cond_indep_stack"]):
            return f"site {name!r} lies in a subsampled plate (the density of a mini-batch changes at every call)"
        if traces.is_latent(site) and site["fn"].support.is_discrete:
            return f"site {name!r} is discrete"
    return ""


def _starting_points(target):
    """The origin, then up to :data:`PRIOR_STARTS` prior draws (fewer where the prior cannot be drawn from or
    gives non-finite coordinates), as u."""
    origin = torch.zeros(target.dim, dtype=target.dtype)
    try:
        draws = target.prior_draws(PRIOR_STARTS).to(target.dtype)
    except (RuntimeError, ValueError):  # an improper or unusual prior: the origin alone
        return [origin]
    return [origin] + [u for u in draws if torch.isfinite(u).all()]


def _highest_mode(target):
    """The Laplace start at the highest of the modes found from :func:`_starting_points` (gradient evaluations
    of every search counted), or (None, the origin's search's reason) when none converged."""
    best, best_value, reasons, grad_evals = None, -math.inf, [], 0
    for u0 in _starting_points(target):
        start, reason = _laplace(target, u0)
        if start is None:
            reasons.append(reason)
            continue
        grad_evals += start.grad_evals
        value = float(sum(target.densities(start.loc.to(target.dtype).unsqueeze(0))))
        if value > best_value:
            best, best_value = start, value
    if best is None:
        return None, reasons[0]
    return GaussianStart(best.loc, best.cov, grad_evals, best.source), ""


def _at(target, u, values, vectors, grad_evals):
    """The start N(u, H^-1) from H's eigendecomposition, in torch's default dtype."""
    dtype = torch.get_default_dtype()
    cov = (vectors @ torch.diag(1.0 / values) @ vectors.T).to(dtype)
    return GaussianStart(u.to(dtype), 0.5 * (cov + cov.T), grad_evals, "laplace"), ""


def _laplace(target, u0, max_iter=200):
    """The mode by damped saddle-free Newton steps from u0 (Levenberg-Marquardt on |eigenvalues|): affine invariant,
    so an unstandardized predictor or a posterior sd of 1e-3 beside one of 10 costs nothing, and a rejected
    step (a worse or non-finite density, or a non-finite Hessian) only raises the damping. Then N(mode, H^-1)."""
    count = [0]

    def negative_log_density(u):
        """-log p(x, T(u)) - log|det J_T(u)|, or +inf where that is not finite or the model rejects u."""
        count[0] += 1
        try:
            prior, likelihood = target.densities(u.unsqueeze(0))
            value = -(prior + likelihood)[0]
        except (ValueError, RuntimeError):
            return torch.tensor(math.inf)
        return value if torch.isfinite(value) else torch.tensor(math.inf)

    def finite_hessian(u):
        """The Hessian of -log p at u (float64), or None where some entry is not finite."""
        count[0] += target.dim
        hessian = torch.autograd.functional.hessian(negative_log_density, u).double()
        return hessian if torch.isfinite(hessian).all() else None

    u, damping, resolution = u0, None, 10 * torch.finfo(target.dtype).eps  # (of a log density in that dtype)
    hessian = finite_hessian(u)
    if hessian is None:
        return None, "the Hessian of the log density is not finite where the search for its mode starts"
    for _ in range(max_iter):
        u_var = u.clone().requires_grad_(True)
        value = negative_log_density(u_var)
        if not torch.isfinite(value):
            return None, "the log density is not finite where the search for its mode starts"
        (gradient,) = torch.autograd.grad(value, u_var)
        values, vectors = torch.linalg.eigh(0.5 * (hessian + hessian.T))
        g = vectors.T @ gradient.double()
        # the Newton decrement g' H^-1 g: the squared distance to the mode in posterior sds
        decrement = float(g @ (g / values)) if values.min() > 0 else math.inf
        if decrement < 1e-8 or 0.5 * decrement < resolution * max(1.0, abs(float(value.detach()))):
            return _at(target, u, values, vectors, count[0])
        scale = float(values.abs().max())
        if not scale > 0:  # no damping would ever be large enough to end the search below
            return None, "the log density is flat where the search for its mode is (its Hessian is zero there)"
        damping = 1e-6 * scale if damping is None else max(damping, 1e-12 * scale)
        while True:
            step = -(vectors @ (g / (values.abs() + damping))).to(u.dtype)
            trial = negative_log_density(u + step)
            # a step is taken where it improves the density and the Hessian there is finite (an HMM's can
            # overflow where a transition probability underflows to 0): else a shorter step
            if torch.isfinite(trial) and float(trial) < float(value.detach()):
                trial_hessian = finite_hessian(u + step)
                if trial_hessian is not None:
                    u, hessian = u + step, trial_hessian
                    damping /= 10.0
                    break
            damping *= 10.0
            if damping > 1e12 * scale:
                if decrement < 1e-2:  # within 0.1 sd of the mode, and the density's precision is spent
                    return _at(target, u, values, vectors, count[0])
                return None, "no step from the last point improves the log density: it has no proper mode there"
    return None, f"the search for the mode did not converge in {max_iter} Newton steps"
