"""convert_checkpoint: weight-norm keys renamed into the other form; tensors byte-identical."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.checkpoint.builders import generator, state_dict, tensor_bytes
from wnpass.checkpoint import convert_checkpoint
from wnpass.errors import InvalidArgumentError
from wnpass.fx.state import load_state_dict_any


def _bytes(state: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {key: tensor_bytes(tensor) for key, tensor in state.items()}


def test_parametrize_to_legacy_and_back_is_byte_identical(tmp_path: Path) -> None:
    state = state_dict("parametrize")
    torch.save(state, tmp_path / "g.pt")
    report = convert_checkpoint(tmp_path / "g.pt", "legacy")
    assert report.count("converted") == 5 and report.output == str(tmp_path / "g.legacy.pt")
    legacy = torch.load(tmp_path / "g.legacy.pt", weights_only=True)
    assert "conv_pre.weight_g" in legacy and "pos_conv.weight_v" in legacy
    assert list(legacy)[:3] == ["conv_pre.bias", "conv_pre.weight_g", "conv_pre.weight_v"]
    convert_checkpoint(tmp_path / "g.legacy.pt", "parametrize", tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert list(back) == list(state) and _bytes(back) == _bytes(state)


def test_converted_legacy_loads_into_a_legacy_model(tmp_path: Path) -> None:
    save_file(state_dict("parametrize"), str(tmp_path / "g.safetensors"))
    convert_checkpoint(tmp_path / "g.safetensors", "legacy")
    legacy = load_file(str(tmp_path / "g.legacy.safetensors"))
    model = generator("legacy", seed=5)
    model.load_state_dict(legacy, strict=True)  # the legacy model's own key names
    x = torch.randn(1, 8, 16)
    reference = generator("parametrize", seed=5)
    load_state_dict_any(reference, state_dict("parametrize"))
    torch.testing.assert_close(model(x), reference(x), rtol=0.0, atol=0.0)


def test_pairs_already_in_the_form_are_unchanged(tmp_path: Path) -> None:
    save_file(state_dict("legacy"), str(tmp_path / "g.safetensors"))
    report = convert_checkpoint(tmp_path / "g.safetensors", "legacy")
    assert report.count("unchanged") == 5 and report.count("converted") == 0
    assert _bytes(load_file(str(tmp_path / "g.legacy.safetensors"))) == _bytes(state_dict("legacy"))


def test_a_target_key_that_exists_declines_the_pair(tmp_path: Path) -> None:
    state = state_dict("parametrize")
    state["res.weight_g"] = torch.zeros(1)  # the legacy name is taken: ambiguous
    save_file(state, str(tmp_path / "g.safetensors"))
    report = convert_checkpoint(tmp_path / "g.safetensors", "legacy")
    declined = [p for p in report.pairs if p.status == "declined"]
    assert [(p.weight, p.form, p.reason) for p in declined] == [
        ("res.weight", "parametrize", "stored in both key forms"),
        ("res.weight", "legacy", "g without v (res.weight_g)"),
    ]
    out = load_file(str(tmp_path / "g.legacy.safetensors"))
    assert "res.parametrizations.weight.original0" in out
    # each declined pair says the keys it is written under: its own (they were none, t210)
    assert [p.output_keys for p in declined] == [
        ["res.parametrizations.weight.original0", "res.parametrizations.weight.original1"],
        ["res.weight_g"],
    ]
    assert all(key in out for p in declined for key in p.output_keys)


def test_an_unknown_form_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^to must be parametrize or legacy"):
        convert_checkpoint(tmp_path / "g.pt", "plain")


@pytest.mark.parametrize("to", ["legacy", "parametrize"])
def test_a_target_key_held_by_another_entry_declines_the_pair(tmp_path: Path, to: str) -> None:
    """A renamed key that is taken by an entry that is not a tensor (a number, a list) would
    replace it: the pair is declined and every entry kept."""
    g, v = torch.rand(3, 1) + 0.5, torch.randn(3, 2)
    if to == "legacy":
        state: dict[str, object] = {
            "a.parametrizations.weight.original0": g,
            "a.parametrizations.weight.original1": v,
            "a.weight_g": 5,
        }
        taken = "a.weight_g"
    else:
        state = {"a.weight_g": g, "a.weight_v": v, "a.parametrizations.weight.original1": [1]}
        taken = "a.parametrizations.weight.original1"
    torch.save(state, tmp_path / "c.pt")
    report = convert_checkpoint(tmp_path / "c.pt", to)
    assert [(p.status, p.reason) for p in report.pairs] == [("declined", f"{taken} is stored too")]
    out = torch.load(tmp_path / f"c.{to}.pt", weights_only=True)
    assert list(out) == list(state)
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            assert tensor_bytes(out[key]) == tensor_bytes(value)
        else:
            assert out[key] == value


def test_keys_with_an_empty_module_are_their_own_pairs(tmp_path: Path) -> None:
    """``.weight_g``/``.weight_v`` beside ``weight_g``/``weight_v`` are two pairs: each keeps
    its leading dot in the other form (both were renamed onto one key: an internal error)."""
    state = {
        "weight_g": torch.rand(2, 1),
        "weight_v": torch.randn(2, 3),
        ".weight_g": torch.rand(2, 1),
        ".weight_v": torch.randn(2, 3),
    }
    save_file(state, str(tmp_path / "dot.safetensors"))
    report = convert_checkpoint(tmp_path / "dot.safetensors", "parametrize")
    assert sorted((p.weight, p.status) for p in report.pairs) == [
        (".weight", "converted"),
        ("weight", "converted"),
    ]
    out = load_file(str(tmp_path / "dot.parametrize.safetensors"))
    renamed = {
        "parametrizations.weight.original0": "weight_g",
        "parametrizations.weight.original1": "weight_v",
        ".parametrizations.weight.original0": ".weight_g",
        ".parametrizations.weight.original1": ".weight_v",
    }
    assert _bytes(out) == {new: tensor_bytes(state[old]) for new, old in renamed.items()}


def test_a_checkpoint_whose_name_is_no_utf8_is_read(tmp_path: Path) -> None:
    """torch maps a torch.save file by its name encoded as UTF-8: a name with a byte that
    does not decode (held as a surrogate) was "not a readable torch.save file" (t210)."""
    layer = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 3))
    folder = tmp_path / os.fsdecode(b"run\xff")
    folder.mkdir()
    torch.save(layer.state_dict(), path := folder / os.fsdecode(b"w\xfe.pt"))
    report = convert_checkpoint(path, "legacy")
    assert report.count("converted") == 1
    legacy = torch.load(folder / os.fsdecode(b"w\xfe.legacy.pt"), weights_only=True)
    assert torch.equal(legacy["weight_v"], layer.state_dict()["parametrizations.weight.original1"])


class _Gate(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = torch.nn.Parameter(torch.randn(5, 1))


def test_a_pair_of_one_element_per_unit_keeps_its_parametrize_keys(tmp_path: Path) -> None:
    """Weight norm on a parameter ``mix`` of 5x1, converted to legacy keys, gave ``mix_g`` /
    ``mix_v`` of one element per unit, which wnpass (rightly) does not take for a pair:
    converting back or folding then left it alone. It stays in the form that says it is one.
    A layer's ``weight`` of one element per unit (``nn.Linear(1, 5)``) is converted: its
    legacy keys ``weight_g``/``weight_v`` are weight norm's own, and convert back."""
    gate = torch.nn.utils.parametrizations.weight_norm(_Gate(), name="mix")
    torch.save(gate.state_dict(), tmp_path / "one.pt")
    report = convert_checkpoint(tmp_path / "one.pt", "legacy")
    assert [(p.status, p.reason is not None) for p in report.pairs] == [("declined", True)]
    assert set(torch.load(tmp_path / "one.legacy.pt", weights_only=True)) == set(gate.state_dict())
    layer = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(1, 5))
    torch.save(layer.state_dict(), tmp_path / "lin.pt")
    assert [p.status for p in convert_checkpoint(tmp_path / "lin.pt", "legacy").pairs] == [
        "converted"
    ]
    convert_checkpoint(tmp_path / "lin.legacy.pt", "parametrize")
    back = torch.load(tmp_path / "lin.legacy.parametrize.pt", weights_only=True)
    assert back.keys() == layer.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in layer.state_dict().items())
