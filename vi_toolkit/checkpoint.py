"""Checkpoints of a running fit, saved atomically and loaded without unpickling arbitrary objects.

A checkpoint holds only tensors, numbers, strings and containers of them (``FitState.state_dict``), so it is
read with ``torch.load(weights_only=True)``: a crafted file cannot run code. It is tied to its fit by the
fit's settings, which name the model, the guide, a content hash of the data and every setting.
"""

import os

import torch

from .errors import CheckpointError
from .io import atomic_path

FORMAT = 2


def save_checkpoint(path, state):
    """Write ``state`` to ``path`` atomically: a kill or a full disk during the write leaves the previous
    checkpoint intact (and no temporary file); a failed write raises CheckpointError."""
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **state}, tmp)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot write checkpoint {str(path)!r} ({type(exc).__name__}: {exc}); the previous checkpoint, if "
            "any, is intact. Free disk space or choose another path"
        ) from exc


def plain(obj):
    """Settings as plain containers (tuples as lists), so that they compare equal after a save and load."""
    if isinstance(obj, dict):
        return {key: plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(value) for value in obj]
    return obj


def load_checkpoint(path, settings):
    """The checkpoint at ``path``, or None if there is none; it must have been written by a fit with the same
    ``settings`` (model, guide, data hash, objective, ...)."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types on a corrupt or foreign file
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} ({type(exc).__name__}: {reason}); "
            "it is corrupt, from an older vi-toolkit, or not a checkpoint: delete it to start afresh"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("settings"), dict):
        raise CheckpointError(f"{str(path)!r} is not a vi-toolkit checkpoint; delete it or choose another path")
    expected = plain(settings)
    if state["settings"] != expected:
        changed = sorted(k for k in set(expected) | set(state["settings"])
                         if state["settings"].get(k) != expected.get(k))
        raise CheckpointError(
            f"checkpoint {str(path)!r} belongs to a different fit (changed: {', '.join(changed)}); "
            "use another checkpoint path or the original model, data and settings"
        )
    return state
