"""find_pairs: pairs from names, shapes and dtypes alone; broken pairs declined with a reason."""

from __future__ import annotations

import pytest

from wnpass.checkpoint.pairs import find_pairs
from wnpass.checkpoint.reading import TensorInfo


def info(key: str, shape: tuple[int, ...], dtype: str = "float32") -> TensorInfo:
    return TensorInfo(key, shape, dtype, 0)


def test_both_forms_and_their_axes() -> None:
    pairs = find_pairs(
        [
            info("a.bias", (4,)),
            info("a.weight_g", (4, 1, 1)),
            info("a.weight_v", (4, 2, 3)),
            info("pos.parametrizations.weight.original1", (8, 4, 16)),
            info("pos.parametrizations.weight.original0", (1, 1, 16)),
            info("post.weight_v", (1, 8, 7)),
            info("post.weight_g", ()),
            info("parametrizations.weight.original0", (3, 1)),
            info("parametrizations.weight.original1", (3, 5)),
        ]
    )
    assert [(p.weight, p.keys.form, p.dim, p.first, p.ok) for p in pairs] == [
        ("a.weight", "legacy", 0, "a.weight_g", True),
        ("pos.weight", "parametrize", 2, "pos.parametrizations.weight.original1", True),
        ("post.weight", "legacy", None, "post.weight_v", True),
        ("weight", "parametrize", 0, "parametrizations.weight.original0", True),
    ]


@pytest.mark.parametrize(
    ("tensors", "reason"),
    [
        ([info("m.parametrizations.weight.original0", (4, 1))], "g without v"),
        ([info("m.parametrizations.weight.original1", (4, 3))], "v without g"),
        ([info("m.weight_g", (4, 1))], "g without v"),
        (
            [info("m.weight_g", (4, 1)), info("m.weight_v", (5, 3))],
            "shapes do not fit: g [4, 1] does not match v [5, 3] on axis 0",
        ),
        (
            [info("m.weight_g", (4,)), info("m.weight_v", (4, 3))],
            "shapes do not fit: g [4] and v [4, 3] differ in rank",
        ),
        (
            [info("m.weight_g", (4, 3)), info("m.weight_v", (4, 3))],
            "keeps more than one axis",
        ),
        (
            [info("m.weight_g", (4, 1), "int64"), info("m.weight_v", (4, 3))],
            "g is int64, not a float type that is folded",
        ),
        (  # t153: folded to v's dtype; PyTorch refuses the pair or makes a float64 weight
            [info("m.weight_g", (4, 1), "float64"), info("m.weight_v", (4, 3), "float16")],
            "g is float64 and v float16: PyTorch makes no weight of one dtype of them",
        ),
        (
            [info("m.weight", (4, 3)), info("m.weight_g", (4, 1)), info("m.weight_v", (4, 3))],
            "m.weight is stored too",
        ),
        (
            [
                info("m.weight_g", (4, 1)),
                info("m.weight_v", (4, 3)),
                info("m.parametrizations.weight.original0", (4, 1)),
                info("m.parametrizations.weight.original1", (4, 3)),
            ],
            "stored in both key forms",
        ),
    ],
)
def test_broken_pairs_are_declined_with_the_reason(tensors: list[TensorInfo], reason: str) -> None:
    pairs = find_pairs(tensors)
    assert pairs and all(not p.ok for p in pairs)
    assert reason in (pairs[0].reason or "")


def test_lone_legacy_halves_of_other_names_are_ordinary_tensors() -> None:
    assert find_pairs([info("gate_v", (4,)), info("attn.bias_g", (4,))]) == []


def test_an_entry_that_is_not_a_tensor_under_the_weights_name_declines_the_pair() -> None:
    tensors = [info("m.weight_g", (4, 1)), info("m.weight_v", (4, 3))]
    (pair,) = find_pairs(tensors, others={"m.weight"})
    assert pair.reason == "m.weight is stored too"
    (pair,) = find_pairs(tensors, others={"m.bias"})
    assert pair.ok


