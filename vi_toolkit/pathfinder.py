"""Pathfinder (Zhang, Carpenter, Gelman and Vehtari 2022): Gaussian approximations read off an L-BFGS path.

This module's one job: for any Pyro model with continuous latent sites, run L-BFGS on -log p(u) in the
model's unconstrained coordinates u (:class:`vi_toolkit.log_density.UnconstrainedModel`, log p including the
Jacobian of z = T(u); gradients by torch autograd), form at every iterate the Gaussian N(mu_l, Sigma_l) whose
covariance is L-BFGS's inverse-Hessian estimate (diagonal plus low rank: the paper's Algorithms 1-3), estimate
each one's ELBO with a few draws and keep the best (single-path Pathfinder). ``num_paths > 1`` runs independent
paths from independent starting points and importance-resamples draws of the equal-weight mixture of their
best Gaussians with Pareto-smoothed weights (multi-path Pathfinder), reporting the PSIS k-hat of those weights.
"""

import contextlib
import math
import time
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from scipy.optimize import line_search

from .diagnostics import MIN_DRAWS, psis_khat
from .errors import ModelGuideError, NumericalError
from .log_density import UnconstrainedModel, agrees_in_float64, as_float64
from .problem import Problem
from .traces import Structure, is_latent
from .validate import positive, whole
from .validate import seed as check_seed
from .vi_result import VIResult

CURVATURE_EPS = 2.2e-16  # a pair (s, z) enters the inverse Hessian only where s.z > eps |z|^2 (the paper's test)
WOLFE = (1e-4, 0.9)  # the line search's strong Wolfe constants c1 (sufficient decrease) and c2 (curvature)
MAX_LINE_SEARCH = 20  # iterations of scipy's line search before it gives up
SELECTION_SES = 2.0  # a later Gaussian within this many standard errors of the highest ELBO estimate is preferred
U_SITE = "_pathfinder_u"  # the guide's auxiliary site: a draw of the whole unconstrained vector u


def _update_alpha(alpha, s, z):
    """The paper's diagonal of the inverse Hessian after the pair (s, z) (its Algorithm 3):
    1/alpha'_d = a / (b alpha_d) + z_d^2 / b - a s_d^2 / (b c alpha_d^2), a = z' diag(alpha) z, b = z's,
    c = s' diag(1/alpha) s."""
    a, b, c = (alpha * z * z).sum(), z @ s, (s * s / alpha).sum()
    return 1.0 / (a / (b * alpha) + z * z / b - a * s * s / (b * c * alpha**2))


def _inverse_hessian(alpha, S, Z):
    """L-BFGS's inverse Hessian from the last J pairs S, Z (D, J) and the diagonal alpha (D,), in the compact form
    of Byrd, Nocedal and Schnabel (1994) that the paper uses: diag(alpha) + beta gamma beta', beta = [diag(alpha) Z, S],
    gamma = [[0, -R^-1], [-R^-T, R^-T (E + Z' diag(alpha) Z) R^-1]], R = triu(S'Z), E = diag(S'Z)."""
    if S.shape[1] == 0:
        return torch.diag(alpha)
    StZ = S.T @ Z
    J = StZ.shape[0]
    R_inv = torch.linalg.solve_triangular(torch.triu(StZ), torch.eye(J, dtype=S.dtype), upper=True)
    beta = torch.cat([alpha[:, None] * Z, S], dim=1)
    block = R_inv.T @ (torch.diag(StZ.diagonal()) + Z.T @ (alpha[:, None] * Z)) @ R_inv
    gamma = torch.cat([torch.cat([torch.zeros(J, J, dtype=S.dtype), -R_inv], dim=1),
                       torch.cat([-R_inv.T, block], dim=1)], dim=0)
    H = torch.diag(alpha) + beta @ gamma @ beta.T
    return (H + H.T) / 2


def _normal(loc, cov):
    """N(loc, cov) as a torch distribution (float64), or None where cov is not positive definite."""
    cholesky, info = torch.linalg.cholesky_ex(cov)
    return None if info else dist.MultivariateNormal(loc, scale_tril=cholesky)


@contextlib.contextmanager
def _default_dtype(dtype):
    """torch's default dtype is ``dtype`` inside the block and the caller's after it."""
    caller = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(caller)


