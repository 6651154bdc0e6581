"""PyTorch side of wnpass: loading model.py, site analysis (torch.fx), apply, data init."""

from __future__ import annotations

from wnpass.fx.apply import ApplyWeightNormPass, analyse_sites, apply_weight_norm
from wnpass.fx.data_init import DataInitReport, data_init
from wnpass.fx.loading import load_model_py
from wnpass.fx.mean_only_bn import MeanOnlyBatchNorm
from wnpass.fx.report import ApplyReport, ParamSite
from wnpass.fx.state import load_state_dict_any

__all__ = [
    "ApplyReport",
    "ApplyWeightNormPass",
    "DataInitReport",
    "MeanOnlyBatchNorm",
    "ParamSite",
    "analyse_sites",
    "apply_weight_norm",
    "data_init",
    "load_model_py",
    "load_state_dict_any",
]
