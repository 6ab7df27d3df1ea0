"""Test-only builders of hostile and broken pickles (independent of the writer in checkpoint.py).

Nothing here is ever unpickled with ``pickle.load``; the tests only hand these files to the safe reader.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path


def marker_src(marker: Path) -> str:
    """Python source that creates ``marker`` when executed (what a hostile ``module_src`` would carry)."""
    return f"open({str(marker)!r}, 'w').write('code ran')\n"


class _CallOnLoad:
    """Unpickles as ``func(*args)``: the classic code-running pickle."""

    def __init__(self, func, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def reduce_pickle(func, args: tuple) -> bytes:
    """A snapshot-shaped pickle whose ``G_ema`` is ``func(*args)``: ``os.system``, ``exec``, ``eval``, ..."""
    return pickle.dumps({"G_ema": _CallOnLoad(func, args)}, protocol=4)


class _Global:
    """A global emitted by name without importing it (``torch_utils`` is not installed here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Persistent:
    def __init__(self, meta: dict) -> None:
        self.meta = meta


class _RawPickler(pickle._Pickler):  # noqa: SLF001 - pure-Python pickler for custom dispatch
    dispatch = dict(pickle._Pickler.dispatch)  # noqa: SLF001

    def _save_global_ref(self, obj: _Global) -> None:
        self.save(obj.module)
        self.save(obj.name)
        self.write(pickle.STACK_GLOBAL)

    def _save_persistent(self, obj: _Persistent) -> None:
        self.save(_Global("torch_utils.persistence", "_reconstruct_persistent_obj"))
        self.save((obj.meta,))
        self.write(pickle.REDUCE)

    dispatch[_Global] = _save_global_ref
    dispatch[_Persistent] = _save_persistent


def persistent_pickle(class_name: str, module_src: str, state: dict | None = None) -> bytes:
    """``{'G_ema': _reconstruct_persistent_obj(meta)}`` with the given class name and module source.

    The official unpickler would ``exec(module_src)`` while loading this.
    """
    meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
            "state": state if state is not None else {}}
    buf = io.BytesIO()
    _RawPickler(buf, protocol=4).dump({"G_ema": _Persistent(meta)})
    return buf.getvalue()


def global_pickle(module: str, name: str) -> bytes:
    """A pickle that merely names ``module.name`` (what a by-reference class or function looks like)."""
    buf = io.BytesIO()
    _RawPickler(buf, protocol=4).dump({"G_ema": _Global(module, name)})
    return buf.getvalue()


def os_system_call(marker: Path) -> tuple:
    """(os.system, ("touch <marker>",)): runs a shell command if unpickled."""
    return os.system, (f"touch {marker}",)
