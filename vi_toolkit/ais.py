"""Annealed importance sampling (Neal 2001) of the log evidence, with HMC transitions.

This module's one job: estimate log p(x) = log int p(x, u) du for a target in unconstrained coordinates
(:class:`vi_toolkit.log_density.UnconstrainedModel`) by annealing particles from a start distribution q0 to
the posterior along the geometric path pi_b ∝ q0^(1-b) p(x, .)^b, one HMC transition per temperature. The
leapfrog integrator is Pyro's :func:`pyro.ops.integrator.velocity_verlet`.
"""

import math
from dataclasses import dataclass

import pyro
import torch
from tqdm.auto import tqdm
from pyro.ops.integrator import potential_grad, velocity_verlet

from .errors import ConfigError
from .estimators import log_mean_exp
from .isolation import isolated
from .validate import seed as check_seed

TARGET_ACCEPTANCE = 0.7  # the HMC step size adapts between temperatures towards this acceptance rate


@dataclass(frozen=True)
class AIS:
    """Settings of annealed importance sampling: ``particles`` chains through ``temperatures`` steps of the
    sigmoid schedule (Grosse et al. 2015), each one HMC transition of ``leapfrog`` steps.

    ``start="guide"``: the initial distribution is the Gaussian in unconstrained space moment-matched to
    ``draws`` guide draws (exactly q for Gaussian guides, up to Monte Carlo error in its moments); ``"prior"``:
    the model's prior. ``seed``: the private random stream of the start draws and the transitions."""

    particles: int = 200
    temperatures: int = 200
    leapfrog: int = 5
    start: str = "guide"
    draws: int = 4000
    seed: int = 0

    def __post_init__(self):
        for name in ("particles", "temperatures", "leapfrog", "draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2 - (name == "leapfrog"):
                raise ConfigError(f"AIS.{name} must be a whole number >= 2 (leapfrog >= 1), got {value!r}")
        if self.start not in ("guide", "prior"):
            raise ConfigError(f"AIS.start must be 'guide' or 'prior', got {self.start!r}")
        check_seed(self.seed)


def sigmoid_schedule(steps, delta=4.0):
    """Inverse temperatures 0 = beta_0 < ... < beta_T = 1 on a sigmoid (Grosse, Maddison and Salakhutdinov 2015)."""
    s = torch.sigmoid(delta * (2 * torch.arange(steps + 1, dtype=torch.float64) / steps - 1))
    return ((s - s[0]) / (s[-1] - s[0])).tolist()


def ais_log_evidence(target, start_draws, settings=AIS(), *, threads=None, progress=False):
    """log p(x) by annealed importance sampling along the geometric path pi_b ∝ q0^(1-b) p(x, .)^b: an
    :class:`~vi_toolkit.estimators.Estimate`.

    log Z = log mean_i exp(sum_t (b_t - b_{t-1}) [log p(x, u_i,t-1) - log q0(u_i,t-1)]), with u_i,t an HMC
    transition leaving pi_{b_t} invariant, in coordinates whitened by the moments of ``start_draws`` (u, (n, D)).
    q0 is that moment-matched Gaussian (``start="guide"``) or the prior (``"prior"``). ``target``: an
    :class:`~vi_toolkit.log_density.UnconstrainedModel`. Runs on the private stream ``settings.seed`` and
    ``threads`` intra-op threads (None: the caller's); the caller's random stream is left as it was.
    ``progress``: a progress bar over the temperatures."""
    with isolated(settings.seed, threads=threads), pyro.validation_enabled(False):
        return _ais(target, start_draws, settings, progress)


class _Path:
    """The tempered potential -[(1 - b) log q0 + b log p(x, .)] of the whitened coordinates v (P, D), summed
    over particles (what ``velocity_verlet`` differentiates); each call records the per-particle
    (log q0, log p) of the last position it was evaluated at."""

    def __init__(self, target, mean, chol, start):
        self.target, self.mean, self.chol, self.start = target, mean, chol, start
        self.log_det_chol = chol.diagonal().log().sum()
        self.beta = 0.0
        self.last = None
        self.failed = False

    def components(self, v):
        """(log q0, log p(x, .)) at v, each (P,)."""
        prior, likelihood = self.target.densities(self.mean + v @ self.chol.T)
        log_p = prior + likelihood + self.log_det_chol
        if self.start == "guide":
            log_q = torch.distributions.Normal(0.0, 1.0).log_prob(v).sum(1)
        else:
            log_q = prior + self.log_det_chol
        return log_q, log_p

    def __call__(self, z):
        try:
            log_q, log_p = self.components(z["v"])
        except Exception:  # Pyro's potential_grad turns a singular matrix into a NaN potential: reject the move
            self.failed = True
            raise
        self.last = (log_q.detach(), log_p.detach())
        return -((1 - self.beta) * log_q + self.beta * log_p).sum()

    def log_pi(self, state):
        log_q, log_p = state
        return (1 - self.beta) * log_q + self.beta * log_p


def _ais(target, start_draws, settings, progress=False):
    start_draws = start_draws.detach()
    mean = start_draws.mean(0)
    cov = torch.cov(start_draws.T).reshape(target.dim, target.dim)
    try:
        chol = torch.linalg.cholesky(cov + 1e-9 * cov.diagonal().mean() * torch.eye(target.dim))
    except RuntimeError:
        raise ConfigError(
            "AIS: the start draws have a singular covariance (a point-mass guide?); use AIS(start='prior')"
        ) from None
    path = _Path(target, mean, chol, settings.start)
    n = settings.particles
    if settings.start == "guide":
        v = torch.randn(n, target.dim)
    else:
        v = torch.linalg.solve_triangular(chol, (target.prior_draws(n) - mean).T, upper=False).T
    with torch.no_grad():
        state = path.components(v)
    log_weight = torch.zeros(n, dtype=torch.float64)
    step_size = 0.5 / math.sqrt(math.sqrt(target.dim))
    betas = sigmoid_schedule(settings.temperatures)
    temperatures = zip(betas[:-1], betas[1:])
    for previous, beta in tqdm(temperatures, total=len(betas) - 1, desc="AIS temperatures", disable=not progress,
                               leave=False, dynamic_ncols=True):
        log_weight += (beta - previous) * (state[1] - state[0]).double()
        path.beta = beta
        v, state, accept = _hmc(v, state, path, step_size, settings.leapfrog)
        step_size *= math.exp(accept - TARGET_ACCEPTANCE)
    return log_mean_exp(log_weight)


def _hmc(v, state, path, step_size, leapfrog):
    """One HMC transition (identity mass) of every particle at the path's inverse temperature: the leapfrog
    trajectory by ``velocity_verlet``, then a Metropolis accept/reject per particle."""
    momentum = torch.randn_like(v)
    h0 = -path.log_pi(state) + 0.5 * (momentum**2).sum(1)
    path.failed = False
    grads, _ = potential_grad(path, {"v": v.clone()})  # at the new temperature
    new, momentum, _, _ = velocity_verlet(
        {"v": v.clone()}, {"v": momentum}, path, lambda r: r, step_size, leapfrog, z_grads=grads
    )
    new_v, new_state = new["v"].detach(), path.last
    if path.failed:  # the trajectory failed (a singular matrix on the way): every particle stays
        return v, state, 0.0
    h1 = -path.log_pi(new_state) + 0.5 * (momentum["v"] ** 2).sum(1)
    log_accept = (h0 - h1).clamp(max=0.0)
    log_accept = torch.where(torch.isfinite(log_accept), log_accept, torch.full_like(log_accept, -math.inf))
    accepted = torch.rand(len(v)).log() < log_accept
    v = torch.where(accepted[:, None], new_v, v)
    state = tuple(torch.where(accepted, new, old) for old, new in zip(state, new_state))
    return v, state, float(log_accept.exp().mean())
