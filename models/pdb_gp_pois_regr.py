"""posteriordb's ``gp_pois_regr-gp_pois_regr`` in Pyro: a latent Gaussian process with Poisson counts.

Stan original (posteriordb ``gp_pois_regr``)::

    rho ~ gamma(25, 4) (lower=0);  alpha ~ normal(0, 2) (lower=0);  f_tilde ~ normal(0, 1) (N)
    f = cholesky(gp_exp_quad_cov(x, alpha, rho) + 1e-10 I) * f_tilde;  k ~ poisson_log(f)

``gp_exp_quad_cov`` is alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)); ``alpha``'s normal restricted to alpha > 0 is
HalfNormal(2) up to a constant. The covariance and its Cholesky factor are computed in float64 as in Stan (the
1e-10 jitter is below float32's resolution) and ``f`` is cast back to the default dtype and recorded with
``pyro.deterministic``: labels ``rho``, ``alpha``, ``f[0]`` ... ``f[N-1]``. Data: ``posteriordb.load(root /
"gp_pois_regr-gp_pois_regr").data``, the model's arguments by name (``x``, ``k``; the entry ``y`` is unused, as
in Stan).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit import posteriordb
from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.pairs import ModelPair

JITTER = 1e-10  # Stan's diag_matrix(rep_vector(1e-10, N))


def exp_quad_cholesky(x, alpha, rho):
    """Cholesky factor (..., N, N), float64, of K_ij = alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2)) + 1e-10 [i = j]."""
    x, alpha, rho = x.double(), alpha.double()[..., None, None], rho.double()[..., None, None]
    cov = alpha**2 * torch.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * rho**2))
    return torch.linalg.cholesky(cov + JITTER * torch.eye(len(x), dtype=torch.float64))


@register("gp-pois-regr")
class GPPoisRegr(ModelPair):
    """rho ~ Gamma(25, 4), alpha ~ HalfNormal(2), f_tilde ~ N(0, I); f = L(alpha, rho) f_tilde,
    k_i ~ Poisson(exp(f_i))."""

    description = "posteriordb gp_pois_regr: Gaussian process regression of Poisson counts"
    posteriordb = "gp_pois_regr-gp_pois_regr"

    def check_data(self, x, k):
        """(x, k) as 1-D float tensors of equal length, x finite and k non-negative integer counts; or a
        DataError."""
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        k = torch.as_tensor(k, dtype=torch.get_default_dtype())
        if x.dim() != 1 or x.shape != k.shape or len(x) == 0:
            raise DataError(f"x and k must be 1-D arrays of equal length, got {tuple(x.shape)} and {tuple(k.shape)}")
        if not torch.isfinite(x).all() or not (torch.isfinite(k).all() and (k >= 0).all() and (k == k.round()).all()):
            raise DataError("x must be finite and k counts (non-negative integers)")
        return x, k

    def model(self, x, k):
        rho = pyro.sample("rho", dist.Gamma(25.0, 4.0))
        alpha = pyro.sample("alpha", dist.HalfNormal(2.0))
        f_tilde = pyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([len(x)]).to_event(1))
        L = exp_quad_cholesky(x, alpha, rho)
        f = pyro.deterministic("f", (L @ f_tilde.double().unsqueeze(-1)).squeeze(-1).to(f_tilde.dtype), event_dim=1)
        pyro.sample("k", dist.Poisson(f.exp()).to_event(1), obs=k)

    def latents_from_reference(self, draws):
        """Reference draws (site -> array; posteriordb records f) with f_tilde = L(alpha, rho)^-1 f, L from the
        x of posteriordb's data (the data the reference draws are of)."""
        x = torch.as_tensor(posteriordb.load(posteriordb.default_root() / self.posteriordb).data["x"])
        L = exp_quad_cholesky(x, torch.as_tensor(draws["alpha"]), torch.as_tensor(draws["rho"]))
        f = torch.as_tensor(draws["f"], dtype=torch.float64).unsqueeze(-1)
        return {**draws, "f_tilde": torch.linalg.solve_triangular(L, f, upper=False).squeeze(-1).numpy()}

    def guide(self, x, k):
        """Mean-field: LogNormal for rho (started at its prior mode) and alpha (at 1), Normal for each f_tilde_i
        (at 0, sd 0.1)."""
        positive = constraints.positive
        rho_loc = pyro.param("rho_loc", lambda: torch.tensor(6.0).log())
        rho_scale = pyro.param("rho_scale", lambda: torch.tensor(0.1), constraint=positive)
        alpha_loc = pyro.param("alpha_loc", lambda: torch.tensor(0.0))
        alpha_scale = pyro.param("alpha_scale", lambda: torch.tensor(0.1), constraint=positive)
        loc = pyro.param("f_tilde_loc", lambda: torch.zeros(len(x)))
        scale = pyro.param("f_tilde_scale", lambda: torch.full((len(x),), 0.1), constraint=positive)
        pyro.sample("rho", dist.LogNormal(rho_loc, rho_scale))
        pyro.sample("alpha", dist.LogNormal(alpha_loc, alpha_scale))
        pyro.sample("f_tilde", dist.Normal(loc, scale).to_event(1))