class _Density:
    """log p(u) = log p(T(u)) + log|det J_T(u)| + log p(x | T(u)) of the model at u (n, D), float64, by
    :class:`~vi_toolkit.log_density.UnconstrainedModel` (``self.unconstrained``: the model as given, which maps u
    to the sites' values for draws).

    The model runs in float64 (its data as float64, torch's default dtype float64 inside each call, the caller's
    after it) where it runs so and agrees there with its run in its own precision (to 1e-4): L-BFGS needs
    differences of -log p far below float32's resolution on an ill-conditioned posterior (on posteriordb's
    earnings-earn_height it stopped in float32 with the intercept 6 sds from its posterior mean). Else it runs
    as given."""

    def __init__(self, problem):
        def build(args, kwargs):
            return UnconstrainedModel(problem.model, args, kwargs, problem.max_plate_nesting,
                                      vectorized=problem.broadcasts)

        self.unconstrained = self._run = build(problem.args, problem.kwargs)
        self.dtype = torch.get_default_dtype()
        try:
            with _default_dtype(torch.float64):
                precise = build(as_float64(problem.args), as_float64(problem.kwargs))
        except Exception:  # noqa: BLE001 - a model that fails in float64 runs in its own precision
            return

        def run_precise(u):
            with _default_dtype(torch.float64):
                return sum(precise.densities(u))

        if agrees_in_float64(self, run_precise, precise.dim):
            self._run, self.dtype = precise, torch.float64

    def __call__(self, u):
        """log p(u) at u (n, D); a point where a site's parameter leaves its support (a rate that underflowed to
        0 at a far-out draw) gives -inf or NaN there, not a validation error for the whole batch."""
        with _default_dtype(self.dtype), pyro.validation_enabled(False):
            prior, likelihood = self._run.densities(u.to(self.dtype))
        return (prior + likelihood).double()


def _log_weights(density, q, u):
    """Importance log-weights log p(u) - log q(u) at draws u (n, D) of q, in unconstrained space (log p holds
    log|det J_T(u)|, so these equal log p(x, z) - log q(z) of z = T(u)); NaN (a model that fails there) as -inf."""
    with torch.no_grad():
        log_w = density(u) - q.log_prob(u)
    return torch.nan_to_num(log_w, nan=-math.inf)


class _Objective:
    """f(u) = -log p(u) and its gradient at u (D,), float64, each point evaluated once (``evals`` counts them);
    where either is not finite, (inf, 0): a line search steps back from such a point."""

    def __init__(self, density):
        self.density, self.evals, self._seen = density, 0, {}

    def __call__(self, x):
        key = x.numpy().tobytes()
        if key not in self._seen:
            self.evals += 1
            u = x.detach().reshape(1, -1).requires_grad_(True)
            f = -self.density(u).sum()
            (grad,) = torch.autograd.grad(f, u)
            value, grad = float(f.detach()), grad.reshape(-1).detach()
            if not (math.isfinite(value) and torch.isfinite(grad).all()):
                value, grad = math.inf, torch.zeros_like(grad)
            self._seen = {key: (value, grad)}  # the line search asks again for its last point only
        return self._seen[key]


def _wolfe(f0, slope0, step, f, grad, direction):
    """The strong Wolfe conditions for ``step`` times ``direction``: sufficient decrease
    f <= f0 + c1 step slope0 and |grad . direction| <= c2 |slope0|."""
    return f <= f0 + WOLFE[0] * step * slope0 and abs(float(grad @ direction)) <= WOLFE[1] * abs(slope0)


