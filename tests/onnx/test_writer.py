"""The streaming writer produces the same model as onnx-ir's serializer, for every dtype."""

from __future__ import annotations

import io as stdio

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir

from tests.helpers import onnx_model, rand
from wnpass.onnx.writer import write_model


def test_streamed_model_equals_the_serialized_one() -> None:
    text = """
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[2, 4] x) => (float[2, 3] y, int64[2] z) {
            y = Gemm <transB = 1> (x, w)
            z = Identity(ids)
        }
    """
    model = ir.serde.deserialize_model(onnx_model(text, w=rand(3, 4), ids=np.array([7, 9])))
    graph = model.graph
    extra = {
        "half": ir.Tensor(rand(5, 2).astype(np.float16)),
        "brain": ir.Tensor(rand(3).astype(ml_dtypes.bfloat16)),
        "flags": ir.Tensor(np.array([True, False])),
        "words": ir.StringTensor(np.array([b"a", b"bc"])),
        "scalar": ir.Tensor(np.array(2.5, np.float64)),
    }
    for name, tensor in extra.items():
        graph.register_initializer(ir.Value(name=name, const_value=tensor))
    expected = ir.serde.serialize_model(model)
    buffer = stdio.BytesIO()
    write_model(model, buffer)
    actual = onnx.load_from_string(buffer.getvalue())
    assert actual == expected
    assert [i.name for i in actual.graph.initializer] == ["w", "ids", *extra]
    # the model object is left as it was
    assert isinstance(graph.initializers["half"].const_value, ir.Tensor)
    w = graph.initializers["w"].const_value
    assert w is not None and w.numpy().shape == (3, 4)
