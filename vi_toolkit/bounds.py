"""Bounds on the log evidence from a fitted guide: ELBO <= IWAE-k <= log p(x) <= CUBO_2, and AIS.

All estimators take the importance log-weights ``log w = log p(x, z) - log q(z)``, ``z ~ q``, of
:func:`vi_toolkit.traces.log_weights` (as Pyro's ``infer/importance.py`` does) and return an
:class:`Estimate` with its Monte Carlo standard error. Where every latent (and observed) site sits in one
data plate, the model has only local latents and :func:`bounds` works *per data point*: log-weights (S, N),
IWAE-k and CUBO_2 from k draws per point, summed over points (the VAE convention). Otherwise the bounds are
*joint*: one weight per draw of the whole latent vector. :func:`ais_log_evidence` estimates log p(x) by
annealed importance sampling with HMC (always joint).
"""

import contextlib
import math
from dataclasses import dataclass

import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import biject_to

from . import traces
from .threads import one_thread
from .errors import ConfigError, ModelGuideError
from .validate import whole


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate and its standard error."""

    value: float
    se: float

    def __repr__(self):
        return f"{self.value:.4f} ± {self.se:.4f}"


def _log_weights(log_w):
    """Log-weights as a float64 tensor (S, N): S draws of N independent data points (N = 1: joint)."""
    log_w = torch.as_tensor(log_w, dtype=torch.float64)
    log_w = log_w.reshape(len(log_w), -1) if log_w.dim() else log_w.reshape(1, 1)
    if len(log_w) < 2:
        raise ConfigError(f"bounds need at least 2 importance weights, got {len(log_w)}")
    return log_w


def log_mean_exp(log_w):
    """sum_i log (1/S) sum_s w_si over data points i, each with the delta-method standard error
    sd(w_i) / (sqrt(S) mean(w_i)), added in quadrature (points are independent under q)."""
    log_w = _log_weights(log_w)
    top = log_w.max(0).values
    w = (log_w - top).exp()
    value = (top + w.mean(0).log()).sum()
    se = (w.std(0) / (math.sqrt(len(w)) * w.mean(0))).pow(2).sum().sqrt()
    return Estimate(float(value), float(se))


def elbo(log_w):
    """ELBO = E_q[log w] <= log p(x): the sample mean of the log-weights (summed over data points);
    se = sd / sqrt(S)."""
    per_draw = _log_weights(log_w).sum(1)
    return Estimate(float(per_draw.mean()), float(per_draw.std() / math.sqrt(len(per_draw))))


def iwae(log_w, k):
    """IWAE-k = E[log (1/k) sum_{j=1..k} w_j] (Burda et al. 2016), ELBO = IWAE-1 <= IWAE-k <= log p(x);
    per data point (summed over points) when ``log_w`` is (S, N).

    The S weights form floor(S/k) independent batches of k: logsumexp - log k per batch, averaged; the
    standard error is the sd over batches / sqrt(batches)."""
    log_w = _log_weights(log_w)
    batches = len(log_w) // k
    if batches < 2:
        raise ConfigError(f"IWAE-{k} needs at least {2 * k} log-weights (2 batches of {k}), got {len(log_w)}")
    blocks = log_w[: batches * k].reshape(batches, k, -1)
    per_batch = (torch.logsumexp(blocks, dim=1) - math.log(k)).sum(1)
    return Estimate(float(per_batch.mean()), float(per_batch.std() / math.sqrt(batches)))


def cubo(log_w, n=2):
    """CUBO_n = (1/n) log E_q[w^n] >= log p(x) (Dieng et al. 2017, the chi^n upper bound), n > 1.

    Estimated as (1/n) log-mean-exp(n log w), se by the delta method. The estimate of the log of a mean is
    biased low for finite S (Jensen), so with a heavy-tailed w it can fall below log p(x)."""
    inner = log_mean_exp(n * _log_weights(log_w))
    return Estimate(inner.value / n, inner.se / n)


def local_plate(model, guide, args, kwargs):
    """The vectorized plate that holds every sample site of the model and guide (only local latents:
    per-data-point bounds along it), or None (global latents: joint bounds)."""
    model_trace, guide_trace = traces.trace_pair(model, guide, args, kwargs)
    common = None
    for trace in (model_trace, guide_trace):
        for site in trace.nodes.values():
            if traces.is_sample(site):
                frames = {(f.name, f.dim) for f in site["cond_indep_stack"] if f.vectorized and f.dim is not None}
                common = frames if common is None else common & frames
    return max(common, key=lambda frame: frame[1]) if common else None


@torch.no_grad()
def per_point_log_weights(model, guide, args, kwargs, num_samples, max_plate_nesting, plate_dim, chunk=1000):
    """log w_si = log p(x_i, z_si) - log q(z_si), z ~ q, for each index i of the plate at ``plate_dim``:
    a tensor (num_samples, N); its row sums are the joint log-weights."""
    out, remaining = [], num_samples
    particle_dim = -(max_plate_nesting + 1)
    while remaining > 0:
        n = min(chunk, remaining)
        guide_trace = poutine.trace(traces.vectorize(guide, n, max_plate_nesting)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(
            poutine.replay(traces.vectorize(model, n, max_plate_nesting), trace=guide_trace)
        ).get_trace(*args, **kwargs)
        total = 0.0
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            trace.compute_log_prob()
            for site in trace.nodes.values():
                if traces.is_sample(site):
                    lp = site["log_prob"]
                    lp = lp.reshape((1,) * max(0, -particle_dim - lp.dim()) + lp.shape)
                    keep = {lp.dim() + particle_dim, lp.dim() + plate_dim}
                    others = [d for d in range(lp.dim()) if d not in keep]
                    total = total + sign * (lp.sum(others) if others else lp)
        out.append(total.expand(n, -1) if total.shape[0] == 1 else total)
        remaining -= n
    return torch.cat(out)


@dataclass(frozen=True)
class AIS:
    """Settings of annealed importance sampling: ``particles`` chains through ``temperatures`` steps of the
    sigmoid schedule (Grosse et al. 2015), each one HMC transition of ``leapfrog`` steps.

    ``start="guide"``: the initial distribution is the Gaussian in unconstrained space moment-matched to
    ``draws`` guide draws (exactly q for Gaussian guides, up to Monte Carlo error in its moments); ``"prior"``:
    the model's prior."""

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


