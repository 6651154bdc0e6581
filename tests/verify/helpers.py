"""Helpers shared by the tests of wnpass.verify."""

from __future__ import annotations

import numpy as np
import onnx

from tests.helpers import onnx_model


def one_output_model(inputs: str, body: str, **initializers: np.ndarray) -> onnx.ModelProto:
    """A model of one output y from ONNX text's ``inputs`` and ``body``."""
    return onnx_model(one_output_text(inputs, body), None, True, **initializers)


def one_output_text(inputs: str, body: str) -> str:
    return f"""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph ({inputs}) => (float[N, 8] y) {{
            {body}
        }}
    """
