"""Trace_ELBO with the sticking-the-landing gradient (Roeder, Wu and Duvenaud 2017).

The ELBO value is Pyro's ``Trace_ELBO``: E_q[log p(x,z) - log q(z)], z = g(eps; phi). Its reparameterized
gradient has two parts, d/dz [log p(x,z) - log q(z)] dz/dphi and the score term -d/dphi log q_phi(z), whose
expectation is zero. STL drops the score term by evaluating log q with the guide's parameters detached: the
gradient stays unbiased, and its variance vanishes where q equals the posterior, so fits settle exactly
instead of jittering around the optimum. (BlackJAX's mean-field VI uses it by default.)

Only parameters whose ``pyro.param`` statement gives the value used are detached: ``pyro.param`` guides,
``PyroParam`` attributes (Pyro's ``AutoNormal``, and every autoguide ``fit_vi`` builds by name, whitened or not). A guide that calls
``torch.nn`` modules directly, and the plain ``nn.Parameter`` loc of Pyro's own ``AutoContinuous`` guides (which
``PyroModule`` returns itself), keep the full reparameterized gradient for those: also unbiased, not zero-variance.
Non-reparameterized sites keep their score-function terms unchanged.
"""

from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import JitTrace_ELBO, Trace_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class _DetachParams(Messenger):
    """Parameters read inside this handler are detached: no gradient flows into them."""

    def _pyro_post_param(self, msg):
        msg["value"] = msg["value"].detach()


class _StickingTheLanding:
    def _get_trace(self, model, guide, args, kwargs):
        raw = poutine.trace(guide)  # keeps the subsample sites that the importance trace prunes
        model_trace, guide_trace = super()._get_trace(model, raw, args, kwargs)
        with _DetachParams():  # replayed on the same draws and the same mini-batch
            frozen = poutine.trace(poutine.replay(guide, trace=raw.trace)).get_trace(*args, **kwargs)
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or not site["fn"].has_rsample:
                continue
            log_q = scale_and_mask(frozen.nodes[name]["fn"].log_prob(site["value"]), site["scale"], site["mask"])
            site["score_parts"] = site["score_parts"]._replace(entropy_term=log_q)
        return model_trace, guide_trace


class TraceSTL_ELBO(_StickingTheLanding, Trace_ELBO):
    """``Trace_ELBO`` with the sticking-the-landing gradient."""


class JitTraceSTL_ELBO(_StickingTheLanding, JitTrace_ELBO):
    """``JitTrace_ELBO`` with the sticking-the-landing gradient."""
