"""Inputs from a model's signature, from --shape, and from .npz files; clear errors."""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx_ir as ir
import pytest

from tests.helpers import onnx_model
from wnpass.errors import InvalidArgumentError, UsageError
from wnpass.verify import inputs

TEXT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[N, 4] x, float16[N, T] h, int64[N, T] ids, int32[3] k, bool[N] m)
        => (float[N, 4] y) {
        y = Identity(x)
    }
"""


def specs() -> list[inputs.InputSpec]:
    return inputs.signature(ir.serde.deserialize_model(onnx_model(TEXT)))


def test_every_dtype_is_synthesized_seeded_with_stated_defaults() -> None:
    feeds, notes = inputs.synthesize(specs())
    assert {k: (v.dtype.name, v.shape) for k, v in feeds.items()} == {
        "x": ("float32", (1, 4)),
        "h": ("float16", (1, inputs.DEFAULT_DYNAMIC_DIM)),
        "ids": ("int64", (1, inputs.DEFAULT_DYNAMIC_DIM)),
        "k": ("int32", (3,)),
        "m": ("bool", (1,)),
    }
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < inputs.INT_HIGH
    assert "h[1] (T) = 32" in notes and f"integer inputs drawn from [0, {inputs.INT_HIGH})" in notes
    drawn = bool(feeds["m"][0])  # one bool: an If's condition takes one branch (t337)
    assert (
        f"m is one bool, drawn {drawn}: what it decides (an If's branch) runs one way only; "
        f"give --inputs with {not drawn} too" in notes
    )
    again, _ = inputs.synthesize(specs())
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)


def test_shape_option_sets_dynamic_dimensions_and_checks_fixed_ones() -> None:
    shapes = inputs.parse_shapes(["x=2,4", "h=2x7"])
    feeds, _ = inputs.synthesize(specs(), shapes)
    assert feeds["x"].shape == (2, 4) and feeds["h"].shape == (2, 7)
    with pytest.raises(InvalidArgumentError, match="axis 1 is fixed at 4, got 5"):
        inputs.synthesize(specs(), {"x": [2, 5]})
    with pytest.raises(InvalidArgumentError, match="no input of that name"):
        inputs.synthesize(specs(), {"nope": [1]})
    with pytest.raises(InvalidArgumentError, match="expected NAME=DIMS"):
        inputs.parse_shapes(["x:1,2"])
    with pytest.raises(InvalidArgumentError, match="expected NAME=DIMS"):
        inputs.parse_shapes(["x=1,a"])
    # other scripts' digits are no size (t212: x=\u0663 ran x[3]); a size of 5000 digits
    # was an internal error (int() refuses it)
    with pytest.raises(InvalidArgumentError, match="expected NAME=DIMS"):
        inputs.parse_shapes(["x=\u0663"])
    with pytest.raises(InvalidArgumentError, match="a size of 5000 digits, beyond any input"):
        inputs.parse_shapes([f"x=2,{'9' * 5000}"])
    assert inputs.parse_shapes([f"x={'0' * 5000}1,64"]) == {"x": [1, 64]}  # int() refused it


def test_a_shape_names_an_input_whose_name_holds_an_equals_sign() -> None:
    """``a=b=1,2`` is the input ``a=b`` (t111: refused, as if no name could hold "=")."""
    assert inputs.parse_shapes(["a=b=1,2", "=x=3"]) == {"a=b": [1, 2], "=x": [3]}


def test_a_negative_declared_size_is_dynamic_as_onnx_runtime_reads_it() -> None:
    """A dimension declared as -1 (ONNX's checker accepts it) is dynamic: synthesized at the
    default size, and an inputs file or --shape may give it any size."""
    model = onnx_model(TEXT)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -1
    (x, *_) = inputs.signature(ir.serde.deserialize_model(model))
    assert x.shape == ["N", None]
    feeds, _ = inputs.synthesize([x])
    assert feeds["x"].shape == (1, inputs.DEFAULT_DYNAMIC_DIM)
    given, _ = inputs.synthesize([x], {"x": [2, 3]})
    assert given["x"].shape == (2, 3)


MATMUL = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[B, K] x, float[K, 4] w, float[M] m) => (float[B, 4] y) { y = MatMul(x, w) }
"""


def test_a_symbol_has_one_size_in_every_input() -> None:
    """x[B, K] by w[K, 4]: both K are one size, so that the model runs."""
    matmul = inputs.signature(ir.serde.deserialize_model(onnx_model(MATMUL)))
    feeds, notes = inputs.synthesize(matmul)
    assert {k: v.shape for k, v in feeds.items()} == {"x": (1, 32), "w": (32, 4), "m": (1,)}
    assert notes == ["x[0] (B) = 1", "x[1] (K) = 32", "w[0] (K) = 32, as x[1]", "m[0] (M) = 1"]
    feeds, notes = inputs.synthesize(matmul, {"w": [5, 4]})
    assert feeds["x"].shape == (1, 5) and "x[1] (K) = 5, as w[0]" in notes


def test_given_shapes_that_disagree_on_a_symbol_are_refused() -> None:
    matmul = inputs.signature(ir.serde.deserialize_model(onnx_model(MATMUL)))
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.synthesize(matmul, {"x": [1, 5], "w": [6, 4]})
    assert str(raised.value) == "shapes w[0] = 6 but x[1] = 5, and both are K"


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_inputs_are_checked_against_the_model(tmp_path: Path) -> None:
    good: dict[str, np.ndarray] = {
        "x": np.zeros((2, 4), np.float32),
        "h": np.zeros((2, 3), np.float16),
        "ids": np.zeros((2, 3), np.int64),
        "k": np.zeros(3, np.int32),
        "m": np.zeros(2, bool),
    }
    feeds = inputs.load_npz(_npz(tmp_path / "ok.npz", good), specs())
    assert feeds["x"].shape == (2, 4)
    cases: dict[str, dict[str, np.ndarray]] = {
        "missing input 'm'": {k: v for k, v in good.items() if k != "m"},
        "has no input 'z'": {**good, "z": np.zeros(1)},
        # a dynamic axis by its name, not a Python list's repr (``['N', 4]``)
        "x has shape [2, 5], the model wants [N, 4]": {**good, "x": np.zeros((2, 5), np.float32)},
        "k is int64": {**good, "k": np.zeros(3, np.int64)},
    }
    for message, arrays in cases.items():
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            inputs.load_npz(_npz(tmp_path / "bad.npz", arrays), specs())
    with pytest.raises(InvalidArgumentError, match="no such file"):
        inputs.load_npz(tmp_path / "absent.npz", specs())
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InvalidArgumentError, match=r"not a readable \.npz"):
        inputs.load_npz(tmp_path / "junk.npz", specs())