def _line_search(objective, x, f0, g0, direction):
    """A step t along ``direction`` (the trial step t = 1) from x meeting the strong Wolfe conditions: the secant
    step, where the directional derivative vanishes on the quadratic through the slopes at t = 0 and t = 1,
    where it meets them and is the lower (on a Gaussian target it is the exact minimum along the line), else
    t = 1 where it meets them, else scipy's bracketing and zooming search from t = 1 (``line_search``). Returns
    (the new point, f, grad there), or None where no step is found."""
    slope0 = float(g0 @ direction)
    f1, g1 = objective(x + direction)
    slope1 = float(g1 @ direction)
    if math.isfinite(f1) and slope1 > slope0:
        step = slope0 / (slope0 - slope1)
        if step > 0 and step != 1:
            f2, g2 = objective(x + step * direction)
            if _wolfe(f0, slope0, step, f2, g2, direction) and f2 <= f1:
                return x + step * direction, f2, g2
    if _wolfe(f0, slope0, 1.0, f1, g1, direction):
        return x + direction, f1, g1

    def at(xs):
        return objective(torch.as_tensor(xs, dtype=torch.float64))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's LineSearchWarning and overflows on the way
        step = line_search(lambda xs: at(xs)[0], lambda xs: at(xs)[1].numpy(), x.numpy(), direction.numpy(),
                           g0.numpy(), f0, c1=WOLFE[0], c2=WOLFE[1], maxiter=MAX_LINE_SEARCH)[0]
    if step is None:
        return None
    x_new = torch.as_tensor(x.numpy() + step * direction.numpy(), dtype=torch.float64)  # the point scipy evaluated
    f, g = objective(x_new)
    return (x_new, f, g) if math.isfinite(f) else None


def _step(objective, x, f, g, pairs):
    """L-BFGS's step from x: the direction -H g of the two-loop recursion's H (the pairs on the usual scaled
    identity s'z / z'z of the latest pair), or steepest descent without pairs or where -H g does not descend,
    through :func:`_line_search` from the unit step (a step of length 1 without pairs, as L-BFGS-B starts)."""
    S, Z = _stacked(pairs, x)
    gamma = float(S[:, -1] @ Z[:, -1] / (Z[:, -1] @ Z[:, -1])) if pairs else 1.0
    direction = -_inverse_hessian(torch.full_like(x, gamma), S, Z) @ g
    if float(g @ direction) >= 0:  # an estimate spoiled by rounding
        direction = -g
    first = 1.0 if pairs else min(1.0, 1.0 / float(g.norm()))
    return _line_search(objective, x, f, g, first * direction)


def _lbfgs(density, u0, maxiter, maxcor, ftol, gtol):
    """L-BFGS on f(u) = -log p(u) from u0 (steps by :func:`_step`), recording at each iterate u_l the gradient g_l
    of f and the paper's inverse-Hessian estimate Sigma_l from the last ``maxcor`` pairs (s, z) that pass the
    curvature test, on its diagonal update alpha. With the secant line search the steps on a Gaussian target
    are conjugate, so every pair keeps its secant condition Sigma z = s (BFGS's hereditary property) and, once
    D pairs are in the memory, Sigma_l is the exact covariance. Stops when the relative decrease of f is at most
    ``ftol``, the largest |gradient| at most ``gtol``, after ``maxiter`` steps, or where no step lowers f.
    Returns (iterates [(u_l, g_l, Sigma_l)], f-and-gradient evaluations, why it stopped)."""
    objective = _Objective(density)
    x = u0
    f, g = objective(x)
    if not math.isfinite(f):
        raise NumericalError("the model's log density or its gradient is not finite at Pathfinder's starting "
                             "point; use another seed, a smaller init_radius, or check the model")
    alpha, pairs, iterates, message = torch.ones(len(x), dtype=torch.float64), [], [], None
    for iteration in range(maxiter + 1):
        iterates.append((x, g, _inverse_hessian(alpha, *_stacked(pairs, x))))
        if message is None and float(g.abs().max()) <= gtol:
            message = "converged: the largest |gradient| is at most gtol"
        if message is None and iteration == maxiter:
            message = f"maxiter ({maxiter}) reached"
        if message is not None:
            break
        found = _step(objective, x, f, g, pairs)
        if found is None and pairs:  # as L-BFGS-B does: forget the pairs and try once more from steepest descent
            pairs = []
            found = _step(objective, x, f, g, pairs)
        if found is None:
            message = "stopped: no step along the search direction lowers f (the line search failed)"
            break
        x_new, f_new, g_new = found
        s, z = x_new - x, g_new - g
        if s @ z > CURVATURE_EPS * (z @ z):
            alpha, pairs = _update_alpha(alpha, s, z), (pairs + [(s, z)])[-maxcor:]
        decrease = (f - f_new) / max(abs(f), abs(f_new), 1.0)
        x, f, g = x_new, f_new, g_new
        if decrease <= ftol:  # the next pass records this last iterate and stops
            message = "converged: the relative decrease of f is at most ftol"
    return iterates, objective.evals, message


