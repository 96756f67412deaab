"""``zf.open_npy``: memory-mapped, validated ``.npy`` files.

Files written by ``np.save`` open as read-only views equal to ``np.load`` (every dtype,
Fortran order, 0-d, zero-length); every kind of broken file raises
``zf.NpyFormatError`` (a ValueError) naming the path and the field at fault.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import DTYPES, filled, require

import zerofeed as zf


def save(tmp_path: Path, name: str, array: np.ndarray) -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype(tmp_path: Path, dtype: str) -> None:
    a = filled((3, 5, 2), dtype, seed=7)
    path = save(tmp_path, f"{dtype}.npy", a)
    v = zf.open_npy(path)
    assert v.dtype == dtype and v.shape == a.shape and v.readonly
    assert v.strides == a.strides and v.is_c_contiguous
    out = np.asarray(v)
    assert not out.flags.writeable
    np.testing.assert_array_equal(out, np.load(path))
    np.testing.assert_array_equal(np.asarray(v[1, ::-2]), a[1, ::-2])
    # the data follows NumPy's 64-byte-aligned header in a page-aligned mapping
    assert v.alignment >= 64


def test_bfloat16_file(tmp_path: Path) -> None:
    ml_dtypes = require("ml_dtypes", reason="bfloat16 needs ml_dtypes")
    a = np.arange(12, dtype=np.float32).astype(ml_dtypes.bfloat16)
    path = tmp_path / "bf16.npy"
    np.save(path, a)
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        descr = np.lib.format.read_array_header_1_0(f)[2]
    # ml_dtypes saves bfloat16 as raw void ('<V2'), which names no type at all: refused,
    # naming the file and the field (a NumPy that wrote a real type would be read as it).
    assert descr == np.dtype("V2"), f"NumPy now writes bfloat16 as {descr!r}: test what open_npy does"
    with pytest.raises(zf.NpyFormatError, match="descr: '<V2' is not a supported type string") as info:
        zf.open_npy(path)
    assert str(path) in str(info.value) and info.value.argument == "path"


def test_fortran_order(tmp_path: Path) -> None:
    a = np.asfortranarray(filled((4, 3, 2), "float32"))
    path = save(tmp_path, "f.npy", a)
    v = zf.open_npy(path)
    assert v.shape == (4, 3, 2) and v.is_f_contiguous and not v.is_c_contiguous
    assert v.strides == a.strides
    np.testing.assert_array_equal(np.asarray(v), a)
    plan = zf.explain(v, "tensorflow")
    assert not plan.zero_copy and any("C-contiguous" in r for r in plan.reasons)


def test_zero_dimensional(tmp_path: Path) -> None:
    path = save(tmp_path, "s.npy", np.array(3.25, dtype=np.float64))
    v = zf.open_npy(path)
    assert v.shape == () and v.ndim == 0 and v.size == 1
    assert np.asarray(v)[()] == 3.25


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0, 2)])
def test_zero_length(tmp_path: Path, shape: tuple[int, ...]) -> None:
    path = save(tmp_path, "z.npy", np.zeros(shape, np.int16))
    v = zf.open_npy(path)
    assert v.shape == shape and v.size == 0 and v.nbytes == 0
    assert np.asarray(v).shape == shape


def test_str_and_pathlike(tmp_path: Path) -> None:
    path = save(tmp_path, "p.npy", np.arange(4, dtype=np.uint8))
    assert zf.open_npy(str(path)).shape == (4,)
    assert zf.open_npy(path).shape == (4,)


def test_keeps_the_mapping_alive(tmp_path: Path) -> None:
    path = save(tmp_path, "k.npy", np.arange(1000, dtype=np.int32))
    out = np.asarray(zf.open_npy(path)[500:])
    assert out[0] == 500 and out[-1] == 999


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        zf.open_npy(missing)


def test_directory_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises((OSError, zf.NpyFormatError), match="not a regular file") as info:
        zf.open_npy(tmp_path)
    assert str(tmp_path) in str(info.value)


# ---------------------------------------------------------------------------------------
# broken files


def header_bytes(header: str, version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy prefix with ``header`` padded as np.save pads it (64-byte aligned)."""
    length_size = 2 if version[0] == 1 else 4
    prefix = 6 + 2 + length_size
    body = header.encode()
    pad = (-(prefix + len(body) + 1)) % 64
    body = body + b" " * pad + b"\n"
    fmt = "<H" if length_size == 2 else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(body)) + body


