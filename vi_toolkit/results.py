"""Saved results: a posterior result written to a folder (InferenceData as netCDF, metrics as JSON, parameters as
tensors, all written atomically) and read back.

A saved result is a folder holding ``posterior.nc`` and ``metrics.json`` (and ``params.pt`` for a fitted
guide); :func:`load_result` reads it back as a :class:`SavedResult` with the same draws, InferenceData and
metrics, without unpickling anything.
"""

import json
from pathlib import Path

import arviz as az
import numpy as np
import torch

from .errors import RunFolderError
from .inference_data import draws_from_inference_data, from_chains
from .io import atomic_path, write_json
from .posterior import check_posterior, stored_draws

def save_result(result, folder, *, overwrite=False):
    """Write ``result`` (any posterior result) to ``folder``: posterior.nc, metrics.json, and params.pt where
    the result has fitted parameters. An existing saved result is replaced only with ``overwrite=True``."""
    folder = Path(folder)
    check_posterior(result)
    if not overwrite and (folder / "metrics.json").exists():
        raise RunFolderError(f"{str(folder)!r} already holds a saved result; pass overwrite=True or another folder")
    folder.mkdir(parents=True, exist_ok=True)
    idata = result.to_inference_data()
    with atomic_path(folder / "posterior.nc") as tmp:
        idata.to_netcdf(str(tmp))
    log_w = result.log_weights()
    metrics = {
        "method": result.info.get("method", type(result).__name__),
        "seconds": result.seconds,
        "info": result.info,
        "losses": None if result.losses is None else np.asarray(result.losses).tolist(),
        "elbo": None if log_w is None else float(log_w.mean()),
    }
    if getattr(result, "params", None):
        with atomic_path(folder / "params.pt") as tmp:
            torch.save({name: value.detach().clone() for name, value in result.params.items()}, tmp)
    write_json(folder / "metrics.json", metrics)
    return folder


class SavedResult:
    """A result read back from its folder: the posterior protocol (stored draws), metrics and parameters.
    Nothing in the folder is unpickled: netCDF, JSON and tensors only."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not (self.folder / "metrics.json").is_file() or not (self.folder / "posterior.nc").is_file():
            raise RunFolderError(
                f"{str(folder)!r} is not a saved result (it needs metrics.json and posterior.nc); "
                "save one with result.save(folder)"
            )
        try:
            self.metrics = json.loads((self.folder / "metrics.json").read_text(encoding="utf-8"))
            self.info = dict(self.metrics["info"])
            self.seconds = float(self.metrics["seconds"])
            losses = self.metrics.get("losses")
            self.losses = None if losses is None else np.asarray(losses, dtype=float)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunFolderError(
                f"{str(self.folder / 'metrics.json')!r} is corrupt ({type(exc).__name__}: {exc}); save the result again"
            ) from None
        try:
            self._idata = az.from_netcdf(str(self.folder / "posterior.nc"))
            self._draws = draws_from_inference_data(self._idata)
        except Exception as exc:  # noqa: BLE001 - netCDF/HDF5 readers raise many types on a corrupt file
            raise RunFolderError(
                f"{str(self.folder / 'posterior.nc')!r} is not a readable netCDF posterior ({type(exc).__name__}); "
                "save the result again"
            ) from None

    def to_inference_data(self, n=None, seed=0):
        if n is None:
            return self._idata
        return from_chains({name: value[None] for name, value in self.draws(n, seed).items()},
                           attrs=dict(self._idata.posterior.attrs))

    def draws(self, n=None, seed=0):
        """site -> numpy array (n, *site_shape): all stored draws (chains in order) for ``n=None``."""
        return stored_draws(self._draws, n, seed)

    def log_weights(self, n=1000, seed=0):
        """None: a saved result keeps draws, not a density (its ELBO is in ``metrics["elbo"]``)."""
        return None

    @property
    def params(self):
        """Saved parameters: name -> tensor (read with ``weights_only=True``: no code runs)."""
        path = self.folder / "params.pt"
        if not path.is_file():
            return {}
        try:
            params = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a corrupt or crafted file
            raise RunFolderError(
                f"{str(path)!r} is not a readable parameter file ({type(exc).__name__}); save the result again"
            ) from None
        if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
            raise RunFolderError(f"{str(path)!r} does not hold a dict of tensors; save the result again")
        return params

    def __repr__(self):
        return f"SavedResult(method={self.info.get('method')!r}, folder={str(self.folder)!r})"


def load_result(folder):
    """Read a result saved with ``result.save(folder)``."""
    return SavedResult(folder)
