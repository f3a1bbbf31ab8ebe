"""mpi4py's buffer specifications read as numpy arrays, or the reason a call is left to MPI.

mpi4py takes a message buffer as any object with the buffer protocol, ``__dlpack__`` or
``__cuda_array_interface__``, alone or in a list: ``[buf, datatype]``, ``[buf, count, datatype]``,
``[buf, (count, displ), datatype]``, ``[buf, count, displ, datatype]`` (the datatype an
``MPI.Datatype`` or a format string such as ``"d"``). :func:`read` gives the flat numpy view of the
elements such a specification names, sharing its memory, when the hand-written collectives can
work on them: host memory holding a predefined numeric or bool datatype. Anything else raises
:class:`Passthrough` saying why (device memory, ``MPI.BOTTOM``, derived or pair datatypes, a
specification mpi4py itself would refuse...), and the wrapper hands the call to MPI unchanged,
so MPI gives its own answer or its own error. A problem MPI would refuse too, found in a
specification read as far as its dtype (a read-only receive buffer, a count past the end of the
buffer), is a ValueError, which the wrapper raises on every rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI
from mpi4py.util import dtlib

from collectives.ops import BOOL, LONG_DOUBLE_DTYPES, NUMERIC_DTYPES

KDL_CPU = 1  # DLPack's device type for host memory
ROUTABLE_DTYPES = frozenset((*NUMERIC_DTYPES, *LONG_DOUBLE_DTYPES, BOOL))


class Passthrough(Exception):
    """The call goes to MPI's own implementation, unchanged; the message says why."""


def in_place(sendbuf: Any) -> bool:
    """Whether a send buffer means "in place": ``MPI.IN_PLACE``, or None as mpi4py reads it."""
    return sendbuf is None or sendbuf is MPI.IN_PLACE


def read(spec: Any, *, writable: bool, blocks: int = 0) -> np.ndarray:
    """The flat view of the elements ``spec`` names (see the module docstring).

    ``blocks`` > 1: the buffer holds that many equal blocks (Allgather's receive buffer); an
    explicit count is then the count of one block, as mpi4py and MPI read it.
    """
    data, count, displ, datatype = _unpack(spec)
    if data is None or data is MPI.BOTTOM:
        raise Passthrough("an MPI.BOTTOM (or None) buffer: absolute addresses are MPI's")
    dtype = None if datatype is None else dtype_of(datatype)
    raw, found = _memory(data, writable)
    if dtype is None:
        dtype = found() if callable(found) else found
    if dtype not in ROUTABLE_DTYPES:
        raise Passthrough(f"buffer dtype {dtype} is not one the hand-written collectives reduce")
    size = dtype.itemsize
    start = _index("displacement", displ) * size
    if start > raw.size:
        raise ValueError(f"displacement {displ} is past the end of the buffer of {raw.size // size} x {dtype}")
    if count is None:
        n, rest = divmod(raw.size - start, size)
        if rest:
            raise ValueError(f"a buffer of {raw.size - start} bytes is not a whole number of {dtype} elements")
        if blocks > 1 and n % blocks:
            raise ValueError(f"a buffer of {n} x {dtype} is not {blocks} equal blocks")
    else:
        n = _index("count", count) * max(blocks, 1)
        if start + n * size > raw.size:
            raise ValueError(
                f"count {count} from displacement {displ or 0} exceeds the buffer of {raw.size // size} x {dtype}"
            )
    return raw[start : start + n * size].view(dtype)


def dtype_of(datatype: Any) -> np.dtype:
    """The numpy dtype of a predefined MPI datatype (or mpi4py format string) the collectives can reduce."""
    if isinstance(datatype, str):
        try:
            datatype = MPI._typedict[datatype]
        except KeyError:
            raise Passthrough(f"format string {datatype!r} names no MPI datatype") from None
    if not isinstance(datatype, MPI.Datatype) or datatype == MPI.DATATYPE_NULL:
        raise Passthrough(f"{datatype!r} is not an MPI datatype")
    name = datatype.Get_name()
    if not datatype.is_predefined:
        raise Passthrough(f"derived datatype {name or '(combiner ' + str(datatype.combiner) + ')'}")
    if datatype == MPI.PACKED or datatype == MPI.LOGICAL:
        raise Passthrough(f"datatype {name}: its values are MPI's to interpret")
    try:
        dtype = dtlib.to_numpy_dtype(datatype)
    except (ValueError, KeyError, TypeError):
        raise Passthrough(f"datatype {name} has no numpy dtype") from None
    if dtype not in ROUTABLE_DTYPES:
        raise Passthrough(f"datatype {name} ({dtype}) is not one the hand-written collectives reduce")
    return dtype


