"""Checkpoints: model, optimizer, scheduler, RNG state and progress in one ``.npz`` file, without pickle.

Layout: an ordinary numpy ``.npz`` (a zip of ``.npy`` arrays). Every array in the saved state is
stored as its own entry under its path (``model/conv1.weight``, ``optimizer/state/0/exp_avg``);
everything else (hyperparameters, counters, the RNG state, the nesting itself) is one JSON
document in the entry ``__minidl_checkpoint__``, next to the format name and version. Loading
uses ``np.load(allow_pickle=False)`` and ``json``: a checkpoint from an untrusted source can
hold wrong numbers but cannot run code.

Writes are atomic: the file is written under a temporary name in the same directory, flushed
and fsync'ed, then renamed over the target (and the directory fsync'ed), so a crash mid-write
leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from minidl import random as _random

FORMAT = "minidl-checkpoint"
VERSION = 1
META_KEY = "__minidl_checkpoint__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or not a (compatible) minidl checkpoint."""


# --------------------------------------------------------------------------- tree encoding
def _encode(value: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON-able description of ``value``; its arrays go into ``arrays`` under their paths."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"checkpoint: {path or 'value'} is an object array, which cannot be saved without pickle")
        key = path or "value"
        if key in arrays or key == META_KEY:
            raise ValueError(f"checkpoint: two arrays map to the entry {key!r}")
        arrays[key] = arr
        return {"__array__": key}
    if hasattr(value, "data") and isinstance(getattr(value, "data", None), np.ndarray):  # a minidl Tensor
        return _encode(value.data, path, arrays)
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            if "__array__" in value or "__tuple__" in value or "__intkeys__" in value:
                raise ValueError(f"checkpoint: {path}: dict keys starting with '__' and ending with '__' are reserved")
            return {k: _encode(v, f"{path}/{k}" if path else k, arrays) for k, v in value.items()}
        if all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in value):
            return {"__intkeys__": [[int(k), _encode(v, f"{path}/{k}", arrays)] for k, v in value.items()]}
        raise TypeError(f"checkpoint: {path}: dict keys must be all strings or all ints")
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"checkpoint: {path or 'value'} is a {type(value).__name__}; only arrays, numbers, strings, "
        "None, lists, tuples and dicts can be saved"
    )


def _decode(node: Any, arrays: Any, source: str) -> Any:
    if isinstance(node, dict):
        if "__array__" in node:
            key = node["__array__"]
            if key not in arrays:
                raise CheckpointError(f"{source}: corrupt checkpoint: array entry {key!r} is missing")
            try:
                return arrays[key]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
                raise CheckpointError(f"{source}: corrupt checkpoint: cannot read array {key!r} ({e})") from None
        if "__tuple__" in node:
            return tuple(_decode(v, arrays, source) for v in node["__tuple__"])
        if "__intkeys__" in node:
            return {int(k): _decode(v, arrays, source) for k, v in node["__intkeys__"]}
        return {k: _decode(v, arrays, source) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(v, arrays, source) for v in node]
    return node


