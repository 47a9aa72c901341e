"""Best of several fits of a Gaussian mixture pair: ``vt.fit_vi`` from several seeds (each a different k-means++
start, see :mod:`~vi_toolkit.models.gmm`), keeping the fit with the highest final ELBO.

    from vi_toolkit.models.gmm_restarts import fit_restarts
    result = fit_restarts(models.get("gmm", K=3), x, restarts=3, seed=0, steps=2000, lr=0.05)
"""

import numpy as np

import vi_toolkit as vt
from vi_toolkit.validate import whole


def final_elbo(result, window=50):
    """The ELBO at the end of a fit: minus the mean loss of its last ``window`` steps."""
    return -float(np.mean(result.losses[-window:]))


def fit_restarts(pair, x, restarts=3, seed=0, **fit_kwargs):
    """``restarts`` fits of ``pair`` (its ``model`` and ``guide``) to ``x`` by ``vt.fit_vi`` from seeds seed,
    seed+1, ... (uncompiled ELBO unless ``jit=True``; objective ``pair.objective`` unless given); returns the
    one with the highest :func:`final_elbo`. ``result.info["restart_elbos"]`` and ``["restart_seconds"]`` list
    the final ELBO and time of every restart (``result.seconds`` is the chosen fit's own time)."""
    x = pair.check_data(x, fitting=True)
    restarts = whole("restarts", restarts)
    fit_kwargs.setdefault("objective", pair.objective)
    # measured (benchmarks/gmm.py): compiling the ELBO takes ~2.5 s, more than it saves in a ~200-step fit
    fit_kwargs.setdefault("jit", False)
    results = [vt.fit_vi(pair.model, pair.guide, x, seed=seed + r, **fit_kwargs) for r in range(restarts)]
    elbos = [final_elbo(r) for r in results]
    best = results[int(np.argmax(elbos))]
    best.info["restart_elbos"] = elbos
    best.info["restart_seconds"] = [r.seconds for r in results]
    return best
