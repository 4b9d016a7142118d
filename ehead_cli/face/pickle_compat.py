"""A restricted unpickler for the official FLAME files, without chumpy.

The FLAME 2020/2023 models (``generic_model.pkl``, ``flame2023.pkl``), DECA's
``landmark_embedding.npy`` and ``FLAME_masks.pkl`` are Python-2 era pickles. They hold numpy arrays,
chumpy ``Ch`` arrays and a scipy ``csc_matrix``. Plain ``pickle.load`` would run any callable a
file names, so this module admits an explicit list of globals and nothing else:

- numpy's array and scalar reconstructors, ``ndarray`` and ``dtype``, under both the numpy 1
  (``numpy.core``) and numpy 2 (``numpy._core``) module names;
- ``chumpy.ch.Ch`` -> ``ChArray``, a stand-in that keeps the array chumpy stored in its ``x``
  attribute. A pickled ``Ch`` is ``Ch.__new__`` followed by ``__setstate__(d)`` with ``d`` the
  instance ``__dict__`` minus the weak caches: ``{'x': ndarray, '_dirty_vars': set,
  '_itr': None, '_depends_on_deps': {}, '_make_dense': bool, '_make_sparse': bool}``;
- ``scipy.sparse.csc_matrix`` under its old (``scipy.sparse.csc``) and new (``scipy.sparse._csc``)
  module names -> ``CscArray``, a stand-in rebuilt from ``data``/``indices``/``indptr``/``_shape``;
- what plain Python pickles of those use: ``set``, ``object``, ``copyreg._reconstructor`` (only
  for the stand-ins) and ``_codecs.encode`` (how Python 3 stores bytes at protocol < 3).

Anything else raises ``AssetError`` naming the file and the refused global.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from ehead_cli.errors import AssetError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer


class ChArray:
    """Stand-in for ``chumpy.ch.Ch``: keeps only the wrapped array ``x``."""

    x: Any = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or "x" not in state:
            raise pickle.UnpicklingError("a chumpy Ch object without its array 'x'")
        self.x = state["x"]


class CscArray:
    """Stand-in for ``scipy.sparse.csc_matrix``: keeps the compressed-column arrays."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"data", "indices", "indptr"} <= state.keys():
            raise pickle.UnpicklingError("a csc_matrix without data/indices/indptr")
        shape = state.get("_shape", state.get("shape"))
        if shape is None:
            raise pickle.UnpicklingError("a csc_matrix without its shape")
        self.state = {"data": state["data"], "indices": state["indices"], "indptr": state["indptr"],
                      "shape": tuple(int(s) for s in shape)}

    def toarray(self) -> np.ndarray:
        s = self.state
        return scipy.sparse.csc_matrix((s["data"], s["indices"], s["indptr"]), shape=s["shape"]).toarray()


_STAND_INS = (ChArray, CscArray)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` restricted to the stand-ins (protocol 0/1 object pickles)."""
    if cls not in _STAND_INS or base is not object or state is not None:
        raise pickle.UnpicklingError(f"copyreg._reconstructor for {getattr(cls, '__name__', cls)!r}")
    return object.__new__(cls)


_NUMPY_GLOBALS = {
    "_reconstruct": _reconstruct,
    "scalar": scalar,
}
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(mod, name): obj for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
       for name, obj in _NUMPY_GLOBALS.items()},
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("chumpy.ch", "Ch"): ChArray,
    ("scipy.sparse.csc", "csc_matrix"): CscArray,
    ("scipy.sparse._csc", "csc_matrix"): CscArray,
    ("scipy.sparse", "csc_matrix"): CscArray,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs.encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside ``ALLOWED_GLOBALS``."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns ``ALLOWED_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("refused persistent id")


def loads_restricted(stream: io.BufferedIOBase, source: str | Path) -> Any:
    """Unpickle from an open binary stream with ``RestrictedUnpickler`` (Python-2 strings as latin1).

    Raises ``AssetError`` naming ``source`` for a refused global or an unreadable pickle.
    """
    try:
        return RestrictedUnpickler(stream, encoding="latin1").load()
    except RefusedGlobal as err:
        raise AssetError(f"{source}: {err}; this file may only hold numpy/scipy/chumpy arrays, "
                         "so it is not loaded") from None
    except pickle.UnpicklingError as err:
        raise AssetError(f"{source}: not a readable pickle ({err})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, OverflowError,
            MemoryError, UnicodeDecodeError) as err:
        raise AssetError(f"{source}: not a readable pickle ({type(err).__name__}: {err})") from None


def load_pickle(path: str | Path) -> Any:
    """Read a pickle file through ``RestrictedUnpickler``; errors name the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return loads_restricted(f, path)
    except OSError as err:
        raise AssetError(f"{path}: cannot read ({err.strerror or err})") from None


def load_npy(path: str | Path) -> Any:
    """Read a ``.npy`` file; an object array (``np.save`` of a dict) goes through the restricted
    unpickler instead of ``np.load(allow_pickle=True)``. Returns the array, or the object a 0-d
    object array holds."""
    path = Path(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise AssetError(f"{path}: unsupported .npy format version {version}")
            if dtype.hasobject:
                arr = loads_restricted(f, path)
            else:
                f.seek(0)
                arr = np.load(f, allow_pickle=False)
    except OSError as err:
        raise AssetError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:
        raise AssetError(f"{path}: not a valid .npy file ({err})") from None
    if isinstance(arr, np.ndarray) and arr.dtype.hasobject and arr.shape == ():
        return arr.item()
    return arr


def to_array(obj: Any) -> np.ndarray:
    """A stand-in (``ChArray``, ``CscArray``), an ndarray or a nested list -> dense ndarray."""
    while isinstance(obj, ChArray):
        obj = obj.x
    if isinstance(obj, CscArray):
        return obj.toarray()
    return np.asarray(obj)