def test_a_cut_off_npz_is_one_line(tmp_path: Path) -> None:
    whole = _npz(tmp_path / "whole.npz", {"x": np.zeros((2, 4), np.float32)})
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole.read_bytes()[:-30])
    with pytest.raises(InvalidArgumentError, match=r"cut\.npz: not a readable \.npz file \("):
        inputs.load_npz(cut, specs())


def test_a_npy_file_is_refused_saying_what_inputs_takes(tmp_path: Path) -> None:
    """It said "not a readable .npz file (TypeError: 'numpy.ndarray' object does not support
    the context manager protocol)"."""
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"x\.npy: one array without a name \(a \.npy"):
        inputs.load_npz(tmp_path / "x.npy", specs())


def test_a_fifo_or_a_device_is_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "inputs.npz"
    os.mkfifo(fifo)  # opening it to read would block until a writer comes: never here
    raised: list[BaseException] = []

    def load() -> None:
        try:
            inputs.load_npz(fifo, specs())
        except BaseException as error:
            raised.append(error)

    reader = threading.Thread(target=load, daemon=True)  # a blocked open fails, not hangs
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "load_npz opened the FIFO and blocked"
    assert isinstance(raised[0], InvalidArgumentError), raised
    assert re.search(r"inputs\.npz: is a FIFO, not a regular file$", str(raised[0]))
    with pytest.raises(
        InvalidArgumentError, match="/dev/zero: is a character device, not a regular file"
    ):
        inputs.load_npz(Path("/dev/zero"), specs())


