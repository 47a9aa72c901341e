"""Adam with a full second-moment matrix: the default optimizer of fits with few parameters.

Diagonal Adam scales each coordinate by its own gradient noise. When the noise of two parameters is strongly
correlated (a Gamma guide's concentration and rate, whose ratio the data pin down: correlation -0.99 on the
tests' Poisson model), each coordinate's gradient is mostly noise while the direction that improves the fit
(both up together) has little: diagonal Adam then crawls along that ridge (a Gamma(2, 1) start had reached only
Gamma(34, 17) of the exact Gamma(66, 33) after 5000 steps). Whitening the gradient by the full matrix of its
second moments (GGT: Agarwal et al. 2019, full-matrix AdaGrad with Adam's moving averages) makes the update
invariant to linear reparameterizations of the parameters and walks the ridge at Adam's pace:

    m_t = b1 m + (1 - b1) g,   V_t = b2 V + (1 - b2) g g^T,   theta -= lr (V^_t^{1/2} + eps I)^{-1} m^_t

with ``^`` Adam's bias corrections, over every parameter as one vector of P numbers. The root of V comes from
its eigendecomposition at every step (a root kept for a few steps can miss the directions of new gradients and
divide by zero there), O(P^3): 0.6 ms at P = 32 here, so :data:`MAX_PARAMETERS` bounds P.
"""

import torch

MAX_PARAMETERS = 32  # above this many numbers the fit uses the diagonal (fused) Adam


class FullMatrixAdam(torch.optim.Optimizer):
    """``FullMatrixAdam(params, lr, betas=(0.9, 0.99), eps=1e-8)``: see the module docstring. Its state (m, V and
    the step count) is held by the first parameter, so ``state_dict`` round-trips."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.99), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        params = self._params()
        group = self.param_groups[0]
        (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        g = g.double()
        state = self.state[params[0]]
        size = len(g)
        if not state or state["m"].numel() != size:  # new, or parameters added since: grow with zeros
            old = state.get("m")
            m, V = torch.zeros(size, dtype=g.dtype), torch.zeros(size, size, dtype=g.dtype)
            if old is not None:
                k = old.numel()
                m[:k], V[:k, :k] = old, state["V"]
            state.update(step=int(state.get("step", 0)), m=m, V=V)
        state["step"] += 1
        t = state["step"]
        state["m"].mul_(b1).add_(g, alpha=1 - b1)
        state["V"].mul_(b2).add_(g[:, None] * g[None, :], alpha=1 - b2)
        values, vectors = torch.linalg.eigh(state["V"] / (1 - b2**t))
        roots = values.clamp(min=0).sqrt()
        m_hat = state["m"] / (1 - b1**t)
        # elementwise products and sums, not BLAS matrix-vector calls: these give the same bits whatever the
        # BLAS library's own thread count (OMP_NUM_THREADS=1 in a Dask worker), so fits are reproducible there
        whitened = (vectors * m_hat[:, None]).sum(0) / (roots + eps)
        update = (vectors * whitened[None, :]).sum(1)
        start = 0
        for p in params:
            n = p.numel()
            p.add_(update[start : start + n].reshape(p.shape).to(p.dtype), alpha=-lr)
            start += n
        return loss
