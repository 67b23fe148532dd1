"""Chunked, deflated HDF4 SDS: ``SDsetchunk``, which ``pyhdf`` does not wrap.

A chunked SDS stores only the chunks written; the others read back as its fill value. The
world's tiles hold data over a window that covers a fraction of each tile, so writing only
those chunks costs a third of compressing whole tiles of fill. The call goes through
``ctypes`` into the HDF4 library ``pyhdf`` itself loaded (its wheel's ``pyhdf.libs``, else
the system's ``libmfhdf``); where that library cannot be found or refuses, the caller falls
back to whole-SDS deflate (``SDS.setcompress``), which gives the same file contents.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path
from typing import Any

import pyhdf

_MAX_VAR_DIMS = 32  # H4_MAX_VAR_DIMS
_HDF_CHUNK, _HDF_COMP = 1, 2
_COMP_CODE_DEFLATE = 4


class _ChunkDef(ctypes.Structure):
    """``HDF_CHUNK_DEF.comp`` (hdf.h): chunk lengths, compression type and model, and the
    ``comp_info``/``model_info`` unions (24 and 4 bytes; deflate reads its level first)."""

    _fields_ = [
        ("chunk_lengths", ctypes.c_int32 * _MAX_VAR_DIMS),
        ("comp_type", ctypes.c_int32),
        ("model_type", ctypes.c_int32),
        ("comp_info", ctypes.c_int32 * 6),
        ("model_info", ctypes.c_int32),
    ]


@functools.cache
def _sdsetchunk() -> Any | None:
    """``SDsetchunk`` of the library pyhdf uses, or None where it cannot be found."""
    bundled = sorted((Path(pyhdf.__file__).parent.parent / "pyhdf.libs").glob("libmfhdf*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("mfhdf")
    if name is None:
        return None
    try:
        func = ctypes.CDLL(name).SDsetchunk
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int32, _ChunkDef, ctypes.c_int32]
    func.restype = ctypes.c_int
    return func


def deflate(sds: Any, chunk: int, level: int) -> bool:
    """Make a new 2-D ``pyhdf`` SDS chunked (``chunk`` x ``chunk``) and deflated at
    ``level``, before any write; False (nothing changed) where that is not available."""
    setchunk = _sdsetchunk()
    if setchunk is None:
        return False
    spec = _ChunkDef()
    spec.chunk_lengths[0] = spec.chunk_lengths[1] = chunk
    spec.comp_type = _COMP_CODE_DEFLATE
    spec.comp_info[0] = level
    return setchunk(sds._id, spec, _HDF_CHUNK | _HDF_COMP) == 0