class UnconstrainedModel:
    """The model's densities at a batch of unconstrained latent vectors u (P, D), z = T(u) site by site
    (``biject_to(support)``): ``log_prior(u) = log p(T(u)) + log|det J_T(u)|`` and ``log_likelihood(u) =
    log p(x | T(u))``, each of shape (P,). Particles run vectorized where every site broadcasts."""

    def __init__(self, model, args, kwargs, max_plate_nesting):
        self.model, self.args, self.kwargs, self.mpn = model, args, kwargs, max_plate_nesting
        trace = self._trace(2)
        self.sites = {}
        for name, site in trace.nodes.items():
            if traces.is_latent(site):
                if site["fn"].support.is_discrete:
                    raise ModelGuideError(f"AIS needs continuous latent sites; {name!r} is discrete")
                transform = biject_to(site["fn"].support)
                tail = tuple(site["value"].shape[1:])
                self.sites[name] = (transform, tail, tuple(transform.inv.forward_shape(tail)))
        self.dim = sum(math.prod(u_tail) for _, _, u_tail in self.sites.values())
        self.vectorized = self._broadcasts(trace, 2)

    def _trace(self, n, values=None):
        fn = traces.vectorize(self.model, n, self.mpn)
        if values is not None:
            fn = poutine.condition(fn, data=values)
        return poutine.trace(fn).get_trace(*self.args, **self.kwargs)

    def _broadcasts(self, trace, n):
        trace.compute_log_prob()
        dim = self.mpn + 1
        return all(
            site["log_prob"].dim() >= dim and site["log_prob"].shape[-dim] == n
            for site in trace.nodes.values()
            if traces.is_sample(site)
        )

    def unconstrained(self, draws):
        """site -> constrained draws (n, *site_shape) as u (n, D)."""
        parts = []
        for name, (transform, tail, _) in self.sites.items():
            z = torch.as_tensor(draws[name], dtype=torch.get_default_dtype())
            parts.append(transform.inv(z.reshape((len(z),) + tail)).reshape(len(z), -1))
        return torch.cat(parts, dim=1)

    def constrained(self, u):
        """u (P, D) -> (site -> z with the vectorized trace's shape, log|det J| of shape (P,))."""
        values, log_det, start = {}, torch.zeros(len(u)), 0
        for name, (transform, tail, u_tail) in self.sites.items():
            size = math.prod(u_tail)
            part = u[:, start : start + size].reshape((len(u),) + u_tail)
            start += size
            z = transform(part)
            values[name] = z
            log_det = log_det + transform.log_abs_det_jacobian(part, z).reshape(len(u), -1).sum(1)
        return values, log_det

    def _densities(self, u):
        values, log_det = self.constrained(u)
        trace = self._trace(len(u), values)
        trace.compute_log_prob()
        prior, likelihood = log_det, torch.zeros(len(u))
        for name, site in trace.nodes.items():
            if traces.is_sample(site):
                lp = traces.particle_sum(site["log_prob"], len(u), self.mpn)
                if name in self.sites:
                    prior = prior + lp
                else:
                    likelihood = likelihood + lp
        return prior, likelihood

    def densities(self, u):
        """(log_prior(u), log_likelihood(u)), each (P,); differentiable in u."""
        if self.vectorized:
            return self._densities(u)
        parts = [self._densities(u[i : i + 1]) for i in range(len(u))]
        return torch.cat([p for p, _ in parts]), torch.cat([lik for _, lik in parts])

    def prior_draws(self, n):
        """n draws from the prior, as u (n, D)."""
        with torch.no_grad():
            trace = self._trace(n)
        return self.unconstrained({name: trace.nodes[name]["value"] for name in self.sites})


