"""The IWAE-k bound trained with doubly reparameterized gradients (DReG; Tucker, Lawson, Gu and Maddison 2019).

Value: the IWAE bound (Burda et al. 2016) with k = ``num_particles`` draws z_i ~ q, per element n of the plates
that every site shares (a VAE's data points; the whole model where no plate is shared):

    IWAE-k = sum_n c log (1/k) sum_i w_in,   log w_in = [log p(x, z_in) - log q(z_in)] / c,

where c is the mini-batch scale N/B of those shared plates (1 without subsampling), so each data point's weights
are its own p(x_n, z)/q(z|x_n) and the batch sum estimates the full data's. Without subsampling the value equals
Pyro's ``RenyiELBO(alpha=0)`` on the same draws. (``RenyiELBO`` weights a subsampled plate's points by
w_in^(N/B) instead: its normalized weights are then nearly one-hot.)

Gradients, with the normalized weights w~_in = w_in / sum_j w_jn:

* a model parameter theta gets the IWAE gradient sum_in w~_in d/dtheta log p(x, z_in);
* a guide parameter phi gets the DReG estimator sum_in w~_in^2 (d log w_in / dz_in) (dz_in / dphi), the
  partial derivative in z taken at fixed parameters. It is unbiased for the IWAE gradient, and unlike the plain
  one its signal-to-noise ratio does not fall as k grows (Rainforth et al. 2018).

How: the guide's draws z(phi) are traced once; guide and model are then replayed on detached copies zbar of the
same values, so d log w / d zbar is the partial derivative at fixed parameters for any reparameterized guide:
``pyro.param`` guides, autoguides (their Delta sites included), hierarchical guides q(z2|z1), and networks
called directly (a VAE's encoder), which a detach-the-parameters trick such as
:mod:`vi_toolkit.stl`'s cannot stop. The surrogate

    sum_in sg(w~_in) log p(x, zbar_in) + sum_sites < sg(d/dzbar sum_in w~_in^2 log w_in), z(phi) >

has exactly these gradients (sg: stop-gradient); a parameter that model and guide share gets both terms, which
is again the IWAE gradient's expectation by the DReG identity.
"""

import math

import torch
from pyro import poutine
from pyro.infer import RenyiELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import get_dependent_plate_dims, torch_sum
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan

from .errors import ModelGuideError
from .estimators import logmeanexp


class TraceDReG_IWAE(RenyiELBO):
    """The IWAE-k bound (``RenyiELBO`` at alpha = 0, per data point under subsampling) with DReG gradients for
    the guide's parameters and IWAE gradients for the model's."""

    def __init__(self, num_particles=2, max_plate_nesting=float("inf"), vectorize_particles=False,
                 strict_enumeration_warning=True):
        super().__init__(alpha=0.0, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning)

    def _get_trace(self, model, guide, args, kwargs):
        """Model and guide traces on detached leaves zbar of one draw of the guide, and {site: z(phi)}."""
        raw = poutine.trace(guide).get_trace(*args, **kwargs)  # keeps subsample sites: the replay reuses the batch
        draws, leaves = {}, raw.copy()
        for name, site in raw.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            if not site["fn"].has_rsample:
                raise ModelGuideError(
                    f"objective 'iwae-dreg' needs a reparameterized guide, but guide site {name!r} "
                    f"({type(site['fn']).__name__}) has no rsample; use objective 'renyi' (alpha=0) for the "
                    "plain IWAE gradient with score-function terms"
                )
            draws[name] = site["value"]
            leaves.nodes[name] = dict(site, value=site["value"].detach().requires_grad_())
        model_trace, guide_trace = get_importance_trace(
            "flat", self.max_plate_nesting, model, poutine.replay(guide, trace=leaves), args, kwargs
        )
        return model_trace, guide_trace, draws

    def _log_weights(self, model, guide, args, kwargs):
        """Per particle: log p(x, zbar) and log w = log p - log q, summed over the plates that not every site
        shares (tensors (k, *shared plates)), the shared plates' mini-batch scale c, and the leaves and draws."""
        log_p, log_w, leaves, draws = [], [], [], []
        for model_trace, guide_trace, z in self._get_traces(model, guide, args, kwargs):
            sites = [s for s in model_trace.nodes.values() if s["type"] == "sample"]
            sum_dims = get_dependent_plate_dims(sites)
            p = sum(torch_sum(s["log_prob"], sum_dims) for s in sites)
            q = sum(torch_sum(s["log_prob"], sum_dims) for s in guide_trace.nodes.values() if s["type"] == "sample")
            log_p.append(p)
            log_w.append(p - q)
            leaves += [guide_trace.nodes[name]["value"] for name in z]
            draws += list(z.values())
        shared = set.intersection(*(set(f for f in s["cond_indep_stack"] if f.vectorized) for s in sites))
        scale = math.prod(f.full_size / f.size for f in shared if f.full_size)
        if self.vectorize_particles:  # one trace, particles along dim 0
            return log_p[0], log_w[0], scale, leaves, draws
        return torch.stack(log_p), torch.stack(log_w), scale, leaves, draws

    @staticmethod
    def _bound(log_w, scale):
        """sum_n c logmeanexp_i (log w_in / c) and the normalized weights w~_in (detached)."""
        unscaled = log_w.detach() / scale
        return scale * float(logmeanexp(unscaled, dim=0).sum()), unscaled.softmax(dim=0)

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs):
        """-IWAE-k, one draw of the estimator."""
        _, log_w, scale, _, _ = self._log_weights(model, guide, args, kwargs)
        loss = -self._bound(log_w, scale)[0]
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """-IWAE-k; backpropagates the DReG surrogate (the module docstring) into the parameters' gradients."""
        log_p, log_w, scale, leaves, draws = self._log_weights(model, guide, args, kwargs)
        bound, weights = self._bound(log_w, scale)
        surrogate = (weights * log_p).sum()
        if leaves:
            squared = torch.autograd.grad((weights**2 * log_w).sum(), leaves, retain_graph=True, allow_unused=True)
            surrogate = surrogate + sum((g * z).sum() for g, z in zip(squared, draws) if g is not None)
        if surrogate.requires_grad:
            (-surrogate).backward()
        loss = -bound
        warn_if_nan(loss, "loss")
        return loss
