"""safetensors files without torch: what wnpass writes, the safetensors library reads back
bit for bit (every dtype, metadata, alignment); what it reads are views of the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wnpass.checkpoint.tensorfile import DTYPE_CODES, SafetensorsFile, write

RNG = np.random.default_rng(0)
ARRAYS = {  # odd sizes first: written as given, a float64 after them would be misaligned
    "flags": np.array([True, False, True]),
    "bytes": RNG.integers(0, 255, 5).astype(np.uint8),
    "half": RNG.standard_normal((3, 2)).astype(np.float16),
    "brain": RNG.standard_normal((2, 3)).astype(ml_dtypes.bfloat16),
    "eight": RNG.standard_normal(7).astype(ml_dtypes.float8_e4m3fn),
    "single": RNG.standard_normal((4, 1, 3)).astype(np.float32),
    "double": RNG.standard_normal(3),
    "count": np.arange(3, dtype=np.int64),
    "scalar": np.array(2.5, np.float32),
    "empty": np.zeros((0, 4), np.float32),
}


def _write(path: Path, metadata: dict[str, str] | None = None) -> None:
    tensors = [(k, DTYPE_CODES[a.dtype.name], a.shape, a) for k, a in ARRAYS.items()]
    write(path, tensors, metadata)


def test_the_library_reads_back_every_dtype_bit_for_bit(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    _write(path, {"format": "pt", "note": "é"})
    loaded = load_file(str(path))
    assert set(loaded) == set(ARRAYS)
    for key, array in ARRAYS.items():
        tensor = loaded[key]
        assert str(tensor.dtype).removeprefix("torch.") == array.dtype.name.replace("bool_", "")
        assert tuple(tensor.shape) == array.shape
        assert tensor.reshape(-1).view(torch.uint8).numpy().tobytes() == array.tobytes()
    with safe_open(str(path), framework="numpy") as handle:
        assert handle.metadata() == {"format": "pt", "note": "é"}


def test_header_is_padded_and_every_tensor_aligned_to_its_width(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    _write(path)
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    assert (8 + size) % 8 == 0
    header = json.loads(data[8 : 8 + size])
    assert "__metadata__" not in header
    for key, array in ARRAYS.items():
        begin, end = header[key]["data_offsets"]
        assert begin % array.dtype.itemsize == 0 and end - begin == array.nbytes
    assert (
        max(end for _, end in (h["data_offsets"] for h in header.values())) == len(data) - 8 - size
    )


# every dtype code of the safetensors library, with its bits per element (the library refuses
# a tensor whose byte count is not what these imply, so the test checks them too)
LIBRARY_BITS = {
    **dict.fromkeys(["F64", "I64", "U64", "C64"], 64),
    **dict.fromkeys(["F32", "I32", "U32"], 32),
    **dict.fromkeys(["F16", "BF16", "I16", "U16"], 16),
    **dict.fromkeys(["U8", "I8", "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0"], 8),
    **dict.fromkeys(["F8_E4M3FNUZ", "F8_E5M2FNUZ"], 8),
    **dict.fromkeys(["F6_E2M3", "F6_E3M2"], 6),
    "F4": 4,
}


@pytest.mark.parametrize("code", sorted(LIBRARY_BITS))
def test_every_library_dtype_is_aligned_to_its_width(tmp_path: Path, code: str) -> None:
    """A tensor of any dtype the library knows (complex64 too, which numpy reads but wnpass
    does not fold) starts at a multiple of its width after a 1-byte tensor, as the library
    places it; a packed sub-byte dtype at any byte."""
    path = tmp_path / "t.safetensors"
    bits = LIBRARY_BITS[code]
    data = np.arange(bits, dtype=np.uint8)  # 8 elements
    write(path, [("flag", "BOOL", (1,), np.ones(1, np.uint8)), ("t", code, (8,), data)], None)
    with safe_open(str(path), framework="numpy"):  # the library accepts the sizes
        pass
    stored = SafetensorsFile(path)
    entry = stored.entries["t"]
    assert entry.end - entry.begin == bits and entry.begin % max(bits // 8, 1) == 0
    assert stored.raw("t").tobytes() == data.tobytes()


def test_reading_gives_read_only_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(path))
    stored = SafetensorsFile(path)
    array = stored.array("w")
    assert array.dtype == np.float32 and array.shape == (2, 3) and not array.flags.writeable
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert stored.entries["w"].dtype == "float32" and stored.keys() == ["w"]
    tensor = stored.torch("w")
    tensor += 1  # copy-on-write: the file is not written through the mapping
    assert load_file(str(path))["w"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_bfloat16_and_float8_go_to_torch_by_their_bits(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    _write(path)
    stored, loaded = SafetensorsFile(path), load_file(str(path))
    for key in ("brain", "eight"):
        tensor = stored.torch(key)
        assert tensor.dtype == loaded[key].dtype
        assert torch.equal(tensor.view(torch.uint8), loaded[key].view(torch.uint8))
        assert stored.array(key).tobytes() == ARRAYS[key].tobytes()


def test_a_file_changed_after_the_library_checked_it_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process rewrites the file between the library's check and the mapping: a header
    whose offsets leave the data is one line, not a view past the end of the file."""
    import safetensors

    from wnpass.checkpoint.reading import open_checkpoint
    from wnpass.errors import InvalidModelError

    path = tmp_path / "t.safetensors"
    save_file({"w": torch.zeros(4)}, str(path))
    checked = safe_open(str(path), framework="numpy")  # what the library saw
    data = path.read_bytes()
    path.write_bytes(data[:-8])  # then the file loses its last bytes
    monkeypatch.setattr(safetensors, "safe_open", lambda *args, **kwargs: checked)
    with pytest.raises(InvalidModelError, match=r"not a readable safetensors file: .*changed"):
        open_checkpoint(path)


