"""Bayesian Gaussian mixtures with diagonal covariances: a collapsed pair and a full mean-field pair.

Model (both pairs), for x_n in R^D, n = 1..N and components k = 1..K:

    weights ~ Dirichlet(weight_concentration 1_K)
    locs[k, d] ~ Normal(loc_loc, loc_scale)
    scales[k, d] ~ LogNormal(scale_loc, scale_scale)
    x_n ~ sum_k weights_k Normal(locs_k, diag(scales_k^2))

``"gmm"`` sums the assignments out of the likelihood (reparameterized gradients, plain ``Trace_ELBO``, optional
mini-batches); ``"gmm-meanfield"`` keeps z_n ~ Categorical(weights) with a local factor q(z_n) per point, as
CAVI does, and is trained with ``objective="elbo-enum"`` (``q(z_n)`` enumerated exactly).

Initialisation: on a fit's first guide call the means start at k-means++ seeds refined by Lloyd steps, drawn
with the fit's seed, so restarts with different seeds (:meth:`GaussianMixture.fit`) start differently.

**Label order.** Mixture labels are arbitrary (the posterior is symmetric under permuting them), so every
function here that returns draws or per-component quantities (:meth:`GaussianMixture.posterior_draws`,
:meth:`~GaussianMixture.responsibilities`, :meth:`~GaussianMixture.mcmc_summary`) orders the components of
each draw by the first coordinate of their mean, for every method alike (VI, NUTS, CAVI).
"""

import math
import time

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from scipy import optimize, special
from torch.distributions import constraints

import vi_toolkit as vt
from models import register
from vi_toolkit.errors import ConfigError, DataError
from vi_toolkit.inference_data import from_chains
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import finite, positive, whole

SITES = ("weights", "locs", "scales")
GUIDE_FAMILIES = ("meanfield", "delta")


def kmeans_init(x, K, lloyd_steps=10):
    """k-means++ seeds (the next centre drawn with probability proportional to the squared distance to the
    nearest chosen one) refined by Lloyd steps, using torch's global RNG.

    Returns (centres (K, D), per-component sds (K, D), counts (K,)); a component with fewer than two points
    gets the overall sd of the data.
    """
    n = x.shape[0]
    centres = x[torch.randint(n, (1,))]
    for _ in range(1, K):
        d2 = torch.cdist(x, centres).min(1).values ** 2
        probs = d2 if d2.sum() > 0 else torch.ones(n)
        centres = torch.cat([centres, x[torch.multinomial(probs, 1)]])
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


def order_labels(draws):
    """Draws of weights (..., K), locs (..., K, D) and scales (..., K, D) with the components of each draw
    sorted by the first coordinate of their mean (any leading dims: draws, or chains and draws)."""
    order = np.argsort(draws["locs"][..., 0], axis=-1)
    return {
        "weights": np.take_along_axis(draws["weights"], order, -1),
        "locs": np.take_along_axis(draws["locs"], order[..., None], -2),
        "scales": np.take_along_axis(draws["scales"], order[..., None], -2),
    }


def component_log_density(draws, x):
    """log weights_sk + log N(x_n | locs_sk, diag scales_sk^2) as a tensor of shape (S, N, K)."""
    w, m, s = (torch.as_tensor(np.asarray(draws[k]), dtype=x.dtype) for k in SITES)
    log_normal = dist.Normal(m[:, None], s[:, None]).log_prob(x[None, :, None, :]).sum(-1)  # (S, N, K)
    return w.log()[:, None, :] + log_normal


