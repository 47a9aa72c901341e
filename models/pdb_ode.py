"""A differentiable fixed-step Runge-Kutta (RK4) ODE solver in torch, batched over leading dimensions: the
integrator of the posteriordb ODE models (``lotka_volterra``, ``one_comp_mm_elim_abs``).

Stan integrates with adaptive solvers (``integrate_ode_rk45``, ``integrate_ode_bdf``); a fixed grid keeps the
solution a smooth function of the parameters (NUTS and VI need its gradient) and runs every particle of a batch
in the same steps. Each model chooses a grid fine enough that the error is negligible against its noise
(tested against ``scipy.integrate.solve_ivp`` at tight tolerance in ``tests/test_pdb_models.py``).
"""

import torch


def time_grid(t0, times, max_step, first_steps=()):
    """The integration grid from ``t0`` through every output time (increasing), steps at most ``max_step``
    (each interval split evenly), with extra points ``t0 + s`` for ``s`` in ``first_steps`` (small steps where
    the solution changes fastest); returns (grid (G,) float64, index (len(times),) of the output times in it)."""
    times = torch.as_tensor(times, dtype=torch.float64)
    knots = torch.cat([torch.tensor([float(t0)], dtype=torch.float64), times])
    points = [knots[:1]]
    for a, b in zip(knots[:-1].tolist(), knots[1:].tolist()):
        inner = sorted(a + s for s in first_steps if a + s < b) if a == float(t0) else []
        edges = [a] + inner + [b]
        for lo, hi in zip(edges[:-1], edges[1:]):
            n = max(1, int(torch.ceil(torch.tensor((hi - lo) / max_step)).item()))
            points.append(torch.linspace(lo, hi, n + 1, dtype=torch.float64)[1:])
    grid = torch.cat(points)
    index = torch.searchsorted(grid, times)
    return grid, index


def rk4(f, y0, grid, index):
    """Classical RK4 for dy/dt = f(t, y) from y(grid[0]) = y0 over ``grid`` (G,), the states at
    ``grid[index]``: (..., len(index), D) for y0 (..., D). ``f(t, y)`` takes a float t and a batch y."""
    keep = set(index.tolist())
    y, out = y0, []
    steps = grid.tolist()
    for i, (t, t_next) in enumerate(zip(steps[:-1], steps[1:]), start=1):
        h = t_next - t
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t_next, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i in keep:
            out.append(y)
    return torch.stack(out, -2)
