"""posteriordb's ``hudson_lynx_hare-lotka_volterra`` in Pyro: Lotka-Volterra predator-prey dynamics of the
Hudson's Bay lynx and hare pelts.

Stan original (posteriordb ``lotka_volterra``)::

    du/dt = (alpha - beta v) u,  dv/dt = (-gamma + delta u) v,  theta = {alpha, beta, gamma, delta} (lower=0)
    theta[{1, 3}] ~ normal(1, 0.5);  theta[{2, 4}] ~ normal(0.05, 0.05);  sigma ~ lognormal(-1, 1) (2)
    z_init ~ lognormal(log(10), 1) (2);  z = integrate_ode_rk45(dz_dt, z_init, 0, ts, theta)
    y_init[k] ~ lognormal(log(z_init[k]), sigma[k]);  y[:, k] ~ lognormal(log(z[:, k]), sigma[k])

``theta``'s normals on theta > 0 are :class:`models.pdb_restricted.RestrictedNormals` (Stan's target: no
truncation normalizer). The ODE is integrated by fixed-step RK4 (:mod:`models.pdb_ode`) with steps of at most
``MAX_STEP``: its largest relative error over the reference posterior is below 1e-4, against measurement noise
sigma ~ 0.25 on the log scale (``tests/test_pdb_models.py``). ``z`` is recorded with ``pyro.deterministic``.
Labels ``theta[0]`` ... ``theta[3]``, ``z_init[0]``, ``z_init[1]``, ``sigma[0]``, ``sigma[1]``. Data:
``posteriordb.load(root / "hudson_lynx_hare-lotka_volterra").data``, the model's arguments by name (``N``,
``ts``, ``y_init``, ``y``). Broadcasts over particles.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.models.pdb_ode import rk4, time_grid
from vi_toolkit.models.pdb_restricted import RestrictedNormals
from vi_toolkit.pairs import ModelPair

MAX_STEP = 0.25  # RK4 step bound (time units of ts, years)


def lotka_volterra(theta, z_init, ts):
    """Populations z (..., N, 2) at times ``ts`` of du/dt = (alpha - beta v) u, dv/dt = (-gamma + delta u) v
    from z(0) = z_init (..., 2), theta (..., 4) = (alpha, beta, gamma, delta); RK4, steps <= MAX_STEP."""
    alpha, beta, gamma, delta = theta.unbind(-1)
    growth, cross = torch.stack([alpha, -gamma], -1), torch.stack([-beta, delta], -1)

    def dz_dt(t, z):  # (u, v) * ((alpha, -gamma) + (-beta, delta) * (v, u)): four ops a stage
        return z * (growth + cross * z.flip(-1))

    return rk4(dz_dt, z_init, *time_grid(0.0, ts, MAX_STEP))


@register("lotka-volterra")
class LotkaVolterra(ModelPair):
    """theta ~ normals on theta > 0, z_init ~ LogNormal(log 10, 1), sigma ~ LogNormal(-1, 1);
    y_init_k ~ LogNormal(log z_init_k, sigma_k), y_tk ~ LogNormal(log z_k(t), sigma_k), z the LV solution."""

    description = "posteriordb lotka_volterra: predator-prey ODE of the Hudson's Bay lynx and hare"
    posteriordb = "hudson_lynx_hare-lotka_volterra"

    def check_data(self, N, ts, y_init, y):
        """(N, ts, y_init, y): ts N increasing times > 0, y_init (2,) and y (N, 2) positive populations; or a
        DataError."""
        ts, y_init, y = (torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in (ts, y_init, y))
        if int(N) != N or ts.shape != (N,) or y_init.shape != (2,) or y.shape != (N, 2) or N < 1:
            raise DataError(f"need ts (N,), y_init (2,) and y (N, 2) with N={N!r}, got {tuple(ts.shape)}, "
                            f"{tuple(y_init.shape)} and {tuple(y.shape)}")
        if not (torch.isfinite(ts).all() and (ts > 0).all() and (ts.diff() > 0).all()):
            raise DataError("ts must be finite, positive and strictly increasing (the ODE starts at t = 0)")
        if not all(torch.isfinite(v).all() and (v > 0).all() for v in (y_init, y)):
            raise DataError("y_init and y must be positive finite populations (their likelihood is lognormal)")
        return int(N), ts, y_init, y

    def model(self, N, ts, y_init, y):
        theta = pyro.sample("theta", RestrictedNormals([1.0, 0.05, 1.0, 0.05], [0.5, 0.05, 0.5, 0.05],
                                                       "positive").to_event(1))
        z_init = pyro.sample("z_init", dist.LogNormal(math.log(10.0), 1.0).expand([2]).to_event(1))
        sigma = pyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]).to_event(1))
        z = pyro.deterministic("z", lotka_volterra(theta, z_init, ts), event_dim=2)
        pyro.sample("y_init", dist.LogNormal(z_init.log(), sigma).to_event(1), obs=y_init)
        pyro.sample("y", dist.LogNormal(z.log(), sigma.unsqueeze(-2)).to_event(2), obs=y)

    def guide(self, N, ts, y_init, y):
        """Mean-field LogNormal for every coordinate, started at theta = (0.5, 0.025, 0.8, 0.025) (a cycle of
        about the data's period), z_init at y_init and sigma at 0.25."""
        positive = constraints.positive
        starts = {"theta": torch.tensor([0.5, 0.025, 0.8, 0.025]).log(), "z_init": y_init.log(),
                  "sigma": torch.full((2,), 0.25).log()}
        for name, start in starts.items():
            loc = pyro.param(f"{name}_loc", lambda: start.clone())
            scale = pyro.param(f"{name}_scale", lambda: torch.full(start.shape, 0.05), constraint=positive)
            pyro.sample(name, dist.LogNormal(loc, scale).to_event(1))
