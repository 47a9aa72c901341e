"""``vt.dadvi``: deterministic ADVI with linear-response covariances (Giordano, Ingram & Broderick 2024).

This module's one job: fit the mean-field Gaussian q(u) = N(m, diag(exp(2 s))) over the model's unconstrained
coordinates u (:class:`~vi_toolkit.log_density.UnconstrainedModel`) by minimizing the DADVI objective, the
negative ELBO with M draws eps_1..eps_M ~ N(0, I) fixed once (seeded),

    F(m, s) = -1/M sum_m log p(m + exp(s) * eps_m) - sum_d s_d,

with a trust-region Newton method on exact gradients and Hessian-vector products from torch autograd, in
double precision, as pymc-extras' ``fit_dadvi`` does (it uses scipy's ``trust-ncg``; ``trust-krylov`` here,
whose more exact subproblem solves took 56 iterations on posteriordb's earnings-earn_height, where
``trust-ncg`` took 226, to the same optimum), then full Newton steps with the exact Hessian until the Newton
decrement g' H^-1 g (twice the distance to the optimum in F, near it) is below 1e-6. Then the linear-response
(LRVB) covariance of u, the (m, m) block of the inverse Hessian of F in (m, s) (Giordano, Broderick & Jordan
2018), which corrects the mean-field fit's variances and restores its correlations (for a Gaussian target
it is the exact covariance, up to the draws' sample mean). With fixed draws F is a deterministic function,
so its optimum has the standard errors of an M-estimator: ``objective_se`` (the sample standard deviation of
the M per-draw terms over sqrt(M)) and ``mean_se`` (the sandwich H^-1 V H^-1 / M, V the covariance of the
per-draw gradients).
"""

import math
import time
import warnings

import numpy as np
import scipy.optimize
import torch
from tqdm.auto import tqdm

from .errors import NumericalError
from .problem import Problem
from .log_density import precise_target
from .unconstrained_gaussian import gaussian_result
from .validate import seed as check_seed
from .validate import whole

# the trust region stops when the gradient norm of F falls below GTOL (or it can predict no improvement);
# the fit has converged when the Newton decrement g' H^-1 g is below DECREMENT (in nats: far below F's
# standard error); a model that runs only in float32 has gradients good to about 1e-5 relative
GTOL = {torch.float64: 1e-8, torch.float32: 1e-4}
DECREMENT = {torch.float64: 1e-6, torch.float32: 1e-2}
MAX_ITERATIONS = 1000
MAX_POLISH = 5  # full Newton steps after the trust region's stop
# scipy's default (1000) caps a Newton step's length: a posterior 6e4 from the start (posteriordb's earnings in
# dollars) took 320 iterations with it, 226 without; the radius still only grows where the quadratic model
# predicts F well
MAX_TRUST_RADIUS = 1e10