@pytest.mark.parametrize("bits", [False, True], ids=["ml_dtypes", "bit-patterns"])
@pytest.mark.parametrize(
    ("onnx_type", "dtype"),
    [("bfloat16", ml_dtypes.bfloat16), ("float8e4m3fn", ml_dtypes.float8_e4m3fn)],
)
def test_an_input_of_a_type_numpy_lacks_is_read_from_its_bits(
    onnx_type: str, dtype: type, bits: bool, tmp_path: Path
) -> None:
    """numpy saves an ml_dtypes array as void of its size; unsigned bit patterns do too."""
    text = f"""
        <ir_version: 10, opset_import: ["" : 21]>
        agraph ({onnx_type}[3] x) => (float[3] y) {{ y = Cast <to = 1> (x) }}
    """
    spec = inputs.signature(ir.serde.deserialize_model(onnx_model(text)))
    x: np.ndarray = np.array([1.5, -2.0, 3.0], dtype)
    path = _npz(tmp_path / "x.npz", {"x": x.view(f"u{x.itemsize}") if bits else x})
    loaded = inputs.load_npz(path, spec)["x"]
    assert loaded.dtype == dtype and np.array_equal(loaded, x)


def test_a_packed_input_is_refused_before_anything_runs() -> None:
    """ONNX Runtime's Python API cannot be given int4 (two to a byte) from numpy."""
    text = """
        <ir_version: 10, opset_import: ["" : 21]>
        agraph (int4[3] x) => (float[3] y) { y = Cast <to = 1> (x) }
    """
    with pytest.raises(UsageError, match=r"^input 'x' is int4: ONNX Runtime's Python API cannot"):
        inputs.signature(ir.serde.deserialize_model(onnx_model(text)))


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def test_a_member_that_is_not_an_npy_array_is_one_line(tmp_path: Path) -> None:
    """numpy hands such a member back as its raw bytes."""
    path = _zip(tmp_path / "raw.npz", {"x.npy": b"not an npy array"})
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.load_npz(path, specs())
    assert str(raised.value) == f"inputs {path}: 'x' is not a .npy array"


def test_an_input_held_twice_is_refused_as_ambiguous(tmp_path: Path) -> None:
    """Members x and x.npy are both x to numpy: one would be fed, the other dropped."""
    x = _npy(np.zeros((2, 4), np.float32))
    path = _zip(tmp_path / "twice.npz", {"x.npy": x, "x": x})
    with pytest.raises(InvalidArgumentError, match=r"holds 'x' twice \(members x\.npy and x\)"):
        inputs.load_npz(path, specs())


def test_one_member_name_twice_in_the_zip_is_refused(tmp_path: Path) -> None:
    x = _npy(np.zeros((2, 4), np.float32))
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it writes
        archive.writestr("x.npy", x)
        archive.writestr("x.npy", x)
    message = r"holds 'x' twice \(members x\.npy and x\.npy\); refused$"
    with pytest.raises(InvalidArgumentError, match=message):
        inputs.load_npz(tmp_path / "twice.npz", specs())