def _stacked(pairs, x):
    """The pairs' steps S and gradient differences Z as (D, J) matrices."""
    if not pairs:
        return x.new_zeros(len(x), 0), x.new_zeros(len(x), 0)
    return torch.stack([s for s, _ in pairs], dim=1), torch.stack([z for _, z in pairs], dim=1)


def _path(density, u0, maxiter, maxcor, num_elbo_draws, ftol, gtol):
    """One path (the paper's Algorithm 1): the Gaussian at each L-BFGS iterate l, N(u_l - Sigma_l g_l, Sigma_l)
    (see :func:`_lbfgs`), each with its ELBO from ``num_elbo_draws`` draws, and the best of them: the last
    along the path whose ELBO estimate is within :data:`SELECTION_SES` of the highest estimate's standard errors
    of it (the paper takes the highest; with 10 draws a near-exact Gaussian's skewed log-weights can out-score
    the exact one, whose estimate has no noise at all). Returns a dict: the best Gaussian (``q``, ``loc``, ``cov``), ``elbo``
    and ``elbos`` per iterate, ``lbfgs_evals`` (L-BFGS's evaluations of log p and its gradient), ``evals``
    (those and the ELBO draws' evaluations) and ``message``."""
    iterates, lbfgs_evals, message = _lbfgs(density, u0, maxiter, maxcor, ftol, gtol)
    evals, candidates, elbos = lbfgs_evals, [], []
    for l, (x, g, cov) in enumerate(iterates):
        loc = x - cov @ g
        q = _normal(loc, cov)
        elbo, se = -math.inf, math.inf
        if q is not None:
            log_w = _log_weights(density, q, q.sample((num_elbo_draws,)))
            elbo, se = float(log_w.mean()), float(log_w.std()) / math.sqrt(num_elbo_draws)
            evals += num_elbo_draws
        elbo = elbo if math.isfinite(elbo) else -math.inf
        elbos.append(elbo)
        if math.isfinite(elbo):
            candidates.append({"q": q, "loc": loc, "cov": cov, "elbo": elbo, "se": se, "iteration": l})
    if not candidates:
        raise NumericalError(f"no Gaussian along the L-BFGS path ({len(iterates) - 1} iterations, {message}) has "
                             "a finite ELBO: the model's log density is not finite near its draws")
    top = max(candidates, key=lambda c: c["elbo"])
    best = [c for c in candidates if c["elbo"] >= top["elbo"] - SELECTION_SES * top["se"]][-1]
    return {**best, "elbos": elbos, "lbfgs_evals": lbfgs_evals, "evals": evals, "iterations": len(iterates) - 1,
            "message": message}


def _guide(unconstrained, source, placements, max_plate_nesting):
    """A Pyro guide with no parameters that draws u from ``source`` (a distribution over u (D,)) and sets every
    latent site to its value T(u) (a Delta), shaped to broadcast against the model's plates inside a particle
    plate: what :func:`vi_toolkit.traces.posterior_draws` runs to give draws with the deterministic sites."""

    def guide(*args, **kwargs):
        u = pyro.sample(U_SITE, source, infer={"is_auxiliary": True})
        flat = u.reshape(-1, unconstrained.dim).to(torch.get_default_dtype())
        values, _ = unconstrained.constrained(flat)
        for name, (shape, batch_dims, event_dim) in placements.items():
            lead = (len(flat),) + (1,) * (max_plate_nesting - batch_dims) if u.dim() > 1 else ()
            pyro.sample(name, dist.Delta(values[name].reshape(lead + shape), event_dim=event_dim))

    return guide


def _approximation(paths):
    """q: the best Gaussian of a single path; the equal-weight mixture of the paths' best Gaussians for several."""
    if len(paths) == 1:
        return paths[0]["q"]
    components = dist.MultivariateNormal(torch.stack([p["loc"] for p in paths]),
                                         scale_tril=torch.stack([p["q"].scale_tril for p in paths]))
    return dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(len(paths), dtype=torch.float64)), components)


