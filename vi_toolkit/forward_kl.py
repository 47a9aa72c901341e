"""The inclusive (forward) KL(p||q) as a training objective: reweighted wake-sleep and Markovian score climbing.

Minimizing KL(p||q) over the guide's parameters phi has the gradient -E_p[grad_phi log q(z)], which needs draws
from the posterior p. Both estimators draw K particles z_k ~ q (held fixed: no reparameterized path), weigh
them by w_k = p(x, z_k) / q(z_k), and follow the score grad_phi log q at the weighted particles:

- :class:`ReweightedWakeSleep` (Bornschein and Bengio 2015, wake-phi update): sum_k wbar_k grad log q(z_k)
  with self-normalized weights wbar_k = w_k / sum_j w_j. Biased for finite K (the bias shrinks as 1/K).
- :class:`MarkovianScoreClimbing` (Naesseth, Lindsten and Blei 2020): a conditional importance sampling
  kernel keeps one particle from step to step (particle 0 is the previous state) and resamples the state
  among the K particles by wbar. The state is a Markov chain that leaves p invariant, so the gradient, the
  score at the new state or (default) its conditional expectation sum_k wbar_k grad log q(z_k) given the
  particles, is not biased by self-normalization once the chain has mixed.

Only the guide is trained: model parameters, if any, get no gradient.
"""

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO

from .errors import ConfigError
from .log_weights import local_plate, trace_log_prob
from .traces import is_sample, subsample_indices, vectorize


def _values(trace):
    """Detached values of a trace's (non-observed) sample sites, keyed by name, with the sites themselves."""
    return {
        name: (site, site["value"].detach())
        for name, site in trace.nodes.items()
        if is_sample(site) and not site["is_observed"]
    }


def _replaying(fn, values):
    """``fn`` with its sample sites fixed to ``values`` (name -> (site, value))."""
    trace = poutine.Trace()
    for name, (site, value) in values.items():
        trace.add_node(name, **{**site, "value": value})
    return poutine.replay(fn, trace=trace)