TWO_INPUTS = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2] x, float[2] "x.npy") => (float[2] y) { y = Sub(x, "x.npy") }
"""


def test_an_input_named_like_a_member_gets_its_own_array(tmp_path: Path) -> None:
    """``numpy.savez(p, x=a, **{"x.npy": b})`` holds members ``x.npy`` and ``x.npy.npy``;
    numpy's ``load(p)["x.npy"]`` is member ``x.npy``, so input ``x.npy`` was fed ``a``."""
    spec = inputs.signature(ir.serde.deserialize_model(onnx_model(TWO_INPUTS)))
    a, b = np.ones(2, np.float32), np.full(2, 2.0, np.float32)
    arrays: dict[str, Any] = {"x": a, "x.npy": b}
    np.savez(tmp_path / "in.npz", **arrays)
    loaded = inputs.load_npz(tmp_path / "in.npz", spec)
    assert np.array_equal(loaded["x"], a) and np.array_equal(loaded["x.npy"], b)


def test_a_declared_shape_is_checked_before_the_array_is_read(tmp_path: Path) -> None:
    """A 1 MB file that declared shape (5, 5e7) was read whole (1 GB) before its shape was
    refused: the header is checked first. This member declares 1 GB and holds none of it."""
    x, header = np.zeros(2, np.float32), io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2, 250_000_000)}
    )
    path = _zip(tmp_path / "bomb.npz", {"x.npy": header.getvalue(), "x.npy.npy": _npy(x)})
    spec = inputs.signature(ir.serde.deserialize_model(onnx_model(TWO_INPUTS)))
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.load_npz(path, spec)
    assert str(raised.value).endswith("x has shape [2, 250000000], the model wants [2]")