def _unpack(spec: Any) -> tuple[Any, Any, Any, Any]:
    """(buffer, count, displacement, datatype) as mpi4py's ``message_simple`` reads them."""
    if _is_buffer(spec) or not isinstance(spec, (list, tuple)):
        return spec, None, None, None
    if len(spec) == 2:
        data, second = spec
        if isinstance(second, (MPI.Datatype, str)):
            return data, None, None, second
        if isinstance(second, (list, tuple)):
            return data, *_pair(second), None
        return data, second, None, None
    if len(spec) == 3:
        data, second, datatype = spec
        if isinstance(second, (list, tuple)):
            return data, *_pair(second), datatype
        return data, second, None, datatype
    if len(spec) == 4:
        return tuple(spec)
    raise Passthrough(f"a buffer specification of {len(spec)} items (mpi4py takes 2 to 4)")


def _pair(counts: Any) -> tuple[Any, Any]:
    if len(counts) != 2:
        raise Passthrough(f"(count, displacement) of {len(counts)} items")
    return counts[0], counts[1]


def _index(what: str, value: Any) -> int:
    if value is None:
        return 0
    try:
        n = int(value.__index__())
    except (AttributeError, TypeError):
        raise Passthrough(f"{what} {value!r} is not an integer") from None
    if n < 0:
        raise Passthrough(f"negative {what} {n}")
    return n


def _is_buffer(obj: Any) -> bool:
    if isinstance(obj, np.ndarray):
        return True
    try:
        memoryview(obj).release()
    except Exception:  # TypeError, or an exporter's own refusal (BufferError, ValueError): not read here
        return False
    return True


def _memory(data: Any, writable: bool) -> tuple[np.ndarray, Any]:
    """The buffer's bytes (flat uint8) and its own dtype (or a function giving it, or None)."""
    if isinstance(data, np.ndarray) or _is_buffer(data):
        try:
            arr = data if isinstance(data, np.ndarray) else np.asarray(memoryview(data))
        except (TypeError, ValueError, BufferError):  # a format numpy cannot read: the elements' type is unknown
            raise Passthrough(f"the buffer format of {type(data).__name__} is not one numpy reads") from None
        if arr.dtype.hasobject or not arr.dtype.isnative:
            raise Passthrough(f"buffer dtype {arr.dtype} (objects or non-native byte order)")
        if writable and not arr.flags.writeable:
            raise ValueError("the receive buffer is read-only")
        if arr.flags.c_contiguous:
            flat = arr.reshape(-1)
        elif arr.flags.f_contiguous:
            flat = arr.T.reshape(-1)  # elementwise collectives do not care about the order of memory
        else:
            raise ValueError("the buffer must be contiguous (use np.ascontiguousarray)")
        return flat.view(np.uint8), arr.dtype
    if hasattr(data, "__dlpack__"):
        try:
            device = data.__dlpack_device__()[0] if hasattr(data, "__dlpack_device__") else KDL_CPU
        except Exception as e:  # whatever the exporter raises, mpi4py will meet it too
            raise Passthrough(f"__dlpack_device__ failed ({e})") from None
        if device != KDL_CPU:
            raise Passthrough(f"a DLPack buffer on device type {device}: device memory is MPI's")
        try:
            memory = MPI.buffer.frombuffer(data, readonly=not writable)
        except BufferError as e:
            raise Passthrough(f"a DLPack buffer mpi4py cannot read ({e})") from None
        return np.frombuffer(memory, np.uint8), lambda: _dlpack_dtype(data)
    if hasattr(data, "__cuda_array_interface__"):
        raise Passthrough("a CUDA array interface buffer: it may be device memory, which is MPI's")
    raise Passthrough(f"{type(data).__name__} is not a buffer mpi4py takes")


def _dlpack_dtype(data: Any) -> np.dtype:
    try:
        return np.from_dlpack(data).dtype
    except Exception as e:  # numpy names the DLPack dtypes it cannot hold in several exception types
        raise Passthrough(f"the DLPack dtype is not one numpy holds ({e})") from None