# --------------------------------------------------------------------------- files
def save(path: str | os.PathLike, tree: dict[str, Any]) -> None:
    """Write ``tree`` (nested dicts/lists/tuples of arrays and plain values) atomically to ``path``."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": VERSION, "tree": _encode(tree, "", arrays)}
    arrays[META_KEY] = np.array(json.dumps(meta, allow_nan=True))
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by ``save`` (no pickle); every problem is a ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                raise CheckpointError(f"{path}: not a minidl checkpoint (no {META_KEY} entry)")
            meta = json.loads(str(z[META_KEY]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a minidl checkpoint (format {meta.get('format')!r})")
            version = meta.get("version")
            if not isinstance(version, int) or version > VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint format version {version!r} is newer than this minidl reads "
                    f"(up to {VERSION}); upgrade minidl"
                )
            arrays = {k: z[k] for k in z.files if k != META_KEY}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None
    return _decode(meta["tree"], arrays, str(path))


# --------------------------------------------------------------------------- training state
def save_checkpoint(
    path: str | os.PathLike,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    epoch: int | None = None,
    step: int | None = None,
    rng: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save what a training run needs to continue exactly: any of model, optimizer, scheduler
    (their ``state_dict()``), minidl's global RNG state, ``epoch``/``step`` and an ``extra``
    dict of your own (arrays and plain values)."""
    tree: dict[str, Any] = {"epoch": epoch, "step": step, "extra": extra or {}}
    if model is not None:
        tree["model"] = dict(model.state_dict())
    if optimizer is not None:
        tree["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        tree["scheduler"] = scheduler.state_dict()
    if rng:
        tree["rng"] = _random.get_rng_state()
    save(path, tree)


def load_checkpoint(
    path: str | os.PathLike,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore the objects given from ``path`` and return the whole saved tree
    (``epoch``, ``step``, ``extra``, ...). Asking for a part the file lacks is an error."""
    tree = load(path)
    parts = (("model", model), ("optimizer", optimizer), ("scheduler", scheduler))
    for name, obj in parts:
        if obj is not None and name not in tree:
            raise CheckpointError(f"{path}: the checkpoint holds no {name} state")
    if model is not None:
        model.load_state_dict(tree["model"], strict=strict)
    if optimizer is not None:
        optimizer.load_state_dict(tree["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(tree["scheduler"])
    if restore_rng and "rng" in tree:
        _random.set_rng_state(tree["rng"])
    return tree


# --------------------------------------------------------------------------- a run's checkpoints
class CheckpointSeries:
    """One run's checkpoints in a directory, ``RUN.epoch-NNNN.npz``, the newest ``keep`` kept.

    Runs share a directory without touching each other's files: a new run gets a new name (the
    time it started), so it writes next to, never over, an earlier run's checkpoints unless it is
    told to replace them (``replace_others``: removed once this run's first checkpoint is safely
    written). ``latest(directory)`` is the newest checkpoint of the most recently written run.
    """

    PATTERN = re.compile(r"^(?P<run>[A-Za-z0-9_-]+)\.epoch-(?P<epoch>\d{4,})\.npz$")

    def __init__(self, directory: str | os.PathLike, run: str, keep: int = 3, replace_others: bool = False) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", run):
            raise ValueError(f"run name {run!r}: use letters, digits, '-' and '_'")
        self.directory = Path(directory)
        self.run = run
        self.keep = keep
        self.replace_others = replace_others

    @staticmethod
    def new_run_name() -> str:
        """A name for a new run: when it started (UTC) and a random suffix, so two runs never share one."""
        return time.strftime("run-%Y%m%d-%H%M%S", time.gmtime()) + f"-{secrets.token_hex(2)}"

    @classmethod
    def runs(cls, directory: str | os.PathLike) -> dict[str, list[tuple[int, Path]]]:
        """Every run's checkpoints in ``directory``: run name -> [(epoch, path)], oldest first."""
        found: dict[str, list[tuple[int, Path]]] = {}
        if not Path(directory).is_dir():
            return found
        for path in Path(directory).iterdir():
            m = cls.PATTERN.match(path.name)
            if m and path.is_file():
                found.setdefault(m["run"], []).append((int(m["epoch"]), path))
        return {run: sorted(files) for run, files in found.items()}

    @classmethod
    def latest(cls, directory: str | os.PathLike) -> Path | None:
        """The newest checkpoint of the run written most recently, or None."""
        newest = [files[-1][1] for files in cls.runs(directory).values()]
        return max(newest, key=lambda p: p.stat().st_mtime_ns, default=None)

    @classmethod
    def run_of(cls, path: str | os.PathLike) -> str:
        m = cls.PATTERN.match(Path(path).name)
        if m is None:
            raise ValueError(f"{path} is not named like a run's checkpoint (RUN.epoch-NNNN.npz)")
        return m["run"]

    @staticmethod
    def config_of(path: str | os.PathLike) -> dict[str, Any]:
        """The run configuration stored in a checkpoint (``extra["config"]``)."""
        tree = load(path)
        config = (tree.get("extra") or {}).get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: the checkpoint stores no run configuration, so it cannot be resumed safely")
        return config

    def path(self, epoch: int) -> Path:
        return self.directory / f"{self.run}.epoch-{epoch:04d}.npz"

    def save(self, epoch: int, **state: Any) -> Path:
        """``save_checkpoint`` to this run's file for ``epoch``, then drop what is no longer kept."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(epoch)
        save_checkpoint(path, epoch=epoch, **state)
        runs = self.runs(self.directory)
        stale = [p for _, p in runs.get(self.run, [])[: -self.keep]]
        if self.replace_others:
            stale += [p for run, files in runs.items() if run != self.run for _, p in files]
        for p in stale:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return path