def good_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = save(tmp_path, "good.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    return path, path.read_bytes()


def check_broken(path: Path, content: bytes, field: str) -> zf.NpyFormatError:
    path.write_bytes(content)
    with pytest.raises(zf.NpyFormatError) as info:
        zf.open_npy(path)
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert str(path) in message, message
    assert field in message, message
    assert err.argument == "path"
    return err


def test_truncated_data(tmp_path: Path) -> None:
    path, data = good_file(tmp_path)
    check_broken(tmp_path / "t.npy", data[:-5], "data length")


def test_truncated_header(tmp_path: Path) -> None:
    path, data = good_file(tmp_path)
    check_broken(tmp_path / "th.npy", data[:40], "header length")
    check_broken(tmp_path / "tiny.npy", data[:5], "magic")
    check_broken(tmp_path / "empty.npy", b"", "magic")


def test_wrong_magic(tmp_path: Path) -> None:
    path, data = good_file(tmp_path)
    check_broken(tmp_path / "m.npy", b"\x93NUMPZ" + data[6:], "magic")
    check_broken(tmp_path / "zip.npy", b"PK\x03\x04" + data[4:], "magic")


def test_unsupported_version(tmp_path: Path) -> None:
    path, data = good_file(tmp_path)
    check_broken(tmp_path / "v.npy", data[:6] + bytes([9, 0]) + data[8:], "version")


def test_lying_shape(tmp_path: Path) -> None:
    payload = np.arange(12, dtype=np.float32).tobytes()
    bigger = header_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), }")
    check_broken(tmp_path / "big.npy", bigger + payload, "data length")
    smaller = header_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }")
    err = check_broken(tmp_path / "small.npy", smaller + payload, "data length")
    assert "trailing" in str(err)


def test_negative_dimension(tmp_path: Path) -> None:
    header = header_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, -4), }")
    err = check_broken(tmp_path / "neg.npy", header + bytes(48), "shape")
    assert "negative" in str(err)


def test_trailing_bytes(tmp_path: Path) -> None:
    path, data = good_file(tmp_path)
    err = check_broken(tmp_path / "tr.npy", data + b"extra", "data length")
    assert "5 trailing bytes" in str(err)


def test_overflowing_shape(tmp_path: Path) -> None:
    header = header_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }")
    check_broken(tmp_path / "of.npy", header, "shape")


@pytest.mark.parametrize(
    ("descr", "word"),
    [
        ("'>f4'", "big-endian"),
        ("'|O'", "object"),
        ("[('a', '<i4')]", "structured"),
        ("'<U3'", "descr"),
    ],
)
def test_unsupported_descr(tmp_path: Path, descr: str, word: str) -> None:
    header = header_bytes(f"{{'descr': {descr}, 'fortran_order': False, 'shape': (2,), }}")
    err = check_broken(tmp_path / "d.npy", header + bytes(64), "descr")
    assert word in str(err)


def test_real_unsupported_files(tmp_path: Path) -> None:
    """The same refusals for files NumPy itself wrote."""
    cases = {
        "be.npy": (np.arange(3, dtype=">i4"), "big-endian"),
        "obj.npy": (np.array([1, "a"], dtype=object), "object"),
        "rec.npy": (np.zeros(3, dtype=[("x", "<f4"), ("y", "<i2")]), "structured"),
    }
    for name, (array, word) in cases.items():
        path = tmp_path / name
        np.save(path, array, allow_pickle=True)
        with pytest.raises(zf.NpyFormatError, match=word) as info:
            zf.open_npy(path)
        assert str(path) in str(info.value) and "descr" in str(info.value)


def test_bad_header_syntax(tmp_path: Path) -> None:
    cases = [
        ("{'descr': '<f4', 'shape': (2,), }", "missing"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", "unknown key"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}", "once"),
        ("{'descr': '<f4', 'fortran_order': 'no', 'shape': (2,), }", "fortran_order"),
        ("['descr', '<f4']", "header dict"),
    ]
    for i, (header, word) in enumerate(cases):
        err = check_broken(tmp_path / f"s{i}.npy", header_bytes(header) + bytes(8), "")
        assert word in str(err), str(err)