def dadvi(model, *args, num_draws=30, seed=0, progress=False, lrvb=True, **model_kwargs):
    """DADVI fit of ``model`` given ``*args, **model_kwargs`` (or a :class:`~vi_toolkit.Problem`): a
    :class:`~vi_toolkit.unconstrained_gaussian.GaussianResult` (``info["method"] == "dadvi"``) whose draws
    come from the LRVB Gaussian N(m, Cov_LR) (``lrvb=True``) or the mean-field one N(m, diag(exp(2 s))).

    ``num_draws``: M, the fixed draws (numpy's generator from ``seed``); ``losses``: F at each Newton
    iterate; ``grad_evals``: log-density gradients counted per draw (M per evaluation of F's gradient or of a
    Hessian-vector product, (2D + 1) M per exact Hessian, M for the sandwich's scores); ``objective_se``; extras
    ``mean_field`` (m, exp(2 s)), ``lrvb_covariance`` (None for ``lrvb=False``), ``mean_se`` (of m, in
    unconstrained coordinates) and ``fixed_draws`` (the eps, (M, D)). NumericalError where F is not finite at
    the optimum, or (``lrvb=True``) its Hessian there is not positive definite."""
    num_draws = whole("num_draws", num_draws, low=2)
    seed = check_seed(seed)
    start = time.perf_counter()
    problem = Problem.of(model, *args, **model_kwargs)
    with precise_target(problem, seed) as density:
        dim = density.dim
        eps = torch.as_tensor(np.random.default_rng(seed).standard_normal((num_draws, dim)))
        objective = _Objective(density, eps)
        losses = []
        bar = tqdm(desc="DADVI Newton iterations", disable=not progress, leave=False)

        def record(intermediate_result):
            losses.append(float(intermediate_result.fun))
            bar.update()
            bar.set_postfix(objective=f"{losses[-1]:.4g}")

        with bar:
            fit = scipy.optimize.minimize(objective.value_and_gradient, np.zeros(2 * dim), jac=True,
                                          hessp=objective.hessian_vector_product, method="trust-krylov",
                                          callback=record,
                                          options={"gtol": GTOL[density.dtype], "maxiter": MAX_ITERATIONS,
                                                   "max_trust_radius": MAX_TRUST_RADIUS})
        if not np.isfinite(fit.fun):
            raise NumericalError("the DADVI objective is not finite at the optimizer's last point; check the "
                                 "model's log density (or try another seed or more draws)")
        eta, value, hessian, decrement, polish = _newton_polish(objective, torch.as_tensor(fit.x),
                                                                DECREMENT[density.dtype], losses)
        converged = decrement < DECREMENT[density.dtype]
        if not converged:
            warnings.warn(f"DADVI's optimizer did not converge (Newton decrement {decrement:.3g}): {fit.message}",
                          RuntimeWarning, stacklevel=2)
        per_draw, per_draw_gradients = objective.per_draw(eta)
    m, variances = eta[:dim], torch.exp(2 * eta[dim:])
    covariance_eta = _inverse(hessian, "the Hessian of the DADVI objective at its optimum", lrvb)
    lrvb_covariance = covariance_eta[:dim, :dim] if lrvb else None
    sandwich = covariance_eta @ torch.cov(per_draw_gradients.T) @ covariance_eta
    mean_se = (sandwich.diagonal()[:dim] / num_draws).sqrt()
    objective_se = float(per_draw.std() / num_draws**0.5)  # F = -mean(per_draw) - sum(s)
    info = {"num_draws": num_draws, "seed": seed, "lrvb": lrvb, "dtype": str(density.dtype).removeprefix("torch."),
            "newton_iterations": int(fit.nit), "polish_steps": polish, "converged": bool(converged),
            "newton_decrement": decrement, "final_objective": value,
            "objective_se": objective_se}
    result = gaussian_result(problem, m, lrvb_covariance if lrvb else torch.diag(variances), method="dadvi",
                             losses=losses, seconds=time.perf_counter() - start, info=info,
                             grad_evals=objective.grad_evals, objective_se=objective_se)
    result.mean_field = (m.clone(), variances)
    result.lrvb_covariance = lrvb_covariance
    result.mean_se = mean_se
    result.fixed_draws = eps.clone()
    return result


