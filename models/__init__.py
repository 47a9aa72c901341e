"""Model/guide pairs by name: ``models.get("normal-mean", prior_scale=2.0)``; ``models.available()``;
``models.get("posteriordb:eight_schools-eight_schools_noncentered")`` (a posteriordb translation; its data and
reference draws: ``models.posteriordb_targets.load_target(name, root=folder)``).

A module here either registers pairs with :func:`register` (a new pair is one new file) or serves pairs of
another module with one job of its own: ``gmm_restarts`` (best of several fits), ``gmm_cavi`` (the CAVI
baseline), ``gmm_posterior`` (label-ordered mixture summaries), ``linear_vae`` (the exact bound sandwich of a
linear-Gaussian VAE) and ``posteriordb_targets`` (pairs with their data and gold-standard reference).
"""

import importlib
import inspect
import pkgutil

from vi_toolkit.errors import ConfigError, UnknownNameError

_REGISTRY = {}
POSTERIORDB = "posteriordb:"  # prefix of a name that is a posteriordb posterior's (see pair_class)


def register(name):
    """Class decorator: make a :class:`vi_toolkit.ModelPair` subclass available as ``models.get(name)``."""

    def decorate(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _load_all():
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def available():
    """Names of the registered model/guide pairs, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def describe():
    """name -> one-line description of every registered pair."""
    _load_all()
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def pair_class(name):
    """The class registered as ``name`` (its class attributes, such as ``posteriordb``, without building it);
    ``"posteriordb:kidiq-kidscore_momhs"`` names the pair translating that posteriordb posterior."""
    _load_all()
    if name.startswith(POSTERIORDB):
        found = [n for n, cls in _REGISTRY.items() if getattr(cls, "posteriordb", None) == name[len(POSTERIORDB):]]
        if not found:
            raise UnknownNameError(f"no registered model translates posteriordb posterior {name[len(POSTERIORDB):]!r}")
        name = found[0]
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get(name, **config):
    """The pair registered as ``name``, built with ``config`` (its constructor's keyword arguments)."""
    cls = pair_class(name)
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {unknown}; its options: {sorted(accepted)}")
    return cls(**config)