class CAVIResult:
    """scikit-learn's ``BayesianGaussianMixture`` (CAVI, diagonal covariances) with draws from its
    variational posterior: weights ~ Dirichlet(alpha_k), precision_kd ~ Gamma(nu_k / 2, rate nu_k c_kd / 2),
    locs_kd ~ Normal(m_kd, (beta_k precision_kd)^-1/2), scales = precision^-1/2."""

    kind = "cavi"

    def __init__(self, estimator, seconds):
        self.estimator = estimator
        self.seconds = float(seconds)
        self.info = {"n_iter": int(estimator.n_iter_), "converged": bool(estimator.converged_)}

    def draws(self, n=1000, seed=0):
        """site -> numpy array: weights (n, K), locs (n, K, D), scales (n, K, D)."""
        est = self.estimator
        rng = np.random.default_rng(seed)
        nu = est.degrees_of_freedom_[:, None]
        precision = rng.gamma(nu / 2, 2 / (nu * est.covariances_), size=(n,) + est.covariances_.shape)
        locs = est.means_ + rng.standard_normal(precision.shape) / np.sqrt(est.mean_precision_[:, None] * precision)
        weights = rng.dirichlet(est.weight_concentration_, size=n)
        return {"weights": weights, "locs": locs, "scales": precision**-0.5}