STRING_INPUT = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (string[2] x) => (string[2] y) { y = Identity(x) }
"""


def test_a_string_input_is_read_as_onnx_runtime_takes_it(tmp_path: Path) -> None:
    """A str array (<U) is fed; bytes (|S, which ONNX Runtime misreads) and object arrays
    (which need pickle) are refused, each saying what to save instead."""
    spec = inputs.signature(ir.serde.deserialize_model(onnx_model(STRING_INPUT)))
    x = np.array(["a", "bé"])
    loaded = inputs.load_npz(_npz(tmp_path / "u.npz", {"x": x}), spec)["x"]
    assert np.array_equal(loaded, x)
    with pytest.raises(InvalidArgumentError, match=r"x is \|S1, the model wants string \(a numpy"):
        inputs.load_npz(_npz(tmp_path / "s.npz", {"x": np.array([b"a", b"b"])}), spec)
    pickled = {"x": np.array(["a", "b"], object)}
    with pytest.raises(InvalidArgumentError, match="object array needs pickle, which is never run"):
        inputs.load_npz(_npz(tmp_path / "o.npz", pickled), spec)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array(["a", "b"], ">U1"), "x is >U1, the model wants string (a numpy str array, <U)"),
        (np.array([0x110000, 0x61], np.uint32).view("<U1"), "x holds U+110000, which is no"),
        (np.array([[0x61, 0xD800], [0x61, 0]], np.uint32).view("<U2")[:, 0], "x holds U+D800"),
    ],
    ids=["other byte order", "past U+10FFFF", "a surrogate"],
)
def test_a_string_input_onnx_runtime_would_crash_on_is_refused(
    array: np.ndarray, message: str, tmp_path: Path
) -> None:
    """ONNX Runtime encodes a str array's code points as UTF-8: one past U+10FFFF (also a
    character of the other byte order, its bytes swapped) crashed the process (exit 139, the
    staging of fold --verify left, t211)."""
    spec = inputs.signature(ir.serde.deserialize_model(onnx_model(STRING_INPUT)))
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        inputs.load_npz(_npz(tmp_path / "x.npz", {"x": array}), spec)


def test_a_bool_input_of_other_bytes_than_0_and_1_is_refused(tmp_path: Path) -> None:
    """A byte array viewed as bool passed every check, and a model casting it and one
    selecting with it were "not equivalent" (255 against 1, t211)."""
    spec = [inputs.InputSpec("m", ir.DataType.BOOL, [4])]
    ok = inputs.load_npz(_npz(tmp_path / "ok.npz", {"m": np.array([1, 0, 1, 1], bool)}), spec)
    assert ok["m"].tolist() == [True, False, True, True]
    held = np.array([1, 0, 2, 255], np.uint8).view(bool)
    with pytest.raises(InvalidArgumentError, match="m is a bool array holding the byte 255"):
        inputs.load_npz(_npz(tmp_path / "bad.npz", {"m": held}), spec)


def test_an_inputs_file_that_disagrees_on_a_symbol_is_refused(tmp_path: Path) -> None:
    """x[B, K] by w[K, 4] with x's K 5 and w's 6: the inputs file is to blame, as --shape is
    for shapes that disagree, before anything runs (ONNX Runtime's error named the model)."""
    matmul = inputs.signature(ir.serde.deserialize_model(onnx_model(MATMUL)))
    arrays = {"x": np.zeros((1, 5), np.float32), "m": np.zeros(3, np.float32)}
    path = _npz(tmp_path / "in.npz", {**arrays, "w": np.zeros((6, 4), np.float32)})
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.load_npz(path, matmul)
    assert raised.value.parameter == "inputs"
    assert str(raised.value) == f"inputs {path}: w[0] = 6 but x[1] = 5, and both are K"
    path = _npz(tmp_path / "ok.npz", {**arrays, "w": np.zeros((5, 4), np.float32)})
    assert inputs.load_npz(path, matmul)["w"].shape == (5, 4)


def test_a_sequence_input_is_refused_not_fed_a_tensor(tmp_path: Path) -> None:
    """ONNX Runtime takes a list for it, which wnpass neither synthesizes nor reads from an
    .npz: a tensor synthesized for it failed in ONNX Runtime, blamed on the model."""
    model = ir.serde.deserialize_model(
        onnx_model(
            """
            <ir_version: 8, opset_import: ["" : 17]>
            agraph (seq(float[2]) s, float[2] x) => (float[2] y) { y = SequenceAt(s, i) }
            """,
            i=np.array(0, np.int64),
        )
    )
    with pytest.raises(UsageError) as raised:
        inputs.signature(model, tmp_path / "m.onnx")
    assert str(raised.value) == (
        f"{tmp_path / 'm.onnx'}: input 's' is of type seq(tensor(float)): wnpass feeds tensor "
        "inputs only, synthesized or from an inputs file, and cannot make this one"
    )


def test_an_input_given_twice_in_shapes_is_refused() -> None:
    """--shape x=3 --shape x=5 used 5 without a word: which one was meant is not known."""
    assert inputs.parse_shapes(["x=3", "y=5"]) == {"x": [3], "y": [5]}
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.parse_shapes(["x=3", "x=5"])
    assert str(raised.value) == "shapes 'x=5': x is given twice; give each input once"


def _header(version: tuple[int, int], descr: str, shape: tuple[int, ...]) -> bytes:
    """A .npy header alone (the format's layout: magic, version, length, a padded dict): it
    declares an array and holds none of its data."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape})
    width = 2 if version == (1, 0) else 4
    start = len(np.lib.format.MAGIC_PREFIX) + 2 + width
    text += " " * (-(start + len(text) + 1) % 64) + "\n"
    length = len(text).to_bytes(width, "little")
    return np.lib.format.MAGIC_PREFIX + bytes(version) + length + text.encode("latin1")


@pytest.mark.parametrize(
    ("version", "descr", "shape", "message"),
    [
        ((3, 0), "<f4", (2, 4), "'x' is a .npy of format 3.0 (numpy writes it for structured"),
        ((1, 0), "|V134217728", (2, 4), "x is |V134217728, the model wants float"),
        ((1, 0), "<f4", (2**29, 4), "x has shape [536870912, 4], the model wants [2, 4]"),
    ],
    ids=["version-3", "dtype", "shape"],
)
def test_a_header_is_refused_before_its_data_is_read(
    tmp_path: Path, version: tuple[int, int], descr: str, shape: tuple[int, ...], message: str
) -> None:
    """A version 3.0 header and a dtype were checked only after the array was read: 1 MB of
    compressed .npz took 1.1-1.4 GB before its refusal. These hold no data at all."""
    spec = [inputs.InputSpec("x", ir.DataType.FLOAT, [2, 4])]
    path = _zip(tmp_path / "bomb.npz", {"x.npy": _header(version, descr, shape)})
    with pytest.raises(InvalidArgumentError) as raised:
        inputs.load_npz(path, spec)
    assert message in str(raised.value)


def test_an_input_past_the_size_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dynamic axis let a 1 MB compressed .npz declare 1 GiB, which the check then held
    many times over (killed by the kernel, no message): the synthesized inputs' limit holds."""
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 400)
    spec = [inputs.InputSpec("x", ir.DataType.FLOAT, ["N", 4])]
    path = _zip(tmp_path / "big.npz", {"x.npy": _header((1, 0), "<f4", (26, 4))})
    with pytest.raises(InvalidArgumentError, match=r"x holds 416 bytes, more than the 400"):
        inputs.load_npz(path, spec)
    # bytes, not elements: one string of 1e8 characters is 400 MB in one element, and each
    # element what ONNX Runtime holds for it beside (t211: 5 million empty strings, an array of
    # no bytes, held 695 MB)
    monkeypatch.setattr(inputs, "STRING_ELEMENT_BYTES", 100)
    strings = [inputs.InputSpec("s", ir.DataType.STRING, ["N"])]
    path = _zip(tmp_path / "str.npz", {"s.npy": _header((1, 0), "<U76", (1,))})
    with pytest.raises(InvalidArgumentError, match=r"s holds 404 bytes, more than the 400"):
        inputs.load_npz(path, strings)
    path = _zip(tmp_path / "empty.npz", {"s.npy": _header((1, 0), "<U0", (5,))})
    with pytest.raises(InvalidArgumentError, match=r"s holds 500 bytes, more than the 400"):
        inputs.load_npz(path, strings)
    with pytest.raises(InvalidArgumentError, match=r"x\[101, 4\]: 1616 bytes is more than"):
        inputs.synthesize(spec, {"x": [101, 4]})