@pytest.mark.parametrize("folding", [True, False], ids=["fold", "convert"])
def test_a_parametrization_stacked_on_weight_norm_declines_the_pair(folding: bool) -> None:
    """``spectral_norm`` on top of ``weight_norm`` stores its state as parametrization 1 beside
    original0/original1: the weight is not g * v / ||v||, so neither a fold nor a renaming is
    right (the renamed state would be left without the parametrization it belongs to)."""
    tensors = [
        info("m.parametrizations.weight.original0", (4, 1)),
        info("m.parametrizations.weight.original1", (4, 3)),
        info("m.parametrizations.weight.1._u", (4,)),
        info("m.parametrizations.weight.1._v", (3,)),
        info("n.parametrizations.weight.original0", (4, 1)),  # another module's: folded
        info("n.parametrizations.weight.original1", (4, 3)),
    ]
    m, n = find_pairs(tensors, folding=folding)
    assert m.reason == (
        "another parametrization is stacked on it (m.parametrizations.weight.1._u): "
        "the weight is not g * v / ||v||"
    )
    assert n.ok


@pytest.mark.parametrize("folding", [True, False], ids=["fold", "convert"])
def test_a_parametrization_of_three_tensors_declines_the_pair(folding: bool) -> None:
    """A parametrization whose ``right_inverse`` gives three tensors (``g * v / ||v|| +
    delta``) stores ``original0/1/2``: it was folded into ``g * v / ||v||``, 1.5 from the
    model's weight, and ``original2`` was left behind; ``convert`` left it behind too."""
    tensors = [
        info("m.parametrizations.weight.original0", (4, 1)),
        info("m.parametrizations.weight.original1", (4, 3)),
        info("m.parametrizations.weight.original2", (4, 3)),
        info("n.parametrizations.weight.original0", (4, 1)),
        info("n.parametrizations.weight.original1", (4, 3)),
        info("n.parametrizations.weight.original10", (4, 3)),  # not original1: a third one
        info("k.parametrizations.weight.original0", (4, 1)),  # another module's: folded
        info("k.parametrizations.weight.original1", (4, 3)),
    ]
    m, n, k = find_pairs(tensors, folding=folding)
    assert m.reason == (
        "its parametrization holds more than g and v (m.parametrizations.weight.original2): "
        "the weight is not g * v / ||v||"
    )
    assert n.reason is not None and "(n.parametrizations.weight.original10)" in n.reason
    assert k.ok


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "int64", "complex64"])
def test_a_renaming_takes_a_pair_of_any_dtype(dtype: str) -> None:
    """``convert`` reads no values: the dtype declines a pair only where it is to be folded."""
    tensors = [info("m.weight_g", (4, 1), dtype), info("m.weight_v", (4, 3), dtype)]
    (pair,) = find_pairs(tensors, folding=False)
    assert pair.ok and pair.dim == 0
    (pair,) = find_pairs(tensors)
    assert pair.reason == f"g is {dtype}, not a float type that is folded"


def test_a_renaming_takes_a_pair_of_two_dtypes() -> None:
    """A pair of two dtypes is declined for a fold only: ``convert`` moves it as it is."""
    tensors = [info("m.weight_g", (4, 1), "float32"), info("m.weight_v", (4, 3), "bfloat16")]
    (pair,) = find_pairs(tensors, folding=False)
    assert pair.ok
    (pair,) = find_pairs(tensors)
    assert pair.reason is not None and pair.reason.startswith("g is float32 and v bfloat16")


@pytest.mark.parametrize("folding", [True, False], ids=["fold", "convert"])
@pytest.mark.parametrize(
    ("g", "v"),
    [((1, 1, 8), (1, 1, 8)), ((8, 1), (8, 1)), ((), ()), ((), (1,)), ((1, 1), (1, 1))],
)
def test_a_legacy_pair_of_one_element_per_unit_is_left_alone(
    folding: bool, g: tuple[int, ...], v: tuple[int, ...]
) -> None:
    """RWKV-5's ``time_mix_g`` and ``time_mix_v`` (both 1x1xC) are plain parameters: folded,
    they became one made-up ``time_mix`` = g * sign(v), and the model no longer loaded."""
    tensors = [info("att.time_mix_g", g), info("att.time_mix_v", v)]
    (pair,) = find_pairs(tensors, folding=folding)
    assert pair.reason == (
        "one element per unit of v (the weight would be g * sign(v)): as likely two plain "
        "parameters att.time_mix_g and att.time_mix_v; left alone"
    )
    # a model whose plain state dict holds att.time_mix says what the names cannot
    (pair,) = find_pairs(tensors, folding=folding, model_keys={"att.time_mix"})
    assert pair.ok


