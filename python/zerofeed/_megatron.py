"""Megatron indexed datasets (``prefix.bin`` + ``prefix.idx``, megatron-core's ``MMIDIDX``
format), validated field by field before anything is mapped.

The ``.idx`` layout (little-endian): the magic ``MMIDIDX`` and two NUL bytes, a u64 version (1),
a u8 dtype code, a u64 sequence count ``S``, a u64 ``document_count`` ``D`` (the length of
the document index, one more than the number of documents), then ``int32 lengths[S]``,
``int64 pointers[S]`` (byte offsets in ``.bin``), ``int64 document_indices[D]`` (the first
sequence of each document, ending with ``S``), and, for multimodal datasets only,
``int8 modes[S]``. The ``.idx`` gives the dtype and the document boundaries; the ``.bin``
holds the tokens and nothing else.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from .errors import DTypeError, FileMissingError, LayoutError, SourceIOError

MAGIC = b"MMIDIDX\x00\x00"
_HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequences, document index length
# megatron-core's DType enum; the float codes exist there but are not tokens.
_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 8: "uint16"}
_FLOAT_CODES = {6: "float64", 7: "float32"}


def _fail(path: str, message: str) -> LayoutError:
    return LayoutError(f"{path}: {message}; is it a Megatron .idx written by megatron-core?", "paths")


def read_index(prefix: str, bin_size: int | None = None) -> tuple[str, np.ndarray]:
    """``(dtype, document start offsets in tokens)`` of Megatron dataset ``prefix``.

    ``bin_size`` is the ``.bin`` file's size in bytes (stat-ed when None); the index must
    describe exactly that many bytes.

    Example:
        >>> import numpy as np, os, struct, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "d")
        >>> idx = MAGIC + struct.pack("<QBQQ", 1, 8, 2, 2)
        >>> idx += np.array([3, 2], "<i4").tobytes() + np.array([0, 6], "<i8").tobytes()
        >>> idx += np.array([0, 2], "<i8").tobytes()
        >>> _ = open(p + ".idx", "wb").write(idx)
        >>> read_index(p, bin_size=10)
        ('uint16', array([0]))

    """
    path = prefix + ".idx"
    try:
        with open(path, "rb") as f:
            header = f.read(_HEADER.size)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError as err:
        raise FileMissingError(
            f"{path}: no such file (format='megatron' needs prefix.idx and prefix.bin)", "paths"
        ) from err
    except OSError as err:
        raise SourceIOError(f"{path}: cannot read: {err}", "paths") from err
    if len(header) < _HEADER.size:
        raise _fail(path, f"{size} bytes is shorter than the {_HEADER.size}-byte header")
    magic, version, code, sequences, doc_len = _HEADER.unpack(header)
    if magic != MAGIC:
        raise _fail(path, f"magic {magic!r} is not {MAGIC!r}")
    if version != 1:
        raise _fail(path, f"version {version} is not supported (only 1)")
    if code in _FLOAT_CODES:
        raise DTypeError(f"{path}: dtype code {code} is {_FLOAT_CODES[code]}, not a token type", "paths")
    if code not in _DTYPES:
        raise _fail(path, f"unknown dtype code {code} (known: {sorted(_DTYPES) + sorted(_FLOAT_CODES)})")
    dtype = _DTYPES[code]
    body = _HEADER.size + 12 * sequences + 8 * doc_len  # Python ints: no overflow
    if size not in (body, body + sequences):
        raise _fail(
            path,
            f"the header counts {sequences} sequences and {doc_len} document indices ({body} bytes) "
            f"but the file has {size} bytes",
        )
    if doc_len < 1:
        raise _fail(path, "the document index is empty; it must at least hold 0")
    lengths = np.fromfile(path, "<i4", sequences, offset=_HEADER.size).astype(np.int64)
    pointers = np.fromfile(path, "<i8", sequences, offset=_HEADER.size + 4 * sequences)
    documents = np.fromfile(path, "<i8", doc_len, offset=_HEADER.size + 12 * sequences)
    if (lengths < 0).any():
        raise _fail(path, f"sequence {int(np.argmax(lengths < 0))} has a negative length")
    item = np.dtype(dtype).itemsize
    expected = np.concatenate([[0], np.cumsum(lengths * item)])  # int64: bounded by the .idx size check
    bad = np.flatnonzero(pointers != expected[:-1])
    if bad.size:
        i = int(bad[0])
        raise _fail(
            path,
            f"sequence {i} points at byte {int(pointers[i])}, not {int(expected[i])} "
            "(sequences out of order)",
        )
    if documents[0] != 0 or documents[-1] != sequences or (np.diff(documents) < 0).any():
        raise _fail(path, f"document indices must rise from 0 to {sequences} (the sequence count)")
    if bin_size is None:
        try:
            bin_size = os.stat(prefix + ".bin").st_size
        except FileNotFoundError as err:
            raise FileMissingError(f"{prefix}.bin: no such file", "paths") from err
    if int(expected[-1]) != bin_size:
        raise _fail(path, f"the sequences hold {int(expected[-1])} bytes but {prefix}.bin has {bin_size}")
    starts = np.unique(expected[documents[:-1]] // item)  # empty documents share a start
    return dtype, starts[starts < bin_size // item]