def _sigmoid_schedule(steps, delta=4.0):
    """Inverse temperatures 0 = beta_0 < ... < beta_T = 1 on a sigmoid (Grosse, Maddison and Salakhutdinov 2015)."""
    s = torch.sigmoid(delta * (2 * torch.arange(steps + 1, dtype=torch.float64) / steps - 1))
    return ((s - s[0]) / (s[-1] - s[0])).tolist()


def ais_log_evidence(target, start_draws, settings=AIS()):
    """log p(x) by annealed importance sampling along the geometric path pi_b ∝ q0^(1-b) p(x, .)^b.

    log Z = log mean_i exp(sum_t (b_t - b_{t-1}) [log p(x, u_i,t-1) - log q0(u_i,t-1)]), with u_i,t an HMC
    transition leaving pi_{b_t} invariant, in coordinates whitened by the moments of ``start_draws`` (u, (n, D)).
    q0 is that moment-matched Gaussian (``start="guide"``) or the prior (``"prior"``). ``target``: an
    :class:`UnconstrainedModel`. The HMC step size adapts between temperatures towards acceptance 0.7."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(settings.seed)
    try:
        with one_thread(), pyro.validation_enabled(False):
            return _ais(target, start_draws, settings)
    finally:
        torch.set_rng_state(generator_state)


def _ais(target, start_draws, settings):
    start_draws = start_draws.detach()
    mean = start_draws.mean(0)
    cov = torch.cov(start_draws.T).reshape(target.dim, target.dim)
    try:
        chol = torch.linalg.cholesky(cov + 1e-9 * cov.diagonal().mean() * torch.eye(target.dim))
    except RuntimeError:
        raise ConfigError(
            "AIS: the start draws have a singular covariance (a point-mass guide?); use AIS(start='prior')"
        ) from None
    log_det_chol = chol.diagonal().log().sum()
    standard = torch.distributions.Normal(0.0, 1.0)

    def components(v):
        """(log q0, log p(x, .)) in whitened coordinates v, and their gradients."""
        v = v.detach().requires_grad_(True)
        u = mean + v @ chol.T
        prior, likelihood = target.densities(u)
        log_p = prior + likelihood + log_det_chol
        log_q = standard.log_prob(v).sum(1) if settings.start == "guide" else prior + log_det_chol
        (grad_p,) = torch.autograd.grad(log_p.sum(), v, retain_graph=settings.start == "prior")
        grad_q = -v.detach() if settings.start == "guide" else torch.autograd.grad(log_q.sum(), v)[0]
        return log_q.detach(), log_p.detach(), grad_q, grad_p

    n = settings.particles
    if settings.start == "guide":
        v = torch.randn(n, target.dim)
    else:
        v = torch.linalg.solve_triangular(chol, (target.prior_draws(n) - mean).T, upper=False).T
    state = components(v)
    log_weight = torch.zeros(n, dtype=torch.float64)
    step_size = 0.5 / math.sqrt(math.sqrt(target.dim))
    betas = _sigmoid_schedule(settings.temperatures)
    for previous, beta in zip(betas[:-1], betas[1:]):
        log_weight += (beta - previous) * (state[1] - state[0]).double()
        v, state, accept = _hmc(v, state, beta, step_size, settings.leapfrog, components)
        step_size *= math.exp(accept - 0.7)
    return log_mean_exp(log_weight)


def _hmc(v, state, beta, step_size, leapfrog, components):
    """One HMC transition (identity mass) for every particle at inverse temperature ``beta``."""

    def tempered(s):
        log_q, log_p, grad_q, grad_p = s
        return (1 - beta) * log_q + beta * log_p, (1 - beta) * grad_q + beta * grad_p

    log_pi, grad = tempered(state)
    momentum = torch.randn_like(v)
    h0 = -log_pi + 0.5 * (momentum**2).sum(1)
    new_v, new_state = v, state
    momentum = momentum + 0.5 * step_size * grad
    for i in range(leapfrog):
        new_v = new_v + step_size * momentum
        new_state = components(new_v)
        new_log_pi, grad = tempered(new_state)
        momentum = momentum + (step_size if i < leapfrog - 1 else 0.5 * step_size) * grad
    h1 = -new_log_pi + 0.5 * (momentum**2).sum(1)
    log_accept = (h0 - h1).clamp(max=0.0)
    log_accept = torch.where(torch.isfinite(log_accept), log_accept, torch.full_like(log_accept, -math.inf))
    accepted = torch.rand(len(v)).log() < log_accept
    keep = accepted[:, None]
    v = torch.where(keep, new_v.detach(), v)
    state = tuple(torch.where(keep if s.dim() == 2 else accepted, ns, s) for s, ns in zip(state, new_state))
    return v, state, float(log_accept.exp().mean())


@dataclass(frozen=True)
class Bounds:
    """The bound sandwich at one fitted guide. ``log_evidence``: exact (a float) or None; ``ais``: an
    :class:`Estimate` or None; ``iwae``: k -> Estimate. ``gap`` = log p(x) - ELBO = KL(q||p) (exact log p(x)
    where given, else AIS)."""

    elbo: Estimate
    iwae: dict
    cubo: Estimate
    ais: Estimate = None
    log_evidence: float = None
    num_weights: int = 0
    per: str = "joint"

    @property
    def gap(self):
        """KL(q||p) = log p(x) - ELBO, with the ELBO's standard error (and AIS's where it stands in)."""
        if self.log_evidence is not None:
            return Estimate(self.log_evidence - self.elbo.value, self.elbo.se)
        if self.ais is not None:
            return Estimate(self.ais.value - self.elbo.value, math.hypot(self.ais.se, self.elbo.se))
        return None

    def table(self):
        """One row per bound: bound, k, value, se, in the order of the sandwich."""
        rows = [{"bound": "ELBO", "k": 1, "value": self.elbo.value, "se": self.elbo.se}]
        rows += [{"bound": f"IWAE-{k}", "k": k, "value": e.value, "se": e.se} for k, e in self.iwae.items()]
        if self.log_evidence is not None:
            rows.append({"bound": "log p(x) exact", "k": None, "value": self.log_evidence, "se": 0.0})
        if self.ais is not None:
            rows.append({"bound": "log p(x) AIS", "k": None, "value": self.ais.value, "se": self.ais.se})
        rows.append({"bound": "CUBO_2", "k": None, "value": self.cubo.value, "se": self.cubo.se})
        return pd.DataFrame(rows)


def _resolve(model, guide, args, kwargs):
    """(model, guide, args, kwargs, scope): ``scope()`` is the context in which the guide sees its parameters."""
    from .vi import VIResult

    if isinstance(model, VIResult):
        if guide is not None or args or kwargs:
            raise ConfigError("bounds(result) uses the fit's own model and data: pass no guide or data with it")
        model, guide = model.model, model
    if isinstance(guide, VIResult):
        if not args and not kwargs:
            args, kwargs = guide.args, guide.kwargs
        return model, guide.guide, args, kwargs, guide.scope
    if callable(guide):
        return model, guide, args, kwargs, contextlib.nullcontext  # parameters in the current param store
    raise ConfigError(
        "bounds needs a fitted guide: a VIResult, or a guide callable whose parameters are in the param store; "
        f"got {type(guide).__name__}"
    )


def _check_k(k):
    k = tuple(k)
    if not k or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in k):
        raise ConfigError(f"k must be a non-empty sequence of positive whole numbers, got {k!r}")
    return tuple(sorted(set(k)))


def bounds(model, guide=None, *args, k=(1, 10, 100, 1000), log_evidence=None, seed=0, batches=100, ais=None,
           per_point=True, **model_kwargs):
    """The ELBO, IWAE-k for each k, CUBO_2, and log p(x) (exact if ``log_evidence`` is given, else by AIS),
    from one pool of ``max(k) * batches`` importance weights of the fitted guide (joint over the data set).

    Call as ``bounds(result)`` with a :class:`~vi_toolkit.VIResult`, or ``bounds(model, guide, *args)`` with a
    VIResult or a guide callable whose parameters are in the param store. ``ais``: None runs AIS only where
    ``log_evidence`` is None; True or an :class:`AIS` runs it always (with those settings); False never.
    ``per_point``: per-data-point bounds where the model has only local latents (see the module docstring;
    ``Bounds.per`` says which was used); False forces joint bounds. A model whose sites do not broadcast over
    vectorized particles (e.g. ``X @ beta``) is traced once per weight: lower ``k`` or ``batches`` for it.
    """
    k = _check_k(k)
    batches = whole("batches", batches, 2)
    settings = ais if isinstance(ais, AIS) else AIS() if (ais or (ais is None and log_evidence is None)) else None
    model, guide, args, kwargs, scope = _resolve(model, guide, args, model_kwargs)
    with scope(), one_thread():
        structure = traces.inspect_pair(model, guide, args, kwargs)
        mpn = structure.max_plate_nesting
        vectorized = traces.broadcasts(model, guide, args, kwargs, 7, mpn)
        plate = local_plate(model, guide, args, kwargs) if vectorized and per_point else None
        pyro.set_rng_seed(seed)
        if plate is None:
            log_w = traces.log_weights(model, guide, args, kwargs, max(k) * batches, mpn, vectorized=vectorized)
        else:
            log_w = per_point_log_weights(model, guide, args, kwargs, max(k) * batches, mpn, plate[1])
        if settings is not None and settings.start == "guide":
            start = traces.posterior_draws(model, guide, args, kwargs, structure, settings.draws, vectorized=vectorized)
    ais_estimate = None
    if settings is not None:
        target = UnconstrainedModel(model, args, kwargs, mpn)
        if settings.start == "guide":
            start_u = target.unconstrained(start)
        else:
            torch.manual_seed(settings.seed)
            start_u = target.prior_draws(settings.draws)
        ais_estimate = ais_log_evidence(target, start_u, settings)
    return Bounds(
        elbo=elbo(log_w),
        iwae={kk: iwae(log_w, kk) for kk in k},
        cubo=cubo(log_w),
        ais=ais_estimate,
        log_evidence=None if log_evidence is None else float(log_evidence),
        num_weights=len(log_w),
        per="joint" if plate is None else f"data point (plate {plate[0]!r}, {log_w.shape[1]} points)",
    )
