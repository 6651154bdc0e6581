"""random_ops_by_output: which random draws can change each output of a model."""

from __future__ import annotations

from pathlib import Path

import onnx

from wnpass.onnx import io as onnx_io
from wnpass.onnx.reach import random_ops_by_output


def _drawn_by_output(path: Path, text: str) -> dict[str, list[str]]:
    """The random op types whose draws reach each output of the model of ONNX text ``text``,
    saved at ``path`` and read back as a command reads it."""
    onnx.save(onnx.parser.parse_model(text), path)
    drawn = random_ops_by_output(onnx_io.load(path))
    return {name: [node.op_type for node in nodes] for name, nodes in drawn.items()}


def test_draws_reach_outputs_through_bodies_and_local_functions(tmp_path: Path) -> None:
    """A draw in an If branch reaches the If's output; one in a local function, each
    caller's; one that reaches no output changes nothing."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[N, 8] x, bool c) => (float[N, 8] y, float[N, 8] z, float[N, 8] u) {
            y = If (c) <then_branch = g1 () => (float[N, 8] t) { t = RandomNormalLike (x) },
                        else_branch = g2 () => (float[N, 8] e) { e = Identity (x) }>
            z = local.noisy (x)
            u = Identity (x)
        }
        <domain: "local", opset_import: ["" : 17]>
        noisy (a) => (b) { b = RandomUniformLike (a) }
    """
    assert _drawn_by_output(tmp_path / "bodies.onnx", text) == {
        "y": ["RandomNormalLike"],
        "z": ["RandomUniformLike"],
    }


def test_each_output_holds_the_draws_it_is_computed_from(tmp_path: Path) -> None:
    """Which draws reach each output is found once per node, for every output (a walk per
    output took 29 s for 1000 outputs, t148): an output computed from another's draws holds
    them, a draw reached by two ways counts once, one after an output is not its, and one in
    a function's body reaches each caller's output, a body's through an outer value too."""
    text = """
        <ir_version: 8, opset_import: ["" : 17, "local" : 1]>
        agraph (float[N, 8] x, bool c) => (float[N, 8] a, float[N, 8] b, float[N, 8] d,
                                          float[N, 8] e, float[N, 8] f) {
            n = RandomNormalLike (x)
            a = Add (x, n)
            u = RandomUniformLike (a)
            left = Mul (a, u)
            right = Relu (u)
            b = Add (left, right)
            later = RandomUniformLike (b)
            d = Neg (b)
            e = local.noisy (x)
            f = If (c) <then_branch = g1 () => (float[N, 8] t) { t = local.noisy (d) },
                        else_branch = g2 () => (float[N, 8] o) { o = Identity (later) }>
        }
        <domain: "local", opset_import: ["" : 17]>
        noisy (p) => (q) {
            s = Bernoulli (p)
            q = Add (p, s)
        }
    """
    assert _drawn_by_output(tmp_path / "shared.onnx", text) == {
        "a": ["RandomNormalLike"],
        "b": ["RandomNormalLike", "RandomUniformLike"],
        "d": ["RandomNormalLike", "RandomUniformLike"],
        "e": ["Bernoulli"],
        "f": ["RandomNormalLike", "RandomUniformLike", "RandomUniformLike", "Bernoulli"],
    }


def test_a_draw_that_decides_a_size_counts(tmp_path: Path) -> None:
    """``Size(NonZero(Bernoulli(p)))`` changes from run to run: a stop at every Shape/Size
    missed it, and check said equivalent (t133); so did a stop at a declared shape, where
    torch.export names such a length (u0, t134). A draw read for its shape alone changes
    nothing where no draw decides that shape (a RandomUniformLike's is its input's, t156)."""

    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4] p) => (int64 n, int64[1] s) <float[4] r, int64[1, u0] z> {
            b = Bernoulli (p)
            z = NonZero (b)
            n = Size (z)
            r = RandomUniformLike (p)
            s = Shape (r)
        }
    """
    assert _drawn_by_output(tmp_path / "sizes.onnx", text) == {"n": ["Bernoulli"]}


def test_a_body_initializer_named_like_a_drawn_value_reads_it(tmp_path: Path) -> None:
    """A branch's initializer ``f`` named like an outer value computed from a draw: ONNX
    Runtime reads the outer, drawn ``f`` in the branch, so the draw reaches the If's output
    (onnx-ir links the read to the branch's constant: check said equivalent, t168)."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[4] x, bool c) => (float[4] y, float[4] z) {
            f = RandomUniformLike (x)
            y = If (c) <
                then_branch = g1 () => (float[4] t) <float[4] f = {0.0, 0.0, 0.0, 0.0}> {
                    t = Add (x, f)
                },
                else_branch = g2 () => (float[4] e) { e = Identity (x) }
            >
            z = Identity (x)
        }
    """
    assert _drawn_by_output(tmp_path / "shadow.onnx", text) == {"y": ["RandomUniformLike"]}


def test_an_enclosing_value_after_the_body_is_not_read_in_its_place(tmp_path: Path) -> None:
    """t169: a branch's initializer ``x`` named like an outer value computed after the If from
    its output (and the If's own output named ``x``): that value is not there when the branch
    runs, so the branch reads its own; counting it read made the If read itself, a cycle
    (check exit 3)."""
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2] a, bool c) => (float[2] y, float[2] out) {
            y = If (c) <
                then_branch = g1 () => (float[2] t) <float[2] x = {1.0, 2.0}> { t = Add (a, x) },
                else_branch = g2 () => (float[2] e) <float[2] x = {3.0, 4.0}> { e = Add (a, x) }
            >
            x = Relu (y)
            r = RandomUniformLike (x)
            out = Add (x, r)
        }
    """
    assert _drawn_by_output(tmp_path / "after.onnx", text) == {"out": ["RandomUniformLike"]}