# ids[1, 64] read by the ops below; tables e16[16, 4], e3[3, 4] and e4[4, 16] (initializers),
# w[16, 4] computed, its shape declared (as the dynamo exporter writes it; TorchScript's
# declares none), p declared of 16 rows and columns not known
INDEXED = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (int64[1, 64] ids) => (float[1, 64, 4] y) <float[16, 4] w, float[16, d] p> {{
        {body}
    }}
"""
INDEX_CASES = {
    "gather": ("y = Gather(e16, ids)", 16),
    "through layout, a cast and a mask": (
        "i = Cast <to = 6> (ids)\n r = Reshape(i, shape)\n m = Equal(ids, zero)\n"
        " g = Gather(e16, r)\n y = Identity(g)",
        16,
    ),
    "the smaller of two tables": ("a = Gather(e16, ids)\n b = Gather(e3, ids)\n y = Add(a, b)", 3),
    "a computed table of declared rows": ("w = Mul(e16, e16)\n y = Gather(w, ids)", 16),
    "a computed table of rows not declared": (
        "n = ReduceL2 <axes = [1]> (e16)\n t = Div(e16, n)\n y = Gather(t, ids)",
        16,
    ),
    "a table of declared rows, its columns not": (
        "p = Transpose <perm = [1, 0]> (e4)\n y = Gather(p, ids)",
        16,
    ),
    "a table of unknown rows": (
        "t = Transpose <perm = [1, 0]> (e16)\n u = Transpose <perm = [1, 0]> (t)\n"
        " y = Gather(u, ids)",
        None,
    ),
    "a gather on axis 1": (
        "t = Transpose <perm = [1, 0]> (e16)\n g = Gather <axis = 1> (t, ids)\n"
        " y = Transpose <perm = [1, 2, 0]> (g)",
        None,
    ),
    "a size besides": ("y = Gather(e16, ids)\n s = ConstantOfShape(ids)", None),
    "a float cast besides": ("y = Gather(e16, ids)\n f = Cast <to = 1> (ids)", None),
}


@pytest.mark.parametrize("case", INDEX_CASES)
def test_ids_that_only_index_tables_are_drawn_from_their_rows(case: str) -> None:
    """Ids drawn from [0, 8) compared a fold of a 16-row embedding on its first 8 rows only:
    a candidate whose rows 8 to 15 were off passed (t310). An integer input that only indexes
    tables of known rows (a Gather's indices, through layout ops and casts to integers,
    besides comparisons) is drawn from the rows of the smallest; read any other way (a size,
    a float), or indexing a table of rows not known, from [0, 8) as before."""
    body, high = INDEX_CASES[case]
    model = onnx_model(
        INDEXED.format(body=body),
        e16=np.ones((16, 4), np.float32),
        e3=np.ones((3, 4), np.float32),
        e4=np.ones((4, 16), np.float32),
        shape=np.array([1, 64], np.int64),
        zero=np.array(0, np.int64),
        check=False,  # the unused values and the declared w: what the test reads, no more
    )
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    assert spec.high == high
    feeds, notes = inputs.synthesize([spec])
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() == (high or inputs.INT_HIGH) - 1
    said = f"ids drawn from [0, {high}): the rows of the table it indexes"
    assert any(note.startswith(said) for note in notes) is (high is not None)


def test_ids_compared_with_a_constant_are_drawn_at_it_too() -> None:
    """t337: ids of a 1000-row table drawn from all its rows were never 0, the padding id a
    mask compares them with: a candidate that dropped the mask passed. A quarter of the
    places take the values next to each constant compared with, the rest its rows."""
    body = "m = Equal(ids, zero)\n g = Gather(e, ids)\n y = Identity(g)"
    model = onnx_model(
        INDEXED.format(body=body),
        e=np.ones((1000, 4), np.float32),
        zero=np.array(0, np.int64),
        check=False,
    )
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    assert spec.high == 1000 and spec.compared == (0, 1)
    feeds, notes = inputs.synthesize([spec])
    ids = feeds["ids"]
    assert 0 < np.count_nonzero(ids == 0) < ids.size // 2 and ids.max() > 1
    said = (
        "ids drawn from [0, 1000): the rows of the table it indexes; a quarter of them (one at "
        "least) 0, 1 in turn"
    )
    assert any(note.startswith(said) for note in notes)


def test_two_ids_compared_with_a_constant_take_each_side_in_turn() -> None:
    """t342: of two ids one place is set, and to the first compared value always: 1 of
    ``Equal(ids, 0)``'s (0, 1) was never drawn. The values start at one drawn at random."""
    body = "m = Equal(ids, zero)\n g = Gather(e, ids)\n y = Identity(g)"
    text = INDEXED.format(body=body).replace("int64[1, 64] ids", "int64[1, 2] ids")
    table = np.ones((1000, 4), np.float32)
    model = onnx_model(text, e=table, zero=np.array(0, np.int64), check=False)
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    rows = inputs.InputSpec("ids", spec.dtype, spec.shape, spec.high)  # nothing compared
    set_to = set()
    for seed in range(16):  # the rows are drawn first, alike: the places set differ
        ids = inputs.synthesize([spec], seed=seed)[0]["ids"]
        plain = inputs.synthesize([rows], seed=seed)[0]["ids"]
        set_to.update(ids[ids != plain].tolist())
    assert set_to == {0, 1}


