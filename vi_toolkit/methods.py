"""Inference methods by name: ``run_method("mvn", model, *args, seed=0)`` runs one and returns its posterior result.

Every method returns a result of the posterior protocol (:class:`vi_toolkit.posterior.Posterior`), so
``compare``, ``bounds``, reports and experiments take any of them. The autoguide families run through
:func:`vi_toolkit.fit_vi`, ``nuts`` through :func:`vi_toolkit.run_mcmc`, and the other methods are named as
``"module:function"`` and imported only when first run: importing this module loads neither torch nor Pyro.
"""

import importlib
import importlib.util

from .errors import ConfigError, UnknownNameError

# name -> (how it runs, description). How: "fit_vi" (the autoguide family of that name), "run_mcmc", or
# "module:function", called as function(model, *args, seed=seed, progress=progress, **options)
_REGISTRY = {
    "normal": ("fit_vi", "mean-field Gaussian VI by fit_vi"),
    "mvn": ("fit_vi", "full-rank Gaussian VI (AutoMultivariateNormal) by fit_vi"),
    "lowrank": ("fit_vi", "low-rank plus diagonal Gaussian VI (AutoLowRankMultivariateNormal) by fit_vi"),
    "iaf": ("fit_vi", "inverse autoregressive flow VI (AutoIAFNormal) by fit_vi"),
    "laplace": ("fit_vi", "Laplace approximation: MAP, then a Gaussian from the Hessian (AutoLaplaceApproximation)"),
    "nuts": ("run_mcmc", "the No-U-Turn sampler (Pyro NUTS) by run_mcmc"),
    "pathfinder": ("vi_toolkit.pathfinder:pathfinder",
                   "Pathfinder: Gaussian approximations along an L-BFGS path, the best by ELBO"),
    "dadvi": ("vi_toolkit.dadvi:dadvi", "deterministic ADVI: a Gaussian fitted on a fixed set of draws"),
    "batch-match": ("vi_toolkit.batch_match:batch_and_match",
                    "batch-and-match: Gaussian VI by score matching with closed-form updates"),
}
_TARGETS = {name: target for name, (target, _) in _REGISTRY.items()}
METHODS = {name: description for name, (_, description) in _REGISTRY.items()}  # name -> one line


def _check_name(name):
    if name not in _TARGETS:
        raise UnknownNameError(f"unknown inference method {name!r}; methods: {', '.join(METHODS)}")


def runner(name):
    """How method ``name`` runs: ``"fit_vi"`` (an autoguide family), ``"run_mcmc"``, or ``"module:function"``."""
    _check_name(name)
    return _TARGETS[name]


def _module_present(target):
    """Whether the module of a ``"module:function"`` target can be imported (found without importing it)."""
    module = target.partition(":")[0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def available():
    """The names in :data:`METHODS` that can run here (a ``"module:function"`` method's module is present)."""
    return [name for name in METHODS if ":" not in _TARGETS[name] or _module_present(_TARGETS[name])]


def _load(name):
    """The function behind a ``"module:function"`` method; ConfigError where its module or function is absent."""
    module_name, _, function_name = _TARGETS[name].partition(":")
    if not _module_present(_TARGETS[name]):
        raise ConfigError(
            f"method {name!r} needs module {module_name}, which this installation does not have; "
            f"choose one of the methods available here: {', '.join(available())}"
        )
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ConfigError(f"method {name!r}: module {module_name} defines no function {function_name!r}")
    return function


def run_method(name, model, *args, seed=0, progress=False, **options):
    """Run inference method ``name`` (a key of :data:`METHODS`) on ``model`` given ``*args`` and return its
    posterior result. ``options`` go to the method: fit settings of :func:`vi_toolkit.fit_vi` (``steps``,
    ``lr``, ``num_particles``, ...) for the autoguide families, of :func:`vi_toolkit.run_mcmc` (``draws``,
    ``warmup``, ``chains``, ...) for ``nuts``, and the method function's own keywords for the others."""
    target = runner(name)
    if target == "fit_vi":
        from .vi import fit_vi

        return fit_vi(model, name, *args, seed=seed, progress=progress, **options)
    if target == "run_mcmc":
        from .mcmc import run_mcmc

        return run_mcmc(model, *args, seed=seed, progress=progress, **options)
    return _load(name)(model, *args, seed=seed, progress=progress, **options)
