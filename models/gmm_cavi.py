"""The CAVI baseline of the Gaussian mixture pairs: scikit-learn's ``BayesianGaussianMixture`` (coordinate-ascent
VI, diagonal covariances) with priors matched to a pair's, as a posterior of the toolkit (``draws``,
``to_inference_data``, ``log_weights``, ``losses``, ``seconds``, ``info``: see :mod:`vi_toolkit.posterior`).

    from vi_toolkit.models.gmm_cavi import fit_cavi
    cavi = fit_cavi(models.get("gmm", K=3), x, seed=0)
    cavi.draws(1000)["locs"]            # (1000, K, D) from the CAVI posterior
"""

import math
import time

import numpy as np
from scipy import optimize, special

from vi_toolkit.inference_data import from_chains
from vi_toolkit.posterior import DEFAULT_DRAWS
from vi_toolkit.validate import seed as check_seed
from vi_toolkit.validate import whole


class CAVIResult:
    """A fitted ``BayesianGaussianMixture`` as a posterior: draws from its variational posterior,
    weights ~ Dirichlet(alpha_k), precision_kd ~ Gamma(nu_k / 2, rate nu_k c_kd / 2),
    locs_kd ~ Normal(m_kd, (beta_k precision_kd)^-1/2), scales = precision^-1/2.

    ``log_weights`` is None: the toolkit has no density of this approximation on the pair's sites (and CAVI
    maximizes its own ELBO, ``info["lower_bound"]``). ``losses`` is None: scikit-learn keeps no trace."""

    losses = None

    def __init__(self, estimator, seconds, info=None):
        self.estimator = estimator
        self.seconds = float(seconds)
        self.info = {
            "method": "cavi",
            "n_iter": int(estimator.n_iter_),
            "converged": bool(estimator.converged_),
            "lower_bound": float(estimator.lower_bound_),
            **(info or {}),
        }

    def __repr__(self):
        return (
            f"CAVIResult(K={len(self.estimator.weight_concentration_)}, n_iter={self.info['n_iter']}, "
            f"converged={self.info['converged']}, seconds={self.seconds:.3f})"
        )

    def draws(self, n=None, seed=0):
        """``n`` draws (default 4000) from the CAVI posterior with ``seed``: site -> numpy array, weights (n, K),
        locs (n, K, D), scales (n, K, D)."""
        n = DEFAULT_DRAWS if n is None else whole("n", n)
        est = self.estimator
        rng = np.random.default_rng(check_seed(seed))
        nu = est.degrees_of_freedom_[:, None]
        precision = rng.gamma(nu / 2, 2 / (nu * est.covariances_), size=(n,) + est.covariances_.shape)
        locs = est.means_ + rng.standard_normal(precision.shape) / np.sqrt(est.mean_precision_[:, None] * precision)
        weights = rng.dirichlet(est.weight_concentration_, size=n)
        return {"weights": weights, "locs": locs, "scales": precision**-0.5}

    def to_inference_data(self, n=None, seed=0, chains=4):
        """The ``n`` draws of :meth:`draws` (default 4000) as ArviZ InferenceData, laid out as the largest number
        of equal chains up to ``chains`` that divides ``n`` (independent draws are valid chains)."""
        n = DEFAULT_DRAWS if n is None else whole("n", n)
        chains = math.gcd(n, whole("chains", chains))
        draws = self.draws(n, seed)
        shaped = {name: value.reshape((chains, n // chains) + value.shape[1:]) for name, value in draws.items()}
        return from_chains(shaped, attrs={"method": "cavi"})

    def log_weights(self, n=1000, seed=0):
        """None: no importance weights (see the class docstring)."""
        return None


def fit_cavi(pair, x, seed=0, restarts=3, max_iter=1000, tol=1e-6):
    """CAVI on the data ``x`` of a mixture ``pair`` (``models.get("gmm", ...)``): scikit-learn
    ``BayesianGaussianMixture`` (diagonal covariances, Dirichlet weights, k-means++ starts from ``seed``, best
    of ``restarts``) with priors matched to the pair's as its API allows. Returns a :class:`CAVIResult`.

    sklearn's prior is Normal-Gamma: locs | precision ~ N(m0, (beta0 precision)^-1), precision ~
    Gamma(nu0 / 2, rate b0 / 2). We take m0 = loc_loc, beta0 = exp(2 scale_loc) / loc_scale^2 (prior sd
    loc_scale at the median scale), nu0 from trigamma(nu0/2) = Var[log precision] = (2 scale_scale)^2
    (raised to sklearn's minimum D - 1 + 0.01), and b0 so that E[log precision] = -2 scale_loc.
    """
    from sklearn.mixture import BayesianGaussianMixture

    x = pair.check_data(x, fitting=True)
    restarts = whole("restarts", restarts)
    D = x.shape[1]
    a = optimize.brentq(lambda a: special.polygamma(1, a) - (2 * pair.scale_scale) ** 2, 1e-6, 1e6)
    nu0 = max(2 * a, D - 1 + 0.01)
    b0 = 2 * math.exp(special.digamma(nu0 / 2) + 2 * pair.scale_loc)
    est = BayesianGaussianMixture(
        n_components=pair.K,
        covariance_type="diag",
        weight_concentration_prior_type="dirichlet_distribution",
        weight_concentration_prior=pair.weight_concentration,
        mean_prior=np.full(D, pair.loc_loc),
        mean_precision_prior=math.exp(2 * pair.scale_loc) / pair.loc_scale**2,
        degrees_of_freedom_prior=nu0,
        covariance_prior=np.full(D, b0),
        init_params="k-means++",
        n_init=restarts,
        max_iter=max_iter,
        tol=tol,
        random_state=check_seed(seed),
    )
    start = time.perf_counter()
    est.fit(x.numpy())
    return CAVIResult(est, time.perf_counter() - start, {"restarts": restarts, "seed": seed})