def _fixed_pair(model, guide, args, kwargs, values=None):
    """Guide and model traces at fixed guide values (drawn afresh from the guide if None), and the values."""
    if values is None:
        with torch.no_grad():
            values = _values(poutine.trace(guide).get_trace(*args, **kwargs))
    guide_trace = poutine.trace(_replaying(guide, values)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace, values


class _ForwardKL(ELBO):
    """Shared machinery: K guide particles (optionally with particle 0 fixed), their log q and log weights."""

    def __init__(self, num_particles=100, max_plate_nesting=float("inf"), vectorize_particles=False, **kwargs):
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 2:
            raise ConfigError(
                f"the forward-KL objectives weigh several draws of q against each other and need "
                f"num_particles >= 2, got {num_particles!r}; pass e.g. fit_vi(..., num_particles=100)"
            )
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
            **kwargs,
        )

    def loss(self, model, guide, *args, **kwargs):
        """The loss (see the subclass) without gradients."""
        with torch.no_grad():
            return float(self._loss(model, guide, args, kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss (see the subclass); its gradient in the guide's parameters is accumulated in ``.grad``."""
        loss = self._loss(model, guide, args, kwargs)
        if loss.requires_grad:
            loss.backward()
        return float(loss.detach())

    def _get_trace(self, model, guide, args, kwargs):
        """One model and guide trace at a guide draw held fixed (log q has no reparameterized path)."""
        return _fixed_pair(model, guide, args, kwargs)[:2]

    def _particles(self, model, guide, args, kwargs, keep=None, per_point=False):
        """K particles z_k ~ q (z_0 = ``keep`` if given): log q(z_k) with gradient in phi at fixed z_k, the
        detached log weights log p(x, z_k) - log q(z_k), and a function k -> the values of particle k.

        Joint: one log q and one log weight per particle, (K,). ``per_point`` and a pair whose every site sits
        in one data plate (local latents only, as a VAE's): one per particle and data point, (K, B), the log
        weight without the subsample's scale (the points' own densities), log q with it. A subsampled pair
        sees one mini-batch at every particle."""
        with torch.no_grad():
            batch = subsample_indices(poutine.trace(guide).get_trace(*args, **kwargs))
        if batch:
            model, guide = poutine.condition(model, data=batch), poutine.condition(guide, data=batch)
        if self.vectorize_particles:
            if self.max_plate_nesting == float("inf"):
                self._guess_max_plate_nesting(model, guide, args, kwargs)
            particle_dim = -(self.max_plate_nesting + 1)
            model, guide = (vectorize(fn, self.num_particles, self.max_plate_nesting) for fn in (model, guide))
            pairs, particle = self._vectorized_pair(model, guide, args, kwargs, keep, particle_dim)
        else:
            particle_dim = None
            pairs = [_fixed_pair(model, guide, args, kwargs, keep if k == 0 else None)
                     for k in range(self.num_particles)]
            particle = [values for _, _, values in pairs].__getitem__
        plate = local_plate(*pairs[0][:2]) if per_point else None
        plate_dim = None if plate is None else plate[1]

        def log_prob(trace, scaled=True):
            return trace_log_prob(trace, particle_dim, plate_dim, scaled=scaled)

        log_q = [log_prob(guide_trace) for _, guide_trace, _ in pairs]
        if plate is None:
            log_w = [log_prob(model_trace).detach() - q.detach() for (model_trace, _, _), q in zip(pairs, log_q)]
        else:
            log_w = [(log_prob(model_trace, False) - log_prob(guide_trace, False)).detach()
                     for model_trace, guide_trace, _ in pairs]
        log_q, log_w = (torch.cat(v) if particle_dim is not None else torch.stack(v) for v in (log_q, log_w))
        log_q, log_w = torch.broadcast_tensors(log_q, log_w)
        return log_q.expand((self.num_particles,) + log_q.shape[1:]), log_w, particle

    @staticmethod
    def _vectorized_pair(model, guide, args, kwargs, keep, particle_dim):
        """One (model trace, guide trace, values) of the vectorized particles (particle 0 = ``keep`` if given),
        as a one-item list, and a function k -> the values of particle k."""
        with torch.no_grad():
            values = _values(poutine.trace(guide).get_trace(*args, **kwargs))

        def particle_axis(site, value):
            return value.dim() - site["fn"].event_dim + particle_dim

        if keep is not None:
            for name, (site, value) in values.items():
                value = value.clone()
                value.narrow(particle_axis(site, value), 0, 1).copy_(keep[name][1])
                values[name] = (site, value)

        def particle(k):
            return {
                name: (site, value.narrow(particle_axis(site, value), k, 1))
                for name, (site, value) in values.items()
            }

        return [_fixed_pair(model, guide, args, kwargs, values)], particle


class ReweightedWakeSleep(_ForwardKL):
    """Forward KL(p||q) by the wake-phi update of reweighted wake-sleep, with K = ``num_particles`` draws.

    Loss: -sum_k wbar_k log q(z_k), the self-normalized estimate of the cross-entropy -E_p[log q(z)] =
    KL(p||q) + H[p]; its gradient is the wake-phi gradient. Self-normalization biases the fit for small K.
    A pair with local latents only (every site in one data plate, as a VAE's z_n given x_n) is weighed per data
    point, -sum_n sum_k wbar_kn log q(z_kn | x_n) (Le et al. 2019): the posterior factorizes over the points, and
    one joint weight over a batch of B points would leave a single particle carrying all the weight.
    """

    def _loss(self, model, guide, args, kwargs):
        log_q, log_w, _ = self._particles(model, guide, args, kwargs, per_point=True)
        return -(torch.softmax(log_w, 0) * log_q).sum()


class MarkovianScoreClimbing(_ForwardKL):
    """Forward KL(p||q) by Markovian score climbing with a conditional importance sampling kernel of K =
    ``num_particles`` particles (K - 1 fresh draws plus the chain's state).

    Loss: with ``rao_blackwell=True`` (default) -sum_k wbar_k log q(z_k) over the kernel's particles, else
    -log q(z_t) at the chain's new state z_t (Algorithm 1 of the paper; same expectation, noisier): an
    estimate of the cross-entropy -E_p[log q(z)] = KL(p||q) + H[p] that becomes unbiased as the chain mixes.
    The first step starts the chain by importance resampling; the state lives in this object (a fit resumed
    from a checkpoint restarts the chain).
    """

    def __init__(self, *args, rao_blackwell=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.rao_blackwell = rao_blackwell
        self.state = None

    def _loss(self, model, guide, args, kwargs):
        log_q, log_w, particle = self._particles(model, guide, args, kwargs, keep=self.state)
        weights = torch.softmax(log_w, 0)
        k = int(torch.multinomial(weights, 1))
        self.state = particle(k)
        return -(weights * log_q).sum() if self.rao_blackwell else -log_q[k]


FORWARD_KL_METHODS = {"score-climbing": MarkovianScoreClimbing, "wake-sleep": ReweightedWakeSleep}


def forward_kl(method="score-climbing", **kwargs):
    """The forward-KL estimator named ``method`` (``"score-climbing"`` or ``"wake-sleep"``)."""
    if method not in FORWARD_KL_METHODS:
        raise ConfigError(
            f"unknown forward-KL method {method!r}; use vt.Objective('forward-kl', method=...) with one of "
            f"{sorted(FORWARD_KL_METHODS)}"
        )
    return FORWARD_KL_METHODS[method](**kwargs)


__all__ = ["FORWARD_KL_METHODS", "MarkovianScoreClimbing", "ReweightedWakeSleep", "forward_kl"]
