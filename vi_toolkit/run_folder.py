"""Run folders: one run's output folder (run.json, tables, figures, saved results), made afresh, never reused."""

import datetime
import json
from pathlib import Path

from .errors import RunFolderError
from .io import atomic_path, write_json
from .results import save_result

RUN_MARKER = "run.json"


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
        write_json(path / RUN_MARKER, {"created": _now(), "complete": False, **(meta or {})})
        return cls(path)

    def finish(self, error=None):
        """Record in run.json that the run completed (or, with ``error``, why it did not)."""
        meta = json.loads((self.path / RUN_MARKER).read_text(encoding="utf-8"))
        meta.update(complete=error is None, finished=_now())
        if error is not None:
            meta["error"] = error
        write_json(self.path / RUN_MARKER, meta)

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _save_table(path, table):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")
