"""PyTorch side of wnpass: loading model.py, site analysis (torch.fx), apply, data init, fold.

Nothing is imported here: the modules import torch, and the ONNX commands must not pay for it.
The public names are exported by ``wnpass`` itself (loaded on first use).
"""