class GaussianMixture(ModelPair):
    """Shared priors, data checks, initialisation, restarts and posterior summaries of the mixture pairs.

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
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(
                f"x must be a non-empty 2-D array of shape (N, D), got shape {tuple(x.shape)}; "
                "reshape 1-D data with x[:, None]"
            )
        if self.D is not None and x.shape[1] != self.D:
            raise DataError(f"x has {x.shape[1]} columns but the pair was built with D={self.D}")
        if not torch.isfinite(x).all():
            raise DataError(f"x holds {int((~torch.isfinite(x)).sum())} NaN or infinite value(s); remove them")
        if fitting and x.shape[0] < self.K:
            raise DataError(f"x has {x.shape[0]} points, fewer than the K={self.K} components; lower K")
        return x

    # -- model pieces -----------------------------------------------------------------------------------
    def _globals(self, D):
        K = self.K
        weights = pyro.sample("weights", dist.Dirichlet(torch.full((K,), self.weight_concentration)))
        locs = pyro.sample("locs", dist.Normal(self.loc_loc, self.loc_scale).expand([K, D]).to_event(2))
        scales = pyro.sample("scales", dist.LogNormal(self.scale_loc, self.scale_scale).expand([K, D]).to_event(2))
        return weights, locs, scales

    def _init(self, x):
        """Initial guide parameters from the data (first guide call of a fit; uses the fit's seed)."""
        x = self.check_data(x, fitting=True)
        centres, sds, counts = kmeans_init(x, self.K)
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

    # -- fitting ----------------------------------------------------------------------------------------
    def fit(self, x, restarts=3, seed=0, **fit_kwargs):
        """``restarts`` fits by ``vt.fit_vi`` (uncompiled ELBO unless ``jit=True``) from seeds seed, seed+1, ...
        (each a different k-means++ start); returns the one with the highest final ELBO (minus the mean loss
        of its last 50 steps).
        ``result.info["restart_elbos"]`` and ``["restart_seconds"]`` list the final ELBO and time of every
        restart (``result.seconds`` is the chosen fit's own time)."""
        x = self.check_data(x, fitting=True)
        restarts = whole("restarts", restarts)
        fit_kwargs.setdefault("objective", self.objective)
        # measured (benchmarks/gmm.py): compiling the ELBO takes ~2.5 s, more than it saves in a ~200-step fit
        fit_kwargs.setdefault("jit", False)
        results = [vt.fit_vi(self.model, self.guide, x, seed=seed + r, **fit_kwargs) for r in range(restarts)]
        elbos = [final_elbo(r) for r in results]
        best = results[int(np.argmax(elbos))]
        best.info["restart_elbos"] = elbos
        best.info["restart_seconds"] = [r.seconds for r in results]
        return best

    def fit_cavi(self, x, seed=0, restarts=3, max_iter=1000, tol=1e-6):
        """CAVI baseline: scikit-learn ``BayesianGaussianMixture`` (diagonal covariances, Dirichlet weights,
        k-means++ starts, best of ``restarts``) with priors matched to this pair's as its API allows.

        sklearn's prior is Normal-Gamma: locs | precision ~ N(m0, (beta0 precision)^-1), precision ~
        Gamma(nu0 / 2, rate b0 / 2). We take m0 = loc_loc, beta0 = exp(2 scale_loc) / loc_scale^2 (prior sd
        loc_scale at the median scale), nu0 from trigamma(nu0/2) = Var[log precision] = (2 scale_scale)^2
        (raised to sklearn's minimum D - 1 + 0.01), and b0 so that E[log precision] = -2 scale_loc.
        """
        from sklearn.mixture import BayesianGaussianMixture

        x = self.check_data(x, fitting=True)
        D = x.shape[1]
        a = optimize.brentq(lambda a: special.polygamma(1, a) - (2 * self.scale_scale) ** 2, 1e-6, 1e6)
        nu0 = max(2 * a, D - 1 + 0.01)
        b0 = 2 * math.exp(special.digamma(nu0 / 2) + 2 * self.scale_loc)
        est = BayesianGaussianMixture(
            n_components=self.K,
            covariance_type="diag",
            weight_concentration_prior_type="dirichlet_distribution",
            weight_concentration_prior=self.weight_concentration,
            mean_prior=np.full(D, self.loc_loc),
            mean_precision_prior=math.exp(2 * self.scale_loc) / self.loc_scale**2,
            degrees_of_freedom_prior=nu0,
            covariance_prior=np.full(D, b0),
            init_params="k-means++",
            n_init=restarts,
            max_iter=max_iter,
            tol=tol,
            random_state=seed,
        )
        start = time.perf_counter()
        est.fit(x.numpy())
        return CAVIResult(est, time.perf_counter() - start)

    # -- posterior summaries ------------------------------------------------------------------------------
    def posterior_draws(self, result, n=1000, seed=0):
        """weights (S, K), locs (S, K, D), scales (S, K, D) from a VI, MCMC or CAVI result (or a dict of draws),
        components of each draw ordered by the first coordinate of their mean. VI and CAVI give ``n`` draws
        (from ``seed``); MCMC gives all its draws, chains stacked."""
        if isinstance(result, dict):
            draws = result
        elif result.kind == "mcmc":
            draws = result.draws()
        else:
            draws = result.draws(n, seed)
        return order_labels({k: np.asarray(draws[k], dtype=float) for k in SITES})

    def log_predictive_density(self, result, x_new, n=1000, seed=0):
        """Per point: log p(x_new | data) ~= log (1/S) sum_s sum_k w_sk N(x_new | locs_sk, scales_sk^2);
        numpy array (N_new,), averaged over the posterior draws of ``result`` (see :meth:`posterior_draws`)."""
        x_new = self.check_data(x_new)
        lp = component_log_density(self.posterior_draws(result, n, seed), x_new).logsumexp(-1)  # (S, N)
        return (lp.logsumexp(0) - math.log(lp.shape[0])).numpy()

    def responsibilities(self, result, x, n=1000, seed=0):
        """p(z_n = k | x, data) ~= (1/S) sum_s w_sk N(x_n | ...) / sum_j w_sj N(x_n | ...): array (N, K), with
        components in the label order of :meth:`posterior_draws`."""
        x = self.check_data(x)
        return component_log_density(self.posterior_draws(result, n, seed), x).softmax(-1).mean(0).numpy()

    def assignments(self, result, x, n=1000, seed=0):
        """Hard assignments: argmax_k of :meth:`responsibilities`, an int array (N,)."""
        return self.responsibilities(result, x, n, seed).argmax(1)

    def mcmc_summary(self, result):
        """ArviZ summary (mean, sd, r_hat, ess_bulk, ess_tail) of an MCMC result after ordering the labels of
        every draw, so that label switching between or within chains does not inflate r_hat."""
        chains = order_labels({k: result.chains[k] for k in SITES})
        table = az.summary(from_chains(chains), kind="all")
        return table[["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]

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


def final_elbo(result, window=50):
    """The ELBO at the end of a fit: minus the mean loss of its last ``window`` steps."""
    return -float(np.mean(result.losses[-window:]))


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
