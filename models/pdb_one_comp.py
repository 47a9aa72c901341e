"""posteriordb's ``one_comp_mm_elim_abs`` in Pyro: a one-compartment pharmacokinetic model with first-order
absorption and Michaelis-Menten elimination.

Stan original (posteriordb ``one_comp_mm_elim_abs``)::

    dC/dt = exp(-k_a t) D k_a / V [t > 0] - (V_m / V) C / (K_m + C),  C(t0) = C0 = 0 (transformed data)
    k_a, K_m, V_m, sigma ~ cauchy(0, 1) (lower=0);  C = integrate_ode_bdf(..., C0, t0, times, ...)
    C_hat[n] ~ lognormal(log(C[n]), sigma)

Cauchy(0, 1) on a positive parameter is HalfCauchy(1) up to a constant. Stan's dose term is 0 at the single
point t = 0 (``if (t > 0)``), which changes no solution of the ODE; the integrand here is continuous there
(exp(-k_a t) D k_a / V for t >= 0), so that a fixed-step solver's first stage sees the dose. The ODE is
integrated by fixed-step RK4 (:mod:`models.pdb_ode`) with steps of at most ``MAX_STEP`` and finer steps in
the first ``FIRST_STEPS`` (the absorption transient, and Michaelis-Menten's switch where C ~ K_m, which the
posterior lets be as small as 1e-4): its largest relative error over the reference posterior is small against
sigma ~ 0.13 (``tests/test_pdb_models.py``). ``C`` (N_t, 1) is recorded with ``pyro.deterministic``. Labels
``k_a``, ``K_m``, ``V_m``, ``sigma``. Data: ``posteriordb.load(root /
"one_comp_mm_elim_abs-one_comp_mm_elim_abs").data``, the model's arguments by name (``t0``, ``D``, ``V``,
``times``, ``C_hat``). Broadcasts over particles.
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.models.pdb_ode import rk4, time_grid
from vi_toolkit.pairs import ModelPair

MAX_STEP = 0.25  # RK4 step bound (days)
FIRST_STEPS = (0.001, 0.003, 0.01, 0.03)  # extra grid points after t0 (days): small steps where C ~ K_m


def concentration(k_a, K_m, V_m, t0, D, V, times):
    """C (..., N_t, 1) at ``times`` of dC/dt = exp(-k_a t) D k_a / V - (V_m / V) C / (K_m + C), C(t0) = 0;
    parameters (...), RK4."""
    k_a, K_m, V_m = (p.unsqueeze(-1) for p in (k_a, K_m, V_m))
    dose_rate, elimination_rate = D * k_a / V, V_m / V

    def dC_dt(t, C):
        return dose_rate * torch.exp(k_a * -t) - elimination_rate * C / (K_m + C)

    C0 = torch.zeros(torch.broadcast_shapes(k_a.shape, K_m.shape, V_m.shape))
    return rk4(dC_dt, C0, *time_grid(float(t0), times, MAX_STEP, FIRST_STEPS))


@register("one-comp")
class OneComp(ModelPair):
    """k_a, K_m, V_m, sigma ~ HalfCauchy(1); C_hat_n ~ LogNormal(log C(t_n), sigma), C the solution of
    dC/dt = exp(-k_a t) D k_a / V - (V_m / V) C / (K_m + C), C(t0) = 0."""

    description = "posteriordb one_comp_mm_elim_abs: pharmacokinetic ODE, Michaelis-Menten elimination"
    posteriordb = "one_comp_mm_elim_abs-one_comp_mm_elim_abs"

    def check_data(self, t0, D, V, times, C_hat):
        """(t0, D, V, times, C_hat): t0 a number, D and V positive, times increasing after t0, C_hat positive
        concentrations at those times; or a DataError."""
        times, C_hat = (torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in (times, C_hat))
        t0, D, V = float(t0), float(D), float(V)
        if times.dim() != 1 or times.shape != C_hat.shape or len(times) == 0:
            raise DataError(f"times and C_hat must be 1-D of one length, got {tuple(times.shape)}, {tuple(C_hat.shape)}")
        if not (torch.isfinite(times).all() and (times > t0).all() and (times.diff() > 0).all()):
            raise DataError(f"times must be finite, strictly increasing and after t0={t0}")
        if not (D > 0 and V > 0 and torch.isfinite(C_hat).all() and (C_hat > 0).all()):
            raise DataError("D, V and every C_hat must be positive (the likelihood is lognormal)")
        return t0, D, V, times, C_hat

    def model(self, t0, D, V, times, C_hat):
        k_a = pyro.sample("k_a", dist.HalfCauchy(1.0))
        K_m = pyro.sample("K_m", dist.HalfCauchy(1.0))
        V_m = pyro.sample("V_m", dist.HalfCauchy(1.0))
        sigma = pyro.sample("sigma", dist.HalfCauchy(1.0))
        C = pyro.deterministic("C", concentration(k_a, K_m, V_m, t0, D, V, times), event_dim=2)
        pyro.sample("C_hat", dist.LogNormal(C[..., 0].log(), sigma.unsqueeze(-1)).to_event(1), obs=C_hat)

    def guide(self, t0, D, V, times, C_hat):
        """Mean-field LogNormal for each parameter, started at k_a = K_m = V_m = 1 and sigma = 0.2."""
        positive = constraints.positive
        for name, start in (("k_a", 1.0), ("K_m", 1.0), ("V_m", 1.0), ("sigma", 0.2)):
            loc = pyro.param(f"{name}_loc", lambda: torch.tensor(start).log())
            scale = pyro.param(f"{name}_scale", lambda: torch.tensor(0.1), constraint=positive)
            pyro.sample(name, dist.LogNormal(loc, scale))