class PathfinderResult:
    """Pathfinder's approximation as a posterior result (:class:`vi_toolkit.posterior.Posterior`).

    One path: the best Gaussian q = N(loc, cov) in unconstrained space; ``draws`` are fresh draws of q mapped to
    the model's sites. Several paths: q is the equal-weight mixture of the paths' best Gaussians, and ``draws``
    resample (with replacement, by Pareto-smoothed importance weights) the ``num_draws`` draws per path made
    at the fit. ``log_weights(n, seed)`` are log p - log q at the draws of ``draws(n, seed)`` (one path) or at n
    fresh draws of the mixture q (several). ``losses``: -ELBO at each
    iterate of the best path. ``info``: ``method="pathfinder"``, ``khat`` (PSIS k-hat of the fit's importance
    weights), ``grad_evals`` (log-density evaluations: L-BFGS's with gradients, the ELBO draws and the
    importance draws, which need no gradient), ``lbfgs_evals`` (those with a gradient), ``num_paths``,
    ``elbo`` (best path), and per path ``elbos``, ``iterations``, ``messages``."""

    def __init__(self, *, problem, density, paths, pool, seconds, info):
        self.problem, self._density, self._paths = problem, density, paths
        self._best = max(paths, key=lambda p: p["elbo"])
        self.losses = -np.asarray(self._best["elbos"], dtype=float)
        self.seconds = float(seconds)
        self.info = {"method": "pathfinder", **info}
        self._q = _approximation(paths)
        source = self._q if len(paths) == 1 else dist.Empirical(*pool)  # importance resampling of the pool
        structure = Structure(problem.latent_shapes, problem.max_plate_nesting, problem.deterministic_shapes)
        with problem.isolated(0, params={"params": {}, "constraints": {}}):
            trace = poutine.trace(problem.model).get_trace(*problem.args, **problem.kwargs)
        placements = {name: (problem.latent_shapes[name], len(site["fn"].batch_shape), site["fn"].event_dim)
                      for name, site in trace.nodes.items() if is_latent(site)}
        # the draws and InferenceData of a guide, as a fitted guide gives them (deterministic sites included)
        self._draws = VIResult(problem=problem, guide=_guide(density.unconstrained, source, placements, problem.max_plate_nesting),
                               structure=structure, vectorized=problem.broadcasts,
                               param_state={"params": {}, "constraints": {}}, losses=self.losses, seconds=seconds,
                               info={"guide": "pathfinder", "objective": "elbo"})

    def __repr__(self):
        return (f"PathfinderResult(num_paths={self.info['num_paths']}, elbo={self.info['elbo']:.4g}, "
                f"khat={self.info['khat']:.2f}, grad_evals={self.info['grad_evals']}, seconds={self.seconds:.2f})")

    def gaussian(self):
        """(loc (D,), covariance (D, D)), float64: the best path's Gaussian in the unconstrained coordinates of
        :class:`vi_toolkit.log_density.UnconstrainedModel` (sites in the model's order, flattened)."""
        return self._best["loc"].clone(), self._best["cov"].clone()

    def draws(self, n=None, seed=0):
        """``n`` draws (default 4000) of every latent and ``pyro.deterministic`` site: site -> numpy array
        (n, *site_shape); see the class docstring for what they are draws of."""
        return self._draws.draws(n, seed)

    def to_inference_data(self, n=None, seed=0, chains=4, predictive=None):
        """The draws of ``draws(n, seed)`` as ArviZ InferenceData, laid out and with the groups of
        :meth:`vi_toolkit.VIResult.to_inference_data`."""
        idata = self._draws.to_inference_data(n, seed, chains=chains, predictive=predictive)
        idata.posterior.attrs.update({"method": "pathfinder", "num_paths": len(self._paths)})
        return idata

    def log_weights(self, n=1000, seed=0):
        """Importance log-weights log p(x, z_s) - log q(z_s), computed in unconstrained space: a float64 tensor
        (n,). One path: at the draws z_s of ``draws(n, seed)`` (draws of q), so that the verdict's comparison of
        the draws with their weighted estimates is of the same draws. Several paths: at n fresh draws of the
        mixture q (``draws`` are resampled from the pool, not draws of q)."""
        n = whole("n", n)
        if len(self._paths) == 1:
            draws = self.draws(n, seed)
            sites = self._density.unconstrained.sites
            u = self._density.unconstrained.unconstrained({name: draws[name] for name in sites}).double()
            return _log_weights(self._density, self._q, u)
        with self.problem.isolated(seed, params={"params": {}, "constraints": {}}):
            return _log_weights(self._density, self._q, self._q.sample((n,)))


