"""posteriordb's ``sblrc-blr`` in Pyro: the ``blr`` model of :mod:`vi_toolkit.models.sblri` on data ``sblrc``.

Stan (posteriordb ``blr``, proper priors: nothing substituted)::

    beta ~ normal(0, 10) (D);  sigma ~ normal(0, 10) (lower=0);  y ~ normal(X * beta, sigma)

Labels ``beta[0]`` ... ``beta[4]`` and ``sigma``. Data: ``vi_toolkit.posteriordb.load(root / "sblrc-blr").data``,
the model's arguments by name (``X``, ``y``; N = 100, D = 5).
"""

from vi_toolkit.models import register
from vi_toolkit.models.sblri import SBLRI


@register("sblrc")
class SBLRC(SBLRI):
    """beta ~ N(0, 10^2 I_D), sigma ~ HalfNormal(10); y_i ~ N(x_i . beta, sigma) on data ``sblrc``."""

    description = "posteriordb sblrc-blr: Bayesian linear regression with unknown noise scale (data sblrc)"
    posteriordb = "sblrc-blr"
