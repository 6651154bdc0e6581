"""ONNX side of wnpass: find, fold and add weight-norm subgraphs on onnx-ir models."""
