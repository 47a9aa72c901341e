"""Run folders and saved results: InferenceData as netCDF, metrics as JSON, figures as PNG, all written atomically.

A saved result is a folder holding ``posterior.nc`` and ``metrics.json`` (and ``params.pt`` for VI);
:func:`load_result` reads it back as a :class:`SavedResult` with the same draws, InferenceData and metrics.
"""

import datetime
import json
from pathlib import Path

import arviz as az
import numpy as np
import torch

from .errors import RunFolderError
from .inference_data import draws_from_inference_data
from .io import atomic_path, write_json

RUN_MARKER = "run.json"


def save_result(result, folder):
    """Write ``result`` (VI or MCMC) to ``folder``: posterior.nc, metrics.json, and params.pt for VI."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    idata = result.to_inference_data()
    with atomic_path(folder / "posterior.nc") as tmp:
        idata.to_netcdf(str(tmp))
    metrics = {"kind": result.kind, "seconds": result.seconds, "info": result.info}
    if result.kind == "vi":
        metrics["losses"] = result.losses.tolist()
        metrics["elbo"] = result.elbo()
        with atomic_path(folder / "params.pt") as tmp:
            torch.save({name: value for name, value in result.params.items()}, tmp)
    else:
        metrics["divergences"] = result.divergences
    write_json(folder / "metrics.json", metrics)
    return folder


class SavedResult:
    """A result read back from its folder: draws, InferenceData, metrics (and losses and params for VI)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        if not (self.folder / "metrics.json").is_file() or not (self.folder / "posterior.nc").is_file():
            raise RunFolderError(
                f"{str(folder)!r} is not a saved result (it needs metrics.json and posterior.nc); "
                "save one with result.save(folder)"
            )
        self.metrics = json.loads((self.folder / "metrics.json").read_text())
        self.kind = self.metrics["kind"]
        self.seconds = self.metrics["seconds"]
        self.info = self.metrics["info"]
        self.losses = np.asarray(self.metrics["losses"]) if "losses" in self.metrics else None
        self._idata = az.from_netcdf(str(self.folder / "posterior.nc"))

    def to_inference_data(self):
        return self._idata

    def draws(self, *_, **__):
        """site -> numpy array (chains * draws, *site_shape)."""
        return draws_from_inference_data(self._idata)

    @property
    def params(self):
        path = self.folder / "params.pt"
        return torch.load(path, weights_only=False) if path.is_file() else {}

    def __repr__(self):
        return f"SavedResult(kind={self.kind!r}, folder={str(self.folder)!r})"


def load_result(folder):
    """Read a result saved with ``result.save(folder)``."""
    return SavedResult(folder)


class RunFolder:
    """One run's output folder. :meth:`create` and :meth:`new` make it afresh: a run never writes into (or
    over) an earlier run's folder."""

    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, *, meta=None):
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RunFolderError(
                f"run folder {str(path)!r} exists already; choose a new --out (runs never overwrite)"
            ) from None
        except OSError as exc:
            raise RunFolderError(f"cannot create run folder {str(path)!r}: {exc.strerror}") from None
        write_json(path / RUN_MARKER, {"created": _now(), **(meta or {})})
        return cls(path)

    @classmethod
    def new(cls, root, name, *, meta=None):
        """A fresh folder ``root/name-YYYYmmdd-HHMMSS`` (with a suffix if that exists)."""
        stem = Path(root) / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        candidate, k = stem, 1
        while candidate.exists():
            k += 1
            candidate = stem.with_name(f"{stem.name}-{k}")
        return cls.create(candidate, meta=meta)

    def sub(self, name):
        """A new sub-folder for one experiment of a multi-experiment run."""
        (self.path / name).mkdir(parents=True, exist_ok=False)
        return RunFolder(self.path / name)

    def write_json(self, name, obj):
        write_json(self.path / name, obj)

    def save_figure(self, name, fig):
        _save_figure(self.path / "figures" / f"{name}.png", fig)

    def save_table(self, name, table):
        _save_table(self.path / "tables" / f"{name}.csv", table)

    def save_result(self, name, result):
        return save_result(result, self.path / "results" / name)


def _save_figure(path, fig):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _save_table(path, table):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def is_run_folder(path):
    return (Path(path) / RUN_MARKER).is_file()