METADATA = {
    key: f"value of {key}" for key in ("zeta", "format", "b", "epoch", "a", "y", "step", "c")
}


def test_metadata_is_read_in_the_files_order(tmp_path: Path) -> None:
    """The library hands the metadata over in its hash order, which changes from process to
    process; it is read in the header's order instead (so that an output written from it is
    the same every time)."""
    path = tmp_path / "t.safetensors"
    _write(path, METADATA)
    assert list(SafetensorsFile(path).metadata() or {}) == list(METADATA)
    _write(path, {})
    assert SafetensorsFile(path).metadata() == {}
    _write(path, None)
    assert SafetensorsFile(path).metadata() is None


def test_tensors_are_laid_out_by_name_within_a_width_as_the_library_lays_them_out(
    tmp_path: Path,
) -> None:
    """Given in any order (a folded key where its pair's first key was), the file is the
    library's byte for byte where no two dtypes share a width: widest first, then by name."""
    arrays: dict[str, np.ndarray] = {
        "dec.weight2": RNG.standard_normal(2).astype(np.float32),
        "count": np.arange(3, dtype=np.int64),
        "dec.weight": RNG.standard_normal((4, 3)).astype(np.float32),
        "B": RNG.standard_normal(3).astype(np.float16),
        "a": RNG.standard_normal(5).astype(np.float32),
    }
    write(
        path := tmp_path / "t.safetensors",
        [(k, DTYPE_CODES[a.dtype.name], a.shape, a) for k, a in arrays.items()],
        {"format": "pt"},
    )
    save_file(
        {k: torch.from_numpy(a) for k, a in arrays.items()},
        str(library := tmp_path / "library.safetensors"),
        metadata={"format": "pt"},
    )
    assert path.read_bytes() == library.read_bytes()


def test_names_and_metadata_are_written_in_utf_8_as_the_library_writes_them(
    tmp_path: Path,
) -> None:
    """t44: wnpass escaped every character beyond ASCII (``r\\u00e9sum\\u00e9.weight``, a
    112-byte header) where the library writes it in UTF-8 as it is (104 bytes): a file that
    reads the same, not the library's byte for byte as the documentation said. JSON's own
    escapes (a quote, a backslash, control characters) are the library's too; DEL is not
    escaped by either."""
    names = ["résumé.weight", "日本.bias", "emoji🙂", "del\x7f", "nl\n", "c\x01", 'q"\\']
    arrays = {name: RNG.standard_normal(i + 1).astype(np.float32) for i, name in enumerate(names)}
    metadata = {"note": "café ☕"}
    write(
        path := tmp_path / "t.safetensors",
        [(k, DTYPE_CODES[a.dtype.name], a.shape, a) for k, a in arrays.items()],
        metadata,
    )
    save_file(
        {k: torch.from_numpy(a) for k, a in arrays.items()},
        str(library := tmp_path / "library.safetensors"),
        metadata=metadata,
    )
    assert path.read_bytes() == library.read_bytes()
    assert "résumé.weight".encode() in path.read_bytes()
