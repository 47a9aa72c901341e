"""Targets with a gold standard: a registered pair together with its data and its reference posterior.

A target is named either by a posteriordb posterior (``"eight_schools-eight_schools_noncentered"``: the
registered pair whose ``posteriordb`` attribute names that folder, its data from posteriordb's data JSON and
posteriordb's reference draws) or by a registered pair with an exact posterior (``"normal-mean"``: data from
``pair.simulate``, the exact posterior as torch distributions). A pair's model takes the data JSON's entries
by name: ``model(y, sigma)`` gets ``data["y"]``, ``data["sigma"]``.

    from vi_toolkit.models.posteriordb_targets import load_target
    label, pair, args, reference = load_target("eight_schools-eight_schools_noncentered")
    vt.compare({"VI": vt.fit_vi(pair.model, "normal", *args)}, reference)
"""

import inspect
from pathlib import Path
from typing import NamedTuple

import torch

from vi_toolkit import posteriordb
from vi_toolkit.errors import ConfigError, DataError, UnknownNameError
from vi_toolkit.models import available, get, pair_class


class Target(NamedTuple):
    """A pair with its data and its reference: ``reference`` is label -> 1-D reference draws (posteriordb) or
    site -> torch Distribution (an exact posterior); both are what :func:`vi_toolkit.compare` takes."""

    label: str
    pair: object
    args: tuple
    reference: dict


def translations():
    """posteriordb posterior name -> name of the registered pair that translates it (its ``posteriordb``
    attribute), for every translation the toolkit has."""
    return {pair_class(name).posteriordb: name for name in available()
            if getattr(pair_class(name), "posteriordb", None)}


def posteriordb_pair(name):
    """The registered pair translating posteriordb posterior ``name`` (its ``posteriordb`` attribute)."""
    found = translations()
    if name not in found:
        raise UnknownNameError(f"no registered model translates posteriordb posterior {name!r}")
    return get(found[name])


def posteriordb_args(pair, data):
    """The model's positional arguments from a posteriordb data dict, by parameter name (float tensors, checked
    by the pair's ``check_data`` where it has one)."""
    names = list(inspect.signature(pair.model).parameters)
    missing = [n for n in names if n not in data]
    if missing:
        raise DataError(f"posteriordb data has no entries {missing} for {type(pair).__name__}.model{tuple(names)}")
    values = [data[n] for n in names]
    if not hasattr(pair, "check_data"):
        return tuple(torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in values)
    checked = pair.check_data(*values)
    return checked if isinstance(checked, tuple) else (checked,)


def load_target(target, root=None, data_seed=0):
    """The :class:`Target` named ``target``: a posteriordb posterior under ``root`` (default
    :func:`vi_toolkit.posteriordb.default_root`), or a registered pair, which stands for its posteriordb
    posterior if it translates one, else for its exact posterior given ``pair.simulate(seed=data_seed)``."""
    root = posteriordb.default_root() if root is None else Path(root)
    if target in available():
        pair = get(target)
        if getattr(pair, "posteriordb", None):
            target = pair.posteriordb
        elif pair.has_exact_posterior:
            args = pair.simulate(seed=data_seed)
            return Target(target, pair, tuple(args), pair.posterior(*args))
        else:
            raise ConfigError(f"target {target!r} has neither an exact posterior nor posteriordb reference draws")
    if root is None or not (root / target).is_dir():
        raise ConfigError(
            f"target {target!r} is neither a registered pair nor a posteriordb posterior under {root}; "
            f"set ${posteriordb.ENV_ROOT} or choose one of {available()}"
        )
    pair = posteriordb_pair(target)
    post = posteriordb.load(root / target)
    return Target(target, pair, posteriordb_args(pair, post.data), post.reference_draws())
