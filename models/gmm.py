"""Bayesian Gaussian mixtures with diagonal covariances: the model/guide pairs ``"gmm"`` and ``"gmm-meanfield"``.

Model (both pairs), for x_n in R^D, n = 1..N and components k = 1..K:

    weights ~ Dirichlet(weight_concentration 1_K)
    locs[k, d] ~ Normal(loc_loc, loc_scale)
    scales[k, d] ~ LogNormal(scale_loc, scale_scale)
    x_n ~ sum_k weights_k Normal(locs_k, diag(scales_k^2))

``"gmm"`` sums the assignments out of the likelihood (reparameterized gradients, plain ``Trace_ELBO``, optional
mini-batches); ``"gmm-meanfield"`` keeps z_n ~ Categorical(weights) with a local factor q(z_n) per point, as
CAVI does, and is trained with ``objective="elbo-enum"`` (``q(z_n)`` enumerated exactly).

Initialisation: on a fit's first guide call the means start at scikit-learn's k-means++ seeds refined by Lloyd
steps, seeded by a number drawn from the fit's own random stream, so fits with different seeds start
differently and a fit's seed fixes its start.

The other jobs around these pairs have their own modules: :mod:`~vi_toolkit.models.gmm_restarts` (best of
several fits), :mod:`~vi_toolkit.models.gmm_cavi` (scikit-learn's CAVI as a baseline posterior) and
:mod:`~vi_toolkit.models.gmm_posterior` (label-ordered draws, predictive density and assignments of any
mixture posterior).
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from vi_toolkit.errors import ConfigError, DataError
from vi_toolkit.models import register
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import finite, positive, whole

GUIDE_FAMILIES = ("meanfield", "delta")


def check_points(x, D=None, owner="the pair", K=None):
    """``x`` as a float tensor of shape (N, D) with finite values, or a DataError saying what is wrong.

    ``D``: the number of columns required (None: any), ``owner`` what requires it (for the message); ``K``:
    the number of components to fit, which needs N >= K points."""
    x = torch.as_tensor(x, dtype=torch.get_default_dtype())
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(
            f"x must be a non-empty 2-D array of shape (N, D), got shape {tuple(x.shape)}; "
            "reshape 1-D data with x[:, None]"
        )
    if D is not None and x.shape[1] != D:
        raise DataError(f"x has {x.shape[1]} columns, but {owner} has D={D}")
    if not torch.isfinite(x).all():
        raise DataError(f"x holds {int((~torch.isfinite(x)).sum())} NaN or infinite value(s); remove them")
    if K is not None and x.shape[0] < K:
        raise DataError(f"x has {x.shape[0]} points, fewer than the K={K} components; lower K")
    return x


def kmeans_init(x, K, seed, lloyd_steps=10):
    """scikit-learn's k-means++ seeds (``sklearn.cluster.kmeans_plusplus`` with ``random_state=seed``) refined
    by ``lloyd_steps`` Lloyd steps.

    Returns (centres (K, D), per-component sds (K, D), counts (K,)); a component with fewer than two points
    gets the overall sd of the data.
    """
    from sklearn.cluster import kmeans_plusplus

    n = x.shape[0]
    seeds, _ = kmeans_plusplus(x.detach().cpu().double().numpy(), K, random_state=int(seed))
    centres = torch.as_tensor(seeds, dtype=x.dtype)
    for _ in range(lloyd_steps):
        label = torch.cdist(x, centres).argmin(1)
        centres = torch.stack([x[label == k].mean(0) if (label == k).any() else centres[k] for k in range(K)])
    label = torch.cdist(x, centres).argmin(1)
    overall = x.std(0) if n > 1 else torch.ones(x.shape[1])
    overall = torch.where(overall > 0, overall, torch.ones_like(overall))
    sds = torch.stack([x[label == k].std(0) if (label == k).sum() > 1 else overall for k in range(K)])
    sds = torch.where(sds > 0, sds, overall)
    counts = torch.bincount(label, minlength=K).to(x.dtype)
    return centres, sds, counts


class GaussianMixture(ModelPair):
    """Shared priors, data checks, initialisation and simulated data of the mixture pairs.

    Data ``x`` is an (N, D) float tensor. ``D=None`` takes D from the data.
    """

    objective = "elbo"

    def __init__(
        self,
        K=3,
        D=None,
        weight_concentration=1.0,
        loc_loc=0.0,
        loc_scale=10.0,
        scale_loc=0.0,
        scale_scale=1.0,
        guide_family="meanfield",
    ):
        self.K = whole("K", K)
        self.D = whole("D", D, allow_none=True)
        self.weight_concentration = positive("weight_concentration", weight_concentration)
        self.loc_loc = finite("loc_loc", loc_loc)
        self.loc_scale = positive("loc_scale", loc_scale)
        self.scale_loc = finite("scale_loc", scale_loc)
        self.scale_scale = positive("scale_scale", scale_scale)
        if guide_family not in GUIDE_FAMILIES:
            raise ConfigError(f"guide_family must be one of {GUIDE_FAMILIES}, got {guide_family!r}")
        self.guide_family = guide_family

    # -- data -------------------------------------------------------------------------------------------
    def check_data(self, x, fitting=False):
        """``x`` as a float tensor of shape (N, D) with finite values (and N >= K when ``fitting``), or a
        DataError saying what is wrong."""
        return check_points(x, self.D, "the pair", self.K if fitting else None)

    # -- model pieces -----------------------------------------------------------------------------------
    def _globals(self, D):
        K = self.K
        weights = pyro.sample("weights", dist.Dirichlet(torch.full((K,), self.weight_concentration)))
        locs = pyro.sample("locs", dist.Normal(self.loc_loc, self.loc_scale).expand([K, D]).to_event(2))
        scales = pyro.sample("scales", dist.LogNormal(self.scale_loc, self.scale_scale).expand([K, D]).to_event(2))
        return weights, locs, scales

    def _init(self, x):
        """Initial guide parameters from the data (first guide call of a fit): k-means++ seeded from the fit's
        random stream."""
        x = self.check_data(x, fitting=True)
        centres, sds, counts = kmeans_init(x, self.K, seed=int(torch.randint(2**31 - 1, ())))
        return {
            "weights_concentration": counts + self.weight_concentration,
            "locs_loc": centres,
            "locs_scale": sds / (counts[:, None] + 1).sqrt(),
            "scales_loc": sds.log(),
            "scales_scale": torch.full_like(sds, 0.1),
        }

    def _global_guide(self, x):
        store = pyro.get_param_store()
        init = self._init(x) if "locs_loc" not in store else {}
        positive = constraints.positive
        conc = pyro.param("weights_concentration", lambda: init["weights_concentration"], constraint=positive)
        locs_loc = pyro.param("locs_loc", lambda: init["locs_loc"])
        scales_loc = pyro.param("scales_loc", lambda: init["scales_loc"])
        if self.guide_family == "delta":
            pyro.sample("weights", dist.Delta(conc / conc.sum(), event_dim=1))
            pyro.sample("locs", dist.Delta(locs_loc, event_dim=2))
            pyro.sample("scales", dist.Delta(scales_loc.exp(), event_dim=2))
            return init
        locs_scale = pyro.param("locs_scale", lambda: init["locs_scale"], constraint=positive)
        scales_scale = pyro.param("scales_scale", lambda: init["scales_scale"], constraint=positive)
        pyro.sample("weights", dist.Dirichlet(conc))
        pyro.sample("locs", dist.Normal(locs_loc, locs_scale).to_event(2))
        pyro.sample("scales", dist.LogNormal(scales_loc, scales_scale).to_event(2))
        return init

    # -- example data ---------------------------------------------------------------------------------------
    def simulate(self, seed=0, n=1000, separation=6.0, D=None, K=None, scale=1.0):
        """(x, z, true_locs): N points from K components with sd ``scale`` whose means lie on a circle of radius
        ``separation`` in the first two coordinates (uniform jitter of +-0.5 in the others), weights ~ 1/K."""
        K = self.K if K is None else K
        D = (self.D or 2) if D is None else D
        scale = positive("scale", scale)
        g = torch.Generator().manual_seed(seed)
        angle = 2 * math.pi * torch.arange(K) / K + 0.3
        locs = torch.rand(K, D, generator=g) - 0.5
        locs[:, 0] = separation * angle.cos()
        if D > 1:
            locs[:, 1] = separation * angle.sin()
        z = torch.randint(K, (n,), generator=g)
        x = locs[z] + scale * torch.randn(n, D, generator=g)
        return x, z, locs


@register("gmm")
class CollapsedGMM(GaussianMixture):
    """Gaussian mixture with the assignments summed out: p(x_n | theta) = sum_k w_k N(x_n | locs_k, scales_k^2).

    ``batch_size``: train on random mini-batches of that many points per step (``pyro.plate`` subsampling,
    likelihood scaled by N / batch_size); None uses all points. Use ``batch_size=None`` for NUTS.
    ``guide_family``: ``"meanfield"`` (q = Dirichlet x Normal x LogNormal) or ``"delta"`` (MAP).
    """

    description = "Gaussian mixture, assignments summed out; mean-field guide over weights, means and scales"

    def __init__(
        self,
        K=3,
        D=None,
        weight_concentration=1.0,
        loc_loc=0.0,
        loc_scale=10.0,
        scale_loc=0.0,
        scale_scale=1.0,
        guide_family="meanfield",
        batch_size=None,
    ):
        super().__init__(K, D, weight_concentration, loc_loc, loc_scale, scale_loc, scale_scale, guide_family)
        self.batch_size = whole("batch_size", batch_size, allow_none=True)

    def model(self, x):
        weights, locs, scales = self._globals(x.shape[-1])
        mixture = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales).to_event(1))
        with pyro.plate("data", x.shape[0], subsample_size=self.batch_size) as idx:
            pyro.sample("x", mixture, obs=x if self.batch_size is None else x.index_select(0, idx))

    def guide(self, x):
        self._global_guide(x)


@register("gmm-meanfield")
class MeanFieldGMM(GaussianMixture):
    """Gaussian mixture with explicit assignments z_n ~ Categorical(weights) and the CAVI factorization
    q(weights) q(locs) q(scales) prod_n q(z_n); train with ``objective="elbo-enum"`` (q(z_n) enumerated)."""

    description = "Gaussian mixture with local categorical factors q(z_n) (CAVI's structure), trained with elbo-enum"
    objective = "elbo-enum"

    def model(self, x):
        weights, locs, scales = self._globals(x.shape[-1])
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Categorical(weights))
            loc = Vindex(locs)[..., z, :]
            scale = Vindex(scales)[..., z, :]
            pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)

    def _init(self, x):
        init = super()._init(x)
        sd = init["scales_loc"].exp()
        log_resp = dist.Normal(init["locs_loc"], sd).log_prob(x[:, None, :]).sum(-1) + init[
            "weights_concentration"
        ].log()
        init["z_logits"] = log_resp - log_resp.logsumexp(-1, keepdim=True)
        return init

    def guide(self, x):
        init = self._global_guide(x)
        logits = pyro.param("z_logits", lambda: init["z_logits"])
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
