"""``VIResult``: a fitted guide as a posterior (the protocol of :mod:`vi_toolkit.posterior`)."""

import math

import numpy as np
import pyro
from pyro.infer.autoguide import AutoDelta

from . import traces
from .inference_data import from_chains, predictive_groups, to_numpy
from .log_weights import log_weights
from .posterior import DEFAULT_DRAWS
from .validate import whole


class VIResult:
    """A fitted guide with its loss history. Draws, log-weights, the ELBO and InferenceData come from the
    fitted parameters, each on its own seeded stream (the caller's random streams are left as they were)."""

    def __init__(self, *, problem, guide, structure, vectorized, param_state, losses, seconds, info):
        self.problem = problem
        self.guide = guide
        self.structure = structure  # the pair's latent and deterministic sites and plate nesting
        self.vectorized = vectorized  # the pair runs with vectorized particles
        self.losses = np.asarray(losses, dtype=float)
        self.seconds = float(seconds)
        self.info = {"method": "vi", **info}  # settings and facts of the fit: objective, guide, lr, steps run, ...
        self._param_state = param_state

    model = property(lambda self: self.problem.model)
    args = property(lambda self: self.problem.args)
    kwargs = property(lambda self: self.problem.kwargs)

    def __repr__(self):
        final = self.losses[-1] if len(self.losses) else float("nan")
        return (
            f"VIResult(guide={self.info['guide']!r}, objective={self.info['objective']!r}, "
            f"steps={len(self.losses)}, final_loss={final:.4g}, seconds={self.seconds:.2f})"
        )

    def scope(self):
        """Context manager in which ``pyro.param`` sees this fit's parameters (and no other fit's)."""
        return pyro.get_param_store().scope(state=self._param_state)

    def isolated(self, seed=None):
        """Context manager for running this fit's guide: its parameters, the problem's thread count, a private
        random stream from ``seed``; see :func:`vi_toolkit.isolation.isolated`."""
        return self.problem.isolated(seed, params=self._param_state)

    @property
    def params(self):
        """Fitted parameters: name -> constrained tensor (detached)."""
        with self.isolated():
            store = pyro.get_param_store()
            return {name: store[name].detach().clone() for name in store.keys()}

    @property
    def is_point_mass(self):
        """Whether the guide is a point estimate (``AutoDelta``): it has no density to weight against."""
        return isinstance(self.guide, AutoDelta)

    def draws(self, n=None, seed=0):
        """``n`` draws (default 4000) from the fitted guide of every latent and ``pyro.deterministic`` site:
        site -> numpy array (n, *site_shape)."""
        n = DEFAULT_DRAWS if n is None else whole("n", n)
        with self.isolated(seed):
            draws = traces.posterior_draws(
                self.model, self.guide, self.args, self.kwargs, self.structure, n, vectorized=self.vectorized
            )
        return to_numpy(draws)

    def to_inference_data(self, n=None, seed=0, chains=4, predictive=None):
        """The fitted guide as ArviZ InferenceData: ``n`` independent draws (default 4000, those of
        ``draws(n, seed)``) laid out as gcd(n, ``chains``) chains of n/chains draws each (independent draws are
        valid chains, so ArviZ's diagnostics apply: r_hat is 1 and ESS is about n up to Monte Carlo error).

        Groups: ``posterior``; ``log_likelihood`` (pointwise log p(y_i | z) per observed site and draw),
        ``observed_data`` and ``posterior_predictive`` (one replicate of each observed site per draw), all on
        this result's stream ``seed``; ``predictive``: True/False to force or leave out those three groups, None
        to leave them out only when very large (see :func:`vi_toolkit.inference_data.predictive_groups`)."""
        n = DEFAULT_DRAWS if n is None else whole("n", n)
        chains = math.gcd(n, whole("chains", chains))
        with self.isolated(seed):  # the draws of draws(n, seed), then the replicates on the same stream
            draws = to_numpy(traces.posterior_draws(
                self.model, self.guide, self.args, self.kwargs, self.structure, n, vectorized=self.vectorized
            ))
            shaped = {name: value.reshape((chains, n // chains) + value.shape[1:]) for name, value in draws.items()}
            groups = predictive_groups(self.problem, shaped, predictive=predictive)
        return from_chains(shaped, attrs={"method": self.info["method"], "guide": self.info["guide"],
                                          "objective": self.info["objective"]}, **groups)

    def log_weights(self, n=1000, seed=0):
        """Importance log-weights log p(x, z_s) - log q(z_s) for z_s ~ q: a tensor of shape (n,); None for a
        point-mass guide."""
        if self.is_point_mass:
            return None
        n = whole("n", n)
        with self.isolated(seed):
            return log_weights(
                self.model, self.guide, self.args, self.kwargs, n, self.structure.max_plate_nesting,
                vectorized=self.vectorized, latent_shapes=self.structure.latent_shapes,
            )

    def elbo(self, num_particles=1000, seed=0):
        """Monte Carlo ELBO at the fitted guide: E_q[log p(x,z) - log q(z)] <= log p(x)."""
        log_w = self.log_weights(num_particles, seed)
        return float("nan") if log_w is None else float(log_w.mean())

    def save(self, folder, overwrite=False):
        """Write this result to ``folder`` (see :mod:`vi_toolkit.results`); an existing saved result there is
        replaced only with ``overwrite=True``."""
        from .results import save_result

        return save_result(self, folder, overwrite=overwrite)
