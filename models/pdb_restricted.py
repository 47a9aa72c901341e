"""Stan's ``normal`` statements on constrained parameters, as a Pyro distribution: independent normal
densities restricted to a support (``real<lower=0>``, ``ordered``, ``positive_ordered``), which Pyro lacks."""

import pyro.distributions as dist
import torch
from pyro.distributions import constraints


# Stan's constrained type -> (support, event dims); Pyro's positive_ordered_vector says event_dim 0, wrongly
SUPPORTS = {"positive": (constraints.positive, 0), "ordered": (constraints.ordered_vector, 1),
            "positive_ordered": (constraints.positive_ordered_vector, 1)}


class RestrictedNormals(dist.TorchDistribution):
    """sum_k log N(v_k | loc_k, scale_k) on Stan's constrained type ``support`` (``"positive"``: each v_k > 0,
    batch shape of loc; ``"ordered"`` / ``"positive_ordered"``: one vector, event shape of loc), without the
    constant normalizer P(support) under the normals: exactly Stan's target for ``v ~ normal(loc, scale)`` (or
    the ``normal_lpdf`` terms) on a constrained parameter. Draws: independent normals kept where in the
    support (rejection)."""

    arg_constraints = {}

    def __init__(self, loc, scale, support, validate_args=None):
        self.loc = torch.as_tensor(loc, dtype=torch.get_default_dtype())
        self.scale = torch.as_tensor(scale, dtype=torch.get_default_dtype()).expand(self.loc.shape)
        self._support, event = SUPPORTS[support]
        shape = self.loc.shape
        super().__init__(shape[: len(shape) - event], shape[len(shape) - event :], validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return self._support

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        out = torch.empty(shape)
        todo = torch.ones(shape[: len(shape) - len(self.event_shape)], dtype=torch.bool)
        while todo.any():
            draw = self.loc + self.scale * torch.randn(shape)
            ok = todo & self._support.check(draw)
            out[ok] = draw[ok]
            todo &= ~ok
        return out

    def log_prob(self, value):
        lp = dist.Normal(self.loc, self.scale).log_prob(value)
        return lp.sum(-1) if self.event_shape else lp
