"""posteriordb's ``eight_schools_noncentered`` in Pyro: the eight schools hierarchical model, non-centered.

Stan original (posteriordb ``eight_schools_noncentered``)::

    theta_trans ~ normal(0, 1) (J);  mu ~ normal(0, 5);  tau ~ cauchy(0, 5) (lower=0)
    theta = theta_trans * tau + mu;  y_j ~ normal(theta_j, sigma_j)

``theta`` is recorded with ``pyro.deterministic``, so VI and NUTS draws both carry posteriordb's labels
``theta[0]`` ... ``theta[7]`` (0-based). Data:
``posteriordb.load(root / "eight_schools-eight_schools_noncentered").data``, the model's arguments by name
(``y``, ``sigma``).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.models import register
from vi_toolkit.errors import DataError
from vi_toolkit.pairs import ModelPair

@register("eight-schools")
class EightSchools(ModelPair):
    """theta_trans_j ~ N(0, 1), mu ~ N(0, 5), tau ~ HalfCauchy(5); y_j ~ N(mu + tau theta_trans_j, sigma_j)."""

    description = "posteriordb eight_schools_noncentered: hierarchical effects of eight schools, non-centered"
    posteriordb = "eight_schools-eight_schools_noncentered"

    def check_data(self, y, sigma):
        """(y, sigma) as finite 1-D float tensors of equal length with sigma > 0, or a DataError."""
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        sigma = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
        if y.dim() != 1 or y.shape != sigma.shape or len(y) == 0:
            raise DataError(
                f"y and sigma must be 1-D arrays of equal length, got {tuple(y.shape)} and {tuple(sigma.shape)}"
            )
        if not (torch.isfinite(y).all() and torch.isfinite(sigma).all() and (sigma > 0).all()):
            raise DataError("y must be finite and sigma finite and positive; fix or remove those schools")
        return y, sigma

    def model(self, y, sigma):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", y.shape[-1]):
            theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = pyro.deterministic("theta", mu + tau * theta_trans)
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    def latents_from_reference(self, draws):
        """Reference draws (site -> array; posteriordb records theta, not theta_trans) with theta_trans added:
        theta_trans = (theta - mu) / tau."""
        return {**draws, "theta_trans": (draws["theta"] - draws["mu"][:, None]) / draws["tau"][:, None]}

    def guide(self, y, sigma):
        """Mean-field: Normal for mu and each theta_trans_j, LogNormal for tau."""
        positive = constraints.positive
        mu_loc = pyro.param("mu_loc", lambda: torch.tensor(0.0))
        mu_scale = pyro.param("mu_scale", lambda: torch.tensor(1.0), constraint=positive)
        tau_loc = pyro.param("tau_loc", lambda: torch.tensor(0.0))
        tau_scale = pyro.param("tau_scale", lambda: torch.tensor(0.5), constraint=positive)
        loc = pyro.param("theta_trans_loc", lambda: torch.zeros(y.shape[-1]))
        scale = pyro.param("theta_trans_scale", lambda: torch.ones(y.shape[-1]), constraint=positive)
        pyro.sample("mu", dist.Normal(mu_loc, mu_scale))
        pyro.sample("tau", dist.LogNormal(tau_loc, tau_scale))
        with pyro.plate("schools", y.shape[-1]):
            pyro.sample("theta_trans", dist.Normal(loc, scale))
