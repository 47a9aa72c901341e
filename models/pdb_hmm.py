"""posteriordb's two-state hidden Markov models in Pyro: ``hmm_example`` and the basketball drive models
``hmm_drive_0`` (exponential emissions) and ``hmm_drive_1`` (normal emissions).

Stan's template (posteriordb ``hmm_example``, ``hmm_drive_0``, ``hmm_drive_1``)::

    parameters { simplex[K] theta1; simplex[K] theta2; <ordered emission parameters> }
    transformed parameters { array[K] simplex[K] theta = {theta1, theta2}; }   // transition rows, K = 2
    model { <priors>;  gamma[1, k] = e(1, k);
            gamma[t, k] = log_sum_exp_j(gamma[t-1, j] + log theta[j, k]) + e(t, k);
            target += log_sum_exp(gamma[N]); }                                  // e(t, k): log emission

The hidden states are marginalized by this forward algorithm in log space (:func:`hmm_log_likelihood`),
computed as the log-semiring matrix product e_1 M_2 ... M_N (M_t[j, k] = log theta[j, k] + e(t, k)) reduced
pairwise, in log2(N) batched steps, instead of N sequential ones; it enters the model as ``pyro.factor``. As in
Stan, the first state has no initial distribution (gamma_1 = e_1). An unconstrained simplex row without prior
statement is flat on the simplex, Dirichlet(1, ..., 1); ``positive_ordered`` / ``ordered`` vectors with
``normal_lpdf`` terms per element are :class:`models.pdb_restricted.RestrictedNormals`. ``theta`` is recorded with
``pyro.deterministic``. Labels ``theta1[0]``, ``theta1[1]``, ``theta2[0]``, ``theta2[1]`` and the emission
parameters (``mu[0]``, ``mu[1]``; ``phi[.]``, ``lambda[.]``). Data: ``posteriordb.load(root / NAME).data``, the
model's arguments by name. Every model broadcasts over particles.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch.distributions import biject_to

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.models.pdb_restricted import RestrictedNormals
from vi_toolkit.pairs import ModelPair

STATES = 2  # Stan's template names the transition rows theta1 and theta2: exactly two states


def log_matmul_exp(a, b):
    """The log-semiring matrix product: log(exp(a) @ exp(b)), (..., I, J) x (..., J, K) -> (..., I, K), as a
    running logaddexp over j (faster than a logsumexp over a short middle dim)."""
    out = a[..., :, :1] + b[..., :1, :]
    for j in range(1, a.shape[-1]):
        out = torch.logaddexp(out, a[..., :, j : j + 1] + b[..., j : j + 1, :])
    return out


def hmm_log_likelihood(log_trans, log_emit):
    """log sum over state paths z of prod_t exp(e(t, z_t)) prod_{t>1} theta[z_{t-1}, z_t]: Stan's forward
    algorithm (gamma_1 = e_1, no initial distribution), as logsumexp_k (e_1 M_2 ... M_N)[k] with
    M_t[j, k] = log theta[j, k] + e(t, k). log_trans (..., K, K), log_emit (..., N, K); returns (...)."""
    steps = log_trans.unsqueeze(-3) + log_emit[..., 1:, None, :]  # M_2 ... M_N, (..., N-1, K, K)
    gamma = log_emit[..., :1, :]  # (..., 1, K): gamma_1 as a row vector
    while steps.shape[-3] > 1:  # pairwise products, order kept: (M_2 M_3)(M_4 M_5)... with an odd one last
        odd = steps[..., -1:, :, :] if steps.shape[-3] % 2 else steps[..., :0, :, :]
        even = steps.shape[-3] - odd.shape[-3]
        paired = log_matmul_exp(steps[..., 0:even:2, :, :], steps[..., 1:even:2, :, :])
        steps = torch.cat([paired, odd.expand(paired.shape[:-3] + odd.shape[-3:])], -3)
    if steps.shape[-3] == 1:
        gamma = log_matmul_exp(gamma, steps[..., 0, :, :])
    return gamma.squeeze(-2).logsumexp(-1)


def transition_matrix(concentration):
    """The transition rows theta1, theta2 ~ Dirichlet(concentration[k]) as sample sites, and theta (..., K, K)
    recorded with ``pyro.deterministic``."""
    rows = [pyro.sample(f"theta{k + 1}", dist.Dirichlet(concentration[k])) for k in range(STATES)]
    return pyro.deterministic("theta", torch.stack(rows, -2), event_dim=2)


def observe(theta, log_emit):
    """The hidden states marginalized: ``pyro.factor`` of :func:`hmm_log_likelihood`."""
    pyro.factor("hmm_likelihood", hmm_log_likelihood(theta.log(), log_emit))


def unconstrained_normal(name, support, start, scale=0.1):
    """A mean-field guide site: Normal(loc, scale) in the unconstrained space of ``support`` mapped by
    ``biject_to(support)``, loc started at the unconstrained value of ``start``."""
    transform = biject_to(support)
    loc = pyro.param(f"{name}_loc", lambda: transform.inv(torch.as_tensor(start, dtype=torch.get_default_dtype())))
    sd = pyro.param(f"{name}_scale", lambda: torch.full(loc.shape, scale), constraint=constraints.positive)
    return pyro.sample(name, dist.TransformedDistribution(dist.Normal(loc, sd).to_event(1), transform))


def transition_guide():
    """Mean-field guide of theta1, theta2 (started at a sticky chain, 0.8 on the diagonal)."""
    for k in range(STATES):
        row = torch.full((STATES,), 0.2 / (STATES - 1)).index_fill(0, torch.tensor(k), 0.8)
        unconstrained_normal(f"theta{k + 1}", constraints.simplex, row)


def as_series(name, values, length):
    """``values`` as a finite 1-D float tensor of ``length``, or a DataError naming ``name``."""
    values = torch.as_tensor(values, dtype=torch.get_default_dtype())
    if values.dim() != 1 or len(values) != length or length < 1:
        raise DataError(f"{name} must be a 1-D array of length N={length}, got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise DataError(f"{name} holds NaN or infinite values; the forward algorithm needs every observation")
    return values


def check_sizes(N, K):
    """(N, K) as ints, N >= 1 and K = 2 (Stan's template), or a DataError."""
    if int(N) != N or int(K) != K or N < 1 or K != STATES:
        raise DataError(f"N must be a positive integer and K = {STATES} (the model has transition rows theta1 and "
                        f"theta2 only), got N={N!r}, K={K!r}")
    return int(N), int(K)


def spread(values):
    """The 25% and 75% quantiles of ``values``: an ordered start for two states' emission locations."""
    return torch.quantile(values, torch.tensor([0.25, 0.75]))


@register("hmm-example")
class HMMExample(ModelPair):
    """theta_k ~ Dirichlet(1, 1), mu ordered > 0 with N(mu_0 | 3, 1) N(mu_1 | 10, 1);
    y_t | z_t ~ N(mu_{z_t}, 1), z a Markov chain with transition rows theta_k."""

    description = "posteriordb hmm_example: two-state Gaussian hidden Markov model"
    posteriordb = "hmm_example-hmm_example"

    def check_data(self, N, K, y):
        """(N, K, y): N >= 1, K = 2, y a finite 1-D float tensor of length N; or a DataError."""
        N, K = check_sizes(N, K)
        return N, K, as_series("y", y, N)

    def model(self, N, K, y):
        theta = transition_matrix(torch.ones(K, K))
        mu = pyro.sample("mu", RestrictedNormals([3.0, 10.0], 1.0, "positive_ordered"))
        observe(theta, dist.Normal(mu.unsqueeze(-2), 1.0).log_prob(y.unsqueeze(-1)))

    def guide(self, N, K, y):
        """Mean-field Gaussian in the unconstrained space, mu started at the quartiles of y."""
        transition_guide()
        unconstrained_normal("mu", constraints.positive_ordered_vector, spread(y).clamp(min=1e-3))


class HMMDrive(ModelPair):
    """The basketball drive models: theta_k ~ Dirichlet(alpha_k), phi and lambda ordered with
    N(. | 0, 1) N(. | 3, 1) priors; (u_t, v_t) | z_t emitted with parameters phi_{z_t}, lambda_{z_t}."""

    def check_drive(self, K, N, u, v, alpha):
        """(K, N, u, v, alpha) checked: K = 2, u and v finite series of length N, alpha a positive (K, K)
        matrix of Dirichlet concentrations; or a DataError."""
        N, K = check_sizes(N, K)
        alpha = torch.as_tensor(alpha, dtype=torch.get_default_dtype())
        if alpha.shape != (K, K) or not (torch.isfinite(alpha).all() and (alpha > 0).all()):
            raise DataError(f"alpha must be a ({K}, {K}) matrix of positive concentrations, got {alpha.tolist()!r}")
        return K, N, as_series("u", u, N), as_series("v", v, N), alpha

    def emission_parameters(self, positive):
        """phi and lambda, ordered (and positive): Stan's normal_lpdf(.[1] | 0, 1) + normal_lpdf(.[2] | 3, 1)."""
        support = "positive_ordered" if positive else "ordered"
        return [pyro.sample(name, RestrictedNormals([0.0, 3.0], 1.0, support)) for name in ("phi", "lambda")]


@register("hmm-drive-0")
class HMMDrive0(HMMDrive):
    """HMMDrive with exponential emissions: u_t ~ Exponential(phi_{z_t}), v_t ~ Exponential(lambda_{z_t}),
    phi and lambda positive ordered."""

    description = "posteriordb hmm_drive_0: two-state basketball drive HMM, exponential emissions"
    posteriordb = "bball_drive_event_0-hmm_drive_0"

    def check_data(self, K, N, u, v, alpha):
        """HMMDrive.check_drive, and u, v >= 0 (exponential observations); or a DataError."""
        K, N, u, v, alpha = self.check_drive(K, N, u, v, alpha)
        if (u < 0).any() or (v < 0).any():
            raise DataError("u and v must be non-negative: they are exponential observations")
        return K, N, u, v, alpha

    def model(self, K, N, u, v, alpha):
        theta = transition_matrix(alpha)
        phi, lam = self.emission_parameters(positive=True)
        log_emit = (dist.Exponential(phi.unsqueeze(-2)).log_prob(u.unsqueeze(-1))
                    + dist.Exponential(lam.unsqueeze(-2)).log_prob(v.unsqueeze(-1)))
        observe(theta, log_emit)

    def guide(self, K, N, u, v, alpha):
        """Mean-field Gaussian in the unconstrained space, rates started at 1 / the quartiles of u and v."""
        transition_guide()
        for name, series in (("phi", u), ("lambda", v)):
            unconstrained_normal(name, constraints.positive_ordered_vector, 1 / spread(series).clamp(min=1e-3).flip(0))


@register("hmm-drive-1")
class HMMDrive1(HMMDrive):
    """HMMDrive with normal emissions: u_t ~ N(phi_{z_t}, tau), v_t ~ N(lambda_{z_t}, rho), phi and lambda
    ordered, tau and rho data."""

    description = "posteriordb hmm_drive_1: two-state basketball drive HMM, normal emissions"
    posteriordb = "bball_drive_event_1-hmm_drive_1"

    def check_data(self, K, N, u, v, alpha, tau, rho):
        """HMMDrive.check_drive, and tau, rho positive numbers; or a DataError."""
        K, N, u, v, alpha = self.check_drive(K, N, u, v, alpha)
        tau, rho = (torch.as_tensor(s, dtype=torch.get_default_dtype()) for s in (tau, rho))
        if tau.dim() or rho.dim() or not (tau > 0 and rho > 0):
            raise DataError(f"tau and rho (emission sds) must be positive numbers, got {tau.tolist()!r}, {rho.tolist()!r}")
        return K, N, u, v, alpha, tau, rho

    def model(self, K, N, u, v, alpha, tau, rho):
        theta = transition_matrix(alpha)
        phi, lam = self.emission_parameters(positive=False)
        log_emit = (dist.Normal(phi.unsqueeze(-2), tau).log_prob(u.unsqueeze(-1))
                    + dist.Normal(lam.unsqueeze(-2), rho).log_prob(v.unsqueeze(-1)))
        observe(theta, log_emit)

    def guide(self, K, N, u, v, alpha, tau, rho):
        """Mean-field Gaussian in the unconstrained space, locations started at the quartiles of u and v."""
        transition_guide()
        for name, series in (("phi", u), ("lambda", v)):
            unconstrained_normal(name, constraints.ordered_vector, spread(series))