@pytest.mark.parametrize(("dtype", "high"), [("uint8", 256), ("int8", 128)])
def test_narrow_ids_are_drawn_and_compared_within_their_dtype(dtype: str, high: int) -> None:
    """t342: uint8 bytes cast to int64 index a table of 256 bytes and 3 special tokens, and
    are compared with 255: the compared 256 did not fit uint8 (an internal error), and ids
    drawn from [0, 259) wrapped to 0..2. They are drawn from the rows their dtype holds."""
    body = "i = Cast <to = 7> (ids)\n m = Equal(ids, last)\n g = Gather(e, i)\n y = Identity(g)"
    text = INDEXED.format(body=body).replace("int64[1, 64] ids", f"{dtype}[1, 64] ids")
    last = np.array(high - 1, dtype)
    model = onnx_model(text, e=np.ones((259, 4), np.float32), last=last, check=False)
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    assert spec.high == high and spec.compared == (high - 2, high - 1)
    feeds, notes = inputs.synthesize([spec])
    assert feeds["ids"].dtype == np.dtype(dtype) and np.any(feeds["ids"] == high - 1)
    assert any(note.startswith(f"ids drawn from [0, {high}): the rows") for note in notes)


VECTORS = """
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[T] audio, int64[N] lengths, float[N, S] x) => (float[T] y) {
        y = Identity(audio)
    }
"""


