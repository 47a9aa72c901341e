"""Gaussian approximations in a model's unconstrained coordinates, as DADVI and batch-and-match fit them.

This module's one job is what such fits share around their own update rule: the model's log density in the
coordinates of :class:`~vi_toolkit.log_density.UnconstrainedModel`, in double precision where the model runs
so (:func:`vi_toolkit.log_density.precise_target`), and the fitted Gaussian N(loc, covariance) over those coordinates as a posterior result
(:class:`GaussianResult`). The result is a :class:`~vi_toolkit.VIResult` whose guide is Pyro's
``AutoMultivariateNormal`` holding loc and covariance as buffers (as Pyro's own Laplace approximation does): its
latent vector is the same flattening of the same per-site ``biject_to(support)`` coordinates, so draws
(``pyro.deterministic`` sites included), InferenceData, importance log-weights, ``vt.bounds`` and
``save`` are the VI result's own code.
"""

import pyro
import torch
from pyro.infer.autoguide import AutoMultivariateNormal

from . import traces
from .errors import NumericalError
from .vi_result import VIResult


def log_density_and_score(model, u):
    """(log p(T(u)) + log|det J_T(u)| of shape (P,), its gradient in u of shape (P, D)) at u (P, D)."""
    u = u.detach().requires_grad_(True)
    prior, likelihood = model.densities(u)
    log_p = prior + likelihood
    (score,) = torch.autograd.grad(log_p.sum(), u)  # row p of log_p depends on row p of u only
    return log_p.detach(), score


class GaussianResult(VIResult):
    """A Gaussian N(loc, covariance) in the model's unconstrained coordinates as a posterior result (a
    :class:`~vi_toolkit.VIResult`). ``grad_evals``: gradient evaluations of the log density the fit used,
    counted per draw; ``objective_se``: the standard error of the fit's final objective (None where the method
    has none)."""

    def __init__(self, *, loc, covariance, grad_evals, objective_se=None, **fields):
        super().__init__(**fields)
        self._loc, self._covariance = loc, covariance
        self.grad_evals = int(grad_evals)
        self.objective_se = objective_se

    def __repr__(self):
        return (f"GaussianResult(method={self.info['method']!r}, dim={len(self._loc)}, "
                f"grad_evals={self.grad_evals}, seconds={self.seconds:.2f})")

    def to_inference_data(self, *args, **kwargs):
        """The VI result's InferenceData (see :meth:`VIResult.to_inference_data`), its posterior's ``method``
        attribute this fit's method."""
        idata = super().to_inference_data(*args, **kwargs)
        idata.posterior.attrs["method"] = self.info["method"]
        return idata

    def gaussian(self):
        """(loc (D,), covariance (D, D)): the fitted Gaussian in UnconstrainedModel coordinates (float64)."""
        return self._loc.clone(), self._covariance.clone()


def gaussian_result(problem, loc, covariance, *, method, losses, seconds, info, grad_evals, objective_se=None):
    """The Gaussian N(loc, covariance) over the unconstrained coordinates of ``problem`` as a
    :class:`GaussianResult` of ``method``. NumericalError if ``covariance`` is not positive definite."""
    loc = torch.as_tensor(loc, dtype=torch.float64)
    covariance = torch.as_tensor(covariance, dtype=torch.float64)
    covariance = (covariance + covariance.T) / 2
    scale = covariance.diagonal().sqrt()
    correlation = covariance / scale[:, None] / scale[None, :]
    scale_tril, failed = torch.linalg.cholesky_ex(correlation)
    if failed or not (torch.isfinite(loc).all() and torch.isfinite(scale_tril).all() and (scale > 0).all()):
        raise NumericalError(f"{method} gave a covariance that is not positive definite (or a non-finite mean); "
                             "see the method's notes on what to change")
    params = {"params": {}, "constraints": {}}  # the guide creates parameters: out of the caller's store
    dtype = torch.get_default_dtype()
    with problem.isolated(0, params=params), pyro.validation_enabled(False):
        guide = AutoMultivariateNormal(problem.model)
        guide._setup_prototype(*problem.args, **problem.kwargs)  # the latent vector's layout (no fitting)
        del guide.loc, guide.scale, guide.scale_tril
        guide.register_buffer("loc", loc.to(dtype))
        guide.register_buffer("scale", scale.to(dtype))
        guide.register_buffer("scale_tril", scale_tril.to(dtype))
        structure = traces.inspect_pair(problem.model, guide, problem.args, problem.kwargs)
        vectorized = problem.broadcasts and traces.broadcasts(
            problem.model, guide, problem.args, problem.kwargs, 2, structure.max_plate_nesting)
    info = {"method": method, "guide": "mvn", "objective": method, "threads": problem.threads,
            "grad_evals": int(grad_evals), **info}
    return GaussianResult(loc=loc, covariance=covariance, grad_evals=grad_evals, objective_se=objective_se,
                          problem=problem, guide=guide, structure=structure, vectorized=vectorized,
                          param_state=params, losses=losses, seconds=seconds, info=info)
