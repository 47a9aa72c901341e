"""The posterior protocol: what every result of the toolkit offers to the analyses (``compare``, ``bounds``,
reports, experiments), whatever method made it.

Implemented by :class:`~vi_toolkit.VIResult` (a fitted guide), :class:`~vi_toolkit.MCMCResult` (NUTS),
the GMM's CAVI result and :class:`~vi_toolkit.results.SavedResult` (read back from disk). An analysis asks a
result for what it needs through these members and never asks which kind of result it is.
"""

from typing import Protocol, runtime_checkable

import numpy as np

from .errors import ConfigError
from .validate import seed as check_seed
from .validate import whole

DEFAULT_DRAWS = 4000  # fresh draws that a result able to sample any number gives for n=None


@runtime_checkable
class Posterior(Protocol):
    """A posterior approximation or sample.

    - ``draws(n=None, seed=0)``: site -> numpy array (n, *site_shape) of every latent and
      ``pyro.deterministic`` site. ``n=None``: the result's own draws (all stored draws, chains in order; a
      result that samples fresh gives :data:`DEFAULT_DRAWS`). A stored sample gives ``n`` draws as a seeded
      subset (without replacement, or a bootstrap resample when ``n`` exceeds what is stored).
    - ``to_inference_data(n=None, seed=0)``: the same draws as ArviZ InferenceData.
    - ``log_weights(n=1000, seed=0)``: importance log-weights log p(x, z) - log q(z), z ~ q, as a tensor (n,)
      where the approximation has a density; None where it has not (MCMC, a point mass, a saved result).
    - ``seconds``: wall-clock seconds of the fit or run; ``info``: its settings and facts (``info["method"]``
      names the method); ``losses``: the optimization trace (numpy array) or None.
    """

    seconds: float
    info: dict
    losses: object

    def draws(self, n=None, seed=0): ...

    def to_inference_data(self, n=None, seed=0): ...

    def log_weights(self, n=1000, seed=0): ...


def check_posterior(result, what="result"):
    """``result`` if it implements :class:`Posterior`, else a ConfigError naming what to pass instead."""
    if not isinstance(result, Posterior):
        raise ConfigError(
            f"{what} must be a posterior result (VIResult, MCMCResult, a CAVI result or vt.load_result(folder)); "
            f"got {type(result).__name__}"
        )
    return result


def stored_draws(draws, n=None, seed=0):
    """A stored sample (site -> array (S, *shape)) as ``n`` draws: all S in order for ``n=None``; else a
    subset chosen with ``seed``, without replacement when n <= S and with replacement (a bootstrap) when not."""
    if n is None:
        return dict(draws)
    n = whole("n", n)
    total = len(next(iter(draws.values())))
    rng = np.random.default_rng(check_seed(seed))
    index = np.sort(rng.choice(total, size=n, replace=n > total))
    return {name: np.asarray(value)[index] for name, value in draws.items()}