def test_one_element_per_unit_is_no_doubt_in_the_parametrize_form() -> None:
    """``m.parametrizations.weight.original0/1`` are weight norm's own keys; and a legacy pair
    with several elements per unit is a pair."""
    (pair,) = find_pairs(
        [
            info("m.parametrizations.weight.original0", (8, 1)),
            info("m.parametrizations.weight.original1", (8, 1)),
        ]
    )
    assert pair.ok and pair.dim == 0
    (pair,) = find_pairs([info("m.time_mix_g", (1, 1, 8)), info("m.time_mix_v", (2, 1, 8))])
    assert pair.ok and pair.dim == 2
    # nor in PyTorch's legacy keys of a layer's weight, its bias beside it: a WaveNet's
    # Conv1d(1, 8, 1) (t253); without a bias, as likely two plain parameters (t255)
    halves = [info("pre.weight_g", (8, 1, 1)), info("pre.weight_v", (8, 1, 1))]
    (pair,) = find_pairs([*halves, info("pre.bias", (8,))])
    assert pair.ok and pair.dim == 0
    (pair,) = find_pairs(halves)
    assert pair.reason is not None and pair.reason.startswith("one element per unit of v")
    top = [info("weight_g", (8, 1)), info("weight_v", (8, 1))]
    assert find_pairs([*top, info("bias", (8,))])[0].ok and not find_pairs(top)[0].ok


def test_spectral_norms_legacy_keys_are_no_pair() -> None:
    """``nn.utils.spectral_norm`` stores ``weight_orig``, ``weight_u`` and ``weight_v`` (its
    power-iteration vector): a discriminator's lone ``weight_v`` is no broken weight-norm pair;
    a weight-norm pair beside it is found as ever, and a lone ``weight_v`` without them is
    still a broken one."""
    tensors = [
        info("0.weight_orig", (8, 1, 5)),
        info("0.weight_u", (8,)),
        info("0.weight_v", (5,)),
        info("2.weight_g", (8, 1, 1)),
        info("2.weight_v", (8, 8, 3)),
        info("4.weight_v", (3,)),
    ]
    found = {(p.weight, p.reason) for p in find_pairs(tensors)}
    assert found == {("2.weight", None), ("4.weight", "v without g (4.weight_v)")}


def test_keys_with_a_newline_are_matched_whole() -> None:
    """A newline inside a key is part of the module's name; one at the end makes the key
    another (``a.weight_g\\n`` is no ``_g`` key); the stacked parametrization under a module
    with a newline in its name is seen (the pattern stopped at the newline)."""
    pairs = find_pairs(
        [
            info("blk\n0.weight_g", (3, 1)),
            info("blk\n0.weight_v", (3, 2)),
            info("a.weight_g\n", (3, 1)),
            info("a.weight_v\n", (3, 2)),
            info("b\n1.parametrizations.weight.original0", (3, 1)),
            info("b\n1.parametrizations.weight.original1", (3, 2)),
            info("b\n1.parametrizations.weight.1._u", (3,)),
            info("c.parametrizations.weight.original0", (3, 1)),
            info("c.parametrizations.weight.original1", (3, 2)),
            info("c.parametrizations.weight.original1\n", (3, 2)),
        ]
    )
    assert [(p.weight, p.ok) for p in pairs] == [
        ("blk\n0.weight", True),
        ("b\n1.weight", False),
        ("c.weight", False),
    ]
    assert "another parametrization is stacked on it" in (pairs[1].reason or "")
    assert "holds more than g and v" in (pairs[2].reason or "")


def test_legacy_keys_of_an_empty_parameter_name_are_ordinary_tensors() -> None:
    assert find_pairs([info("a._g", (3, 1)), info("a._v", (3, 2))]) == []


@pytest.mark.parametrize("form", ["legacy", "parametrize"])
def test_a_half_of_a_pair_stored_as_no_tensor_is_said_so(form: str) -> None:
    """t339: ``{"c.weight_g": 1.5, "c.weight_v": tensor}`` was declined as "v without g", and a
    user looked for a key that is in the file: it says that entry is no tensor."""
    g = "c.weight_g" if form == "legacy" else "c.parametrizations.weight.original0"
    v = "c.weight_v" if form == "legacy" else "c.parametrizations.weight.original1"
    (pair,) = find_pairs([info(v, (4, 3))], others=[g])
    assert pair.reason == f"{g} is no tensor"