def test_a_vectors_axis_is_a_length_at_the_other_sizes_unless_its_symbol_is_a_batch() -> None:
    """t337: audio given as ``[samples]`` was synthesized with 1 sample, and 2 at the other
    sizes, its only axis taken for a batch: a wrong FIR filter's outer taps passed. The other
    sizes try a vector's axis as a length first, but where its symbol names another input's
    batch; the first run keeps it a batch (t338: per-sample lengths named apart from x's
    batch, as an export names them, broke the check at a length of 32)."""
    specs = inputs.signature(ir.serde.deserialize_model(onnx_model(VECTORS)))
    feeds, _ = inputs.synthesize(specs)
    assert {k: v.shape for k, v in feeds.items()} == {"audio": (1,), "lengths": (1,), "x": (1, 32)}
    sizing = inputs.Sizing(first=2, other=33, first_step=1, other_step=1, lengths=True)
    feeds, notes = inputs.synthesize(specs, sizing=sizing)
    assert {k: v.shape for k, v in feeds.items()} == {"audio": (33,), "lengths": (2,), "x": (2, 34)}
    assert "audio[0] (T) = 33" in notes


def test_one_id_compared_with_a_constant_is_a_row_of_the_table() -> None:
    """t338: an only id was always set to the value it is compared with, so no other row of
    the table was ever read (a candidate whose rows 1..9 differed passed)."""
    body = "m = Equal(ids, zero)\n g = Gather(e, ids)\n y = Identity(g)"
    text = INDEXED.format(body=body).replace("int64[1, 64] ids", "int64[1] ids")
    model = onnx_model(
        text, e=np.ones((1000, 4), np.float32), zero=np.array(0, np.int64), check=False
    )
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    feeds, notes = inputs.synthesize([spec])
    drawn = inputs.synthesize([inputs.InputSpec("ids", spec.dtype, spec.shape, spec.high)])[0]
    assert spec.compared == (0, 1) and np.array_equal(feeds["ids"], drawn["ids"])
    assert "ids drawn from [0, 1000): the rows of the table it indexes" in notes
    one = int(feeds["ids"][0])  # t340: one side run, which a note says
    said = f"ids is one id, drawn {one}, compared with a constant: one side of the comparison"
    assert any(note.startswith(said) and "give --inputs with 0, 1 too" in note for note in notes)


def test_the_last_id_is_not_always_the_compared_value() -> None:
    """t340: the last place was always set to the value compared with, and a decoder's step
    reading the last token alone never read a row of its table: the places are drawn."""
    body = "m = Equal(ids, zero)\n g = Gather(e, ids)\n y = Identity(g)"
    text = INDEXED.format(body=body).replace("int64[1, 64] ids", "int64[1, 4] ids")
    model = onnx_model(
        text, e=np.ones((1000, 4), np.float32), zero=np.array(0, np.int64), check=False
    )
    (spec,) = inputs.signature(ir.serde.deserialize_model(model))
    lasts = {int(inputs.synthesize([spec], seed=seed)[0]["ids"][0, -1] <= 1) for seed in range(12)}
    assert lasts == {0, 1}