def pathfinder(model, *args, num_paths=1, seed=0, progress=False, maxiter=1000, maxcor=6, num_elbo_draws=10,
               num_draws=1000, ftol=1e-10, gtol=1e-8, init_radius=2.0, **model_kwargs):
    """Pathfinder on ``model`` given ``*args, **model_kwargs`` (or a :class:`~vi_toolkit.Problem`); returns a
    :class:`PathfinderResult`.

    Each path starts at u ~ uniform(-init_radius, init_radius)^D in unconstrained space and runs L-BFGS
    (history ``maxcor``, at most ``maxiter`` iterations, stopping at a relative decrease ``ftol`` or a largest
    |gradient| ``gtol``) on -log p;
    the Gaussian of each iterate gets an ELBO estimate from ``num_elbo_draws`` draws and the best one is kept.
    ``num_draws`` draws per path give the importance weights whose PSIS k-hat is ``info["khat"]`` and, for
    ``num_paths > 1``, the pool that the result's draws resample. Path p runs on its own seed
    (``numpy.random.SeedSequence(seed).spawn``); the caller's random streams are untouched."""
    num_paths, maxiter, maxcor = whole("num_paths", num_paths), whole("maxiter", maxiter), whole("maxcor", maxcor)
    num_elbo_draws, num_draws = whole("num_elbo_draws", num_elbo_draws), whole("num_draws", num_draws, MIN_DRAWS)
    ftol, gtol, init_radius = positive("ftol", ftol), positive("gtol", gtol), positive("init_radius", init_radius)
    seed = check_seed(seed)
    start = time.perf_counter()
    problem = Problem.of(model, *args, **model_kwargs)
    if not problem.latent_shapes:
        raise ModelGuideError("the model has no latent sample site: there is nothing for Pathfinder to approximate")
    scratch = {"params": {}, "constraints": {}}  # parameters the model creates stay out of the caller's store
    with problem.isolated(0, params=scratch):
        density = _Density(problem)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(num_paths + 1)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_paths, desc="pathfinder paths", dynamic_ncols=True)
    paths = []
    try:
        for path_seed in seeds[:-1]:
            with problem.isolated(path_seed, params=scratch):
                u0 = (torch.rand(density.unconstrained.dim, dtype=torch.float64) * 2 - 1) * init_radius
                paths.append(_path(density, u0, maxiter, maxcor, num_elbo_draws, ftol, gtol))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    # num_draws of each path's Gaussian: a stratified draw of the equal-weight mixture, weighted against it
    with problem.isolated(seeds[-1], params=scratch):
        u = torch.cat([p["q"].sample((num_draws,)) for p in paths])
        log_w = _log_weights(density, _approximation(paths), u)
    smoothed, _ = az.psislw(log_w.numpy().copy(), reff=1.0)
    info = {
        "khat": psis_khat(log_w),
        "grad_evals": sum(p["evals"] for p in paths) + len(u),
        "lbfgs_evals": sum(p["lbfgs_evals"] for p in paths),
        "num_paths": num_paths,
        "elbo": max(p["elbo"] for p in paths),
        "elbos": [p["elbo"] for p in paths],
        "iterations": [p["iterations"] for p in paths],
        "best_iteration": [p["iteration"] for p in paths],
        "messages": [p["message"] for p in paths],
        "seed": seed, "maxiter": maxiter, "maxcor": maxcor, "num_elbo_draws": num_elbo_draws,
        "num_draws": num_draws,
    }
    return PathfinderResult(problem=problem, density=density, paths=paths, pool=(u, torch.as_tensor(smoothed)),
                            seconds=time.perf_counter() - start, info=info)