class _Objective:
    """F(eta) = -1/M sum_m log p(m + exp(s) * eps_m) - sum(s), eta = (m, s), with autograd derivatives;
    ``grad_evals`` counts log-density gradients per draw."""

    def __init__(self, density, eps):
        self.density, self.dtype, self.dim = density, density.dtype, eps.shape[1]
        self.eps = eps.to(self.dtype)
        self.grad_evals = 0

    def terms(self, eta):
        """(F(eta), the per-draw log densities log p(m + exp(s) * eps_m) of shape (M,))."""
        m, s = eta[: self.dim], eta[self.dim:]
        prior, likelihood = self.density.densities(m + torch.exp(s) * self.eps)
        per_draw = prior + likelihood
        return -per_draw.mean() - s.sum(), per_draw

    def _gradient(self, x, create_graph):
        eta = torch.as_tensor(x, dtype=self.dtype).requires_grad_(True)
        value, _ = self.terms(eta)
        (gradient,) = torch.autograd.grad(value, eta, create_graph=create_graph)
        self.grad_evals += len(self.eps)
        return eta, value, gradient

    def value_and_gradient(self, x):
        """(F, dF/deta) at x as float64 numpy; F = inf (a rejected trust-region step) where not finite."""
        _, value, gradient = self._gradient(x, create_graph=False)
        if not (torch.isfinite(value) and torch.isfinite(gradient).all()):
            return np.inf, np.zeros_like(x)
        return float(value.detach()), gradient.numpy().astype(np.float64)

    def hessian_vector_product(self, x, p):
        """(d^2 F / deta^2) p at x."""
        eta, _, gradient = self._gradient(x, create_graph=True)
        (product,) = torch.autograd.grad(gradient @ torch.as_tensor(p, dtype=gradient.dtype), eta)
        return product.detach().numpy().astype(np.float64)

    def second_order(self, eta):
        """(F, dF/deta, d^2F/deta^2) at eta, float64: one gradient and 2D Hessian rows, each M per draw."""
        eta = torch.as_tensor(eta).to(self.dtype, copy=True).requires_grad_(True)
        value, _ = self.terms(eta)
        (gradient,) = torch.autograd.grad(value, eta, create_graph=True)
        rows = [torch.autograd.grad(gradient[i], eta, retain_graph=True)[0] for i in range(len(eta))]
        self.grad_evals += (1 + len(eta)) * len(self.eps)
        return float(value.detach()), gradient.detach().double(), torch.stack(rows).double()

    def per_draw(self, eta):
        """(per-draw log densities (M,), per-draw gradients of F's terms (M, 2D)) at eta, float64: the m-part of
        draw m's gradient is -score_m, the s-part -score_m * exp(s) * eps_m - 1."""
        eta = torch.as_tensor(eta).to(self.dtype)
        u = (eta[: self.dim] + torch.exp(eta[self.dim:]) * self.eps).requires_grad_(True)
        prior, likelihood = self.density.densities(u)
        per_draw = prior + likelihood
        (scores,) = torch.autograd.grad(per_draw.sum(), u)  # row m of per_draw depends on row m of u only
        self.grad_evals += len(self.eps)
        gradients = torch.cat([-scores, -scores * torch.exp(eta[self.dim:]) * self.eps - 1], dim=1)
        return per_draw.detach().double(), gradients.double()


def _newton_polish(objective, eta, tolerance, losses):
    """(eta, F, Hessian, Newton decrement g' H^-1 g, steps taken) after full Newton steps eta - H^-1 g from the
    trust region's last point while the decrement exceeds ``tolerance`` (at most MAX_POLISH, each kept only
    where it lowers F, its F appended to ``losses``). The decrement is inf where the Hessian is not positive
    definite (not a minimum)."""
    value, gradient, hessian = objective.second_order(eta)
    steps = 0
    while True:
        chol, failed = torch.linalg.cholesky_ex((hessian + hessian.T) / 2)
        if failed:
            return eta, value, hessian, math.inf, steps
        newton = torch.cholesky_solve(gradient[:, None], chol)[:, 0]
        decrement = float(gradient @ newton)
        if decrement < tolerance or steps == MAX_POLISH:
            return eta, value, hessian, decrement, steps
        trial = objective.second_order(eta - newton)
        if not trial[0] < value:
            return eta, value, hessian, decrement, steps
        eta, (value, gradient, hessian), steps = eta - newton, trial, steps + 1
        losses.append(value)


def _inverse(matrix, what, required):
    """The inverse of a symmetric matrix; NumericalError if it is not positive definite and ``required``
    (else the inverse as numpy gives it, for the standard errors only)."""
    matrix = (matrix + matrix.T) / 2
    chol, failed = torch.linalg.cholesky_ex(matrix)
    if failed:
        if required:
            raise NumericalError(f"{what} is not positive definite, so there is no linear-response covariance; "
                                 "pass lrvb=False for the mean-field fit, or more num_draws")
        return torch.linalg.pinv(matrix)
    return torch.cholesky_inverse(chol)
