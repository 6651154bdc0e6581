"""Numeric equivalence and latency of two ONNX models on ONNX Runtime's CPU and CUDA providers."""
