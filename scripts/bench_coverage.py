"""Coverage of ``apply_weight_norm`` on the models people train, against an independent oracle.

python scripts/bench_coverage.py                 # every model -> docs/coverage.json, a table
python scripts/bench_coverage.py --only gpt2 t5  # some of them

Models: transformers architectures built from tiny configs with random weights (no hub access:
text, MoE, state space and recurrent, vision, speech, codecs and vocoders, time series), plain
torch models with functional and loop-reused weights, the example models and a HiFi-GAN
(``models/hifigan.py`` with its weight norm folded out first): the first 42 here, the families
added since in ``scripts/coverage_models.py``. Per model:

- the oracle: the weights weight norm should go on, and at which axis, written here from module
  types alone (Linear, Bilinear, Conv, ConvTranspose, transformers' Conv1D, RNN and RNN cells,
  MultiheadAttention), a table of the transformers module types that use weights without
  calling a layer or hold weights no layer type describes (``MODULE_USES``, with
  ``coverage_models.MODULE_USES``: MoE routers and stacked experts, Mamba's mixer, WavLM's
  attention, einsum weights whose unit spans two axes, weights the forward writes in place,
  elementwise and position parameters), plus the uses each torch model declares (an axis, or
  why not), independent of wnpass's analysis. A reason from the table or a declaration
  overrides the axis of the layer holding the weight. A layer counts when the forward calls it
  (forward hooks); tied (one tensor held by several modules; one module under several names
  counts once), frozen and already parametrized weights, and weights with an all-zero output
  unit (``g * v / ||v||`` is 0/0 there) are not expected; embeddings are opt-in, so not
  expected either. Every other weight of 2+ dimensions gets a reason; one without is
  *undecided*: listed, and the row fails;
- applied / correct / wrong axis / false applications / missed, against the oracle;
- tied weights still tied (the same object under every name) after the rewrite;
- outputs equal on the example inputs (wnpass's own check, ``report.equivalent``);
- one training step (SGD on the sum of the outputs' mean squares): finite loss, a gradient on
  every g and v whose plain weight gets one in the same step of the plain model (behind a
  quantizer or a duration's ceil none does), g and v changed;
- fold back with ``fold_weight_norm(added_only=True)``: no parametrization of wnpass's left,
  the state dict has exactly the keys of the model as built (its own weight norm kept), and
  the folded float32 outputs are within 1e-5 relative of the exact ones (the
  trained weight-normed model run in float64, or in float32 where its forward makes float32
  tensors of its own and cannot run in float64), or within twice the network's own float32
  arithmetic noise (the folded model in float32 vs float64) where that is larger; every run
  compared under one seed with the same noise (a forward that samples, like VITS, is marked).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import json
import logging
import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wnpass import apply_weight_norm, fold_weight_norm  # noqa: E402
from wnpass.fx.compare import max_rel_error, result_leaves  # noqa: E402
from wnpass.fx.forward import Batch, ForwardFailedError, as_batch, run_forward  # noqa: E402
from wnpass.fx.trace import TRACERS, Tracer  # noqa: E402
from wnpass.rules import parse_key  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import coverage_models  # noqa: E402
from coverage_models import (  # noqa: E402
    ELEMENTWISE,
    EMBEDDING,
    POSITIONS,
    STACKED,
    Case,
    Inputs,
    ids,
    pixels,
    tiny_text,
    wave,
)

DOCS = ROOT / "docs"
FOLD_RTOL = 1e-5  # fold rounds w once in float64; the parametrized model rounds per op


# -- torch models with functional and loop-reused weights ------------------------------------


class FunctionalNet(nn.Module):
    """Weights used only functionally: F.linear, x @ W (in, out), einsum, addmm, W.t()."""

    def __init__(self) -> None:
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(32, 16) * 0.2)  # F.linear: (out, in)
        self.w_right = nn.Parameter(torch.randn(32, 32) * 0.2)  # x @ W: (in, out)
        self.w_einsum = nn.Parameter(torch.randn(24, 32) * 0.2)  # "bi,oi->bo"
        self.w_addmm = nn.Parameter(torch.randn(24, 16) * 0.2)  # addmm(b, x, W): (in, out)
        self.b_addmm = nn.Parameter(torch.zeros(16))
        self.w_t = nn.Parameter(torch.randn(10, 16) * 0.2)  # x @ W.t(): (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.linear(x, self.w_in))
        h = torch.tanh(h @ self.w_right)
        h = torch.tanh(torch.einsum("bi,oi->bo", h, self.w_einsum))
        h = torch.tanh(torch.addmm(self.b_addmm, h, self.w_addmm))
        return h @ self.w_t.t()


FUNCTIONAL_ORACLE: dict[str, int | str] = {
    "w_in": 0,
    "w_right": 1,
    "w_einsum": 0,
    "w_addmm": 1,
    "w_t": 0,
}


class LoopNet(nn.Module):
    """A block applied 4 times, a functional weight reused in the loop, an LSTM, a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 16, 3, padding=1)
        self.block = nn.Linear(16, 16)
        self.mix = nn.Parameter(torch.randn(16, 16) * 0.2)  # x @ W, reused
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).transpose(1, 2)
        for _ in range(4):
            h = h + torch.tanh(self.block(h)) @ self.mix
        h, _ = self.lstm(h)
        return self.head(h[:, -1])


LOOP_ORACLE: dict[str, int | str] = {"mix": 1}


# -- the model zoo -----------------------------------------------------------------------------


def _codec_input() -> dict[str, torch.Tensor]:
    return {"input_values": torch.randn(2, 1, 256, generator=torch.Generator().manual_seed(1))}


def _frames(channels: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 12, channels, generator=torch.Generator().manual_seed(seed))


def _transformers_cases() -> list[Case]:
    import transformers as tf

    def lm(config_cls: Any, model_cls: Any, **config: Any) -> Case:
        name = model_cls.__name__
        return Case(name, lambda: model_cls(config_cls(**config)), lambda: {"input_ids": ids()})

    seq2seq_inputs = {"input_ids": ids(), "decoder_input_ids": ids(shape=(2, 5))}
    vision: dict[str, Any] = dict(image_size=32, patch_size=8, num_channels=3, num_labels=4)
    t5: dict[str, Any] = dict(
        vocab_size=96,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
    )
    moe: dict[str, Any] = dict(
        vocab_size=96,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    audio: dict[str, Any] = dict(
        vocab_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        mask_time_prob=0.0,
        layerdrop=0.0,
    )
    hifigan: dict[str, Any] = dict(
        upsample_initial_channel=32,
        upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
    )
    return [
        lm(tf.GPT2Config, tf.GPT2LMHeadModel, n_layer=2, n_embd=32, n_head=2, vocab_size=96,
           n_positions=32, bos_token_id=0, eos_token_id=0),
        lm(tf.OpenAIGPTConfig, tf.OpenAIGPTLMHeadModel, n_layer=2, n_embd=32, n_head=2,
           vocab_size=96, n_positions=32),
        lm(tf.LlamaConfig, tf.LlamaForCausalLM, **tiny_text(num_key_value_heads=1)),
        lm(tf.Qwen2Config, tf.Qwen2ForCausalLM, **tiny_text(num_key_value_heads=1)),
        lm(tf.OPTConfig, tf.OPTForCausalLM, vocab_size=96, hidden_size=32, num_hidden_layers=2,
           num_attention_heads=2, ffn_dim=64, max_position_embeddings=32, word_embed_proj_dim=32,
           bos_token_id=0, eos_token_id=0, pad_token_id=1),
        lm(tf.BertConfig, tf.BertForMaskedLM, **tiny_text()),
        lm(tf.DistilBertConfig, tf.DistilBertForMaskedLM, vocab_size=96, dim=32, n_layers=2,
           n_heads=2, hidden_dim=64, max_position_embeddings=32),
        lm(tf.RobertaConfig, tf.RobertaForMaskedLM, **tiny_text(pad_token_id=1)),
        Case("T5ForConditionalGeneration",
             lambda: tf.T5ForConditionalGeneration(tf.T5Config(**t5)),
             lambda: dict(seq2seq_inputs)),
        Case("BartForConditionalGeneration",
             lambda: tf.BartForConditionalGeneration(tf.BartConfig(
                 vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2,
                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                 decoder_ffn_dim=64, max_position_embeddings=32)),
             lambda: dict(seq2seq_inputs)),
        Case("WhisperForConditionalGeneration",
             lambda: tf.WhisperForConditionalGeneration(tf.WhisperConfig(
                 vocab_size=96, d_model=32, encoder_layers=2, decoder_layers=2,
                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                 decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=16,
                 max_target_positions=16, decoder_start_token_id=0, pad_token_id=0)),
             lambda: {"input_features": torch.randn(2, 16, 32, generator=torch.Generator()
                                                    .manual_seed(1)),
                      "decoder_input_ids": ids(shape=(2, 5))}),
        Case("ViTForImageClassification",
             lambda: tf.ViTForImageClassification(tf.ViTConfig(
                 hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, **vision)),
             lambda: {"pixel_values": pixels()}),
        Case("ConvNextForImageClassification",
             lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(
                 num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)),
             lambda: {"pixel_values": pixels()}),
        Case("ResNetForImageClassification",
             lambda: tf.ResNetForImageClassification(tf.ResNetConfig(
                 num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                 num_labels=4)),
             lambda: {"pixel_values": pixels()}),
        Case("MobileNetV2ForImageClassification",
             lambda: tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(
                 num_channels=3, image_size=32, depth_multiplier=0.25, num_labels=4)),
             lambda: {"pixel_values": pixels()}),
        Case("Wav2Vec2ForCTC",
             lambda: tf.Wav2Vec2ForCTC(tf.Wav2Vec2Config(
                 vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                 num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
                 layerdrop=0.0)),
             lambda: {"input_values": torch.randn(2, 400, generator=torch.Generator()
                                                  .manual_seed(1))}),
        Case("CLIPModel",
             lambda: tf.CLIPModel(tf.CLIPConfig(
                 text_config=dict(vocab_size=96, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=32),
                 vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8),
                 projection_dim=16)),
             lambda: {"input_ids": ids(), "pixel_values": pixels()}),
        Case("SwinForImageClassification",
             lambda: tf.SwinForImageClassification(tf.SwinConfig(
                 image_size=32, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 1],
                 num_heads=[2, 2], window_size=4, num_labels=4)),
             lambda: {"pixel_values": pixels()}),
        # MoE with transformers' default experts implementation (grouped_mm)
        lm(tf.MixtralConfig, tf.MixtralForCausalLM, num_local_experts=4, num_experts_per_tok=2,
           **moe),
        lm(tf.OlmoeConfig, tf.OlmoeForCausalLM, num_experts=4, num_experts_per_tok=2, **moe),
        lm(tf.MambaConfig, tf.MambaForCausalLM, vocab_size=96, hidden_size=16, state_size=4,
           num_hidden_layers=1, expand=2, conv_kernel=4, use_mambapy=False),
        lm(tf.AlbertConfig, tf.AlbertForMaskedLM, embedding_size=16, **tiny_text()),
        lm(tf.DebertaV2Config, tf.DebertaV2ForMaskedLM, relative_attention=True,
           position_buckets=8, max_relative_positions=16, pos_att_type=["p2c", "c2p"],
           share_att_key=False, conv_kernel_size=3, norm_rel_ebd="layer_norm", **tiny_text()),
        lm(tf.FalconConfig, tf.FalconForCausalLM, vocab_size=96, hidden_size=32,
           num_hidden_layers=2, num_attention_heads=2, new_decoder_architecture=False,
           multi_query=True),
        lm(tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, **tiny_text()),
        lm(tf.Gemma2Config, tf.Gemma2ForCausalLM, head_dim=16, **tiny_text(num_key_value_heads=1)),
        Case("SegformerForSemanticSegmentation",
             lambda: tf.SegformerForSemanticSegmentation(tf.SegformerConfig(
                 num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                 hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
                 num_attention_heads=[1, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                 num_labels=3)),
             lambda: {"pixel_values": pixels()}),
        Case("WavLMForCTC",
             lambda: tf.WavLMForCTC(tf.WavLMConfig(num_buckets=16, max_bucket_distance=32,
                                                   **audio)),
             lambda: {"input_values": wave()}),
        Case("SEWDForCTC",
             lambda: tf.SEWDForCTC(tf.SEWDConfig(squeeze_factor=2, position_buckets=8,
                                                 max_relative_positions=16, **audio)),
             lambda: {"input_values": wave()}),
        # codecs and vocoders (EnCodec ships weight-normed: its convs are "already")
        Case("EncodecModel",
             lambda: tf.EncodecModel(tf.EncodecConfig(
                 target_bandwidths=[1.5], sampling_rate=800, audio_channels=1, hidden_size=8,
                 num_filters=4, num_residual_layers=1, upsampling_ratios=[2, 2],
                 norm_type="weight_norm", kernel_size=3, last_kernel_size=3,
                 residual_kernel_size=3, num_lstm_layers=1, codebook_size=16, codebook_dim=8)),
             _codec_input),
        Case("DacModel",
             lambda: tf.DacModel(tf.DacConfig(
                 encoder_hidden_size=4, downsampling_ratios=[2, 2], decoder_hidden_size=8,
                 n_codebooks=2, codebook_size=16, codebook_dim=4, hidden_size=8,
                 upsampling_ratios=[2, 2])),
             _codec_input),
        Case("MimiModel",
             lambda: tf.MimiModel(tf.MimiConfig(
                 hidden_size=16, num_filters=4, upsampling_ratios=[2, 2], num_residual_layers=1,
                 kernel_size=3, last_kernel_size=3, residual_kernel_size=3, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=2, head_dim=8, intermediate_size=32,
                 codebook_size=16, codebook_dim=8, num_quantizers=2, num_semantic_quantizers=1,
                 sliding_window=16, frame_rate=12.5, sampling_rate=800,
                 max_position_embeddings=64, use_streaming=False, upsample_groups=16,
                 vector_quantization_hidden_dimension=8)),
             _codec_input),
        Case("UnivNetModel",
             lambda: tf.UnivNetModel(tf.UnivNetConfig(
                 model_in_channels=8, model_hidden_channels=8, num_mel_bins=16,
                 resblock_kernel_sizes=[3], resblock_stride_sizes=[2],
                 resblock_dilation_sizes=[[1, 3]], kernel_predictor_num_blocks=1,
                 kernel_predictor_hidden_channels=8, kernel_predictor_conv_size=3)),
             lambda: {"input_features": _frames(16),
                      "noise_sequence": _frames(8, seed=2)}),
        Case("SpeechT5HifiGan",
             lambda: tf.SpeechT5HifiGan(tf.SpeechT5HifiGanConfig(model_in_dim=16, **hifigan)),
             lambda: {"spectrogram": _frames(16)}),
        Case("VitsModel",
             lambda: tf.VitsModel(tf.VitsConfig(
                 vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 ffn_dim=32, flow_size=16, spectrogram_bins=16, prior_encoder_num_flows=1,
                 prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1,
                 duration_predictor_num_flows=1, depth_separable_num_layers=1,
                 duration_predictor_filter_channels=16, window_size=2,
                 use_stochastic_duration_prediction=True, **hifigan)),
             lambda: {"input_ids": ids(32, (1, 8))}),
    ]  # fmt: skip


def _torch_cases() -> list[Case]:
    from wnpass import load_model_py

    cases = [
        Case("FunctionalNet (torch)", FunctionalNet, lambda: (torch.randn(4, 16),),
             FUNCTIONAL_ORACLE),
        Case("LoopNet (torch)", LoopNet, lambda: (torch.randn(2, 4, 12),), LOOP_ORACLE),
    ]  # fmt: skip

    def hifigan() -> nn.Module:  # ships weight-normed: folded first, as a plain HiFi-GAN
        model = load_model_py(ROOT / "models" / "hifigan.py")[0]
        fold_weight_norm(model)
        return model

    cases.append(
        Case("models/hifigan.py (folded first)", hifigan, lambda: load_model_py(
            ROOT / "models" / "hifigan.py")[1] or ())
    )  # fmt: skip
    for stem in ("transformer", "lstm_lm", "vocoder", "resnet"):
        path = ROOT / "models" / "plain" / f"{stem}.py"
        cases.append(
            Case(
                f"models/plain/{stem}.py",
                lambda path=path: load_model_py(path)[0],
                lambda path=path: load_model_py(path)[1] or (),
            )
        )
    return cases


# -- the oracle ----------------------------------------------------------------------------


GROUPED_TRANSPOSED = "a grouped transposed conv (a unit spans the input-group and output axes)"


def _layer_weights(module: nn.Module, conv1d: type | None) -> dict[str, int | str]:
    """The weights of one known layer type and their unit axis, or why weight norm should not go
    on them (independent of wnpass)."""
    cls = torch.nn.utils.parametrize.type_before_parametrizations(module)
    if conv1d is not None and issubclass(cls, conv1d):
        return {"weight": 1}  # (in, out), addmm(b, x, W)
    if issubclass(cls, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Bilinear):
        return {"weight": 0}  # Bilinear: (out, in1, in2)
    if issubclass(cls, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d):
        if module.groups == 1:
            return {"weight": 1}
        # (in, out / groups, *k): output channel g * out / groups + j reads W[group g's inputs, j]
        depthwise = module.in_channels == module.groups == module.out_channels
        return {"weight": 0 if depthwise else GROUPED_TRANSPOSED}
    if issubclass(cls, nn.RNNBase | nn.RNNCellBase):  # (gates * hidden, in) and (.., hidden)
        return {n: 0 for n, _ in module.named_parameters(recurse=False) if n.startswith("weight")}
    if issubclass(cls, nn.MultiheadAttention):  # its forward reads out_proj.weight directly
        names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        weights = {n: 0 for n, p in module.named_parameters(recurse=False) if n in names}
        return {**weights, "out_proj.weight": 0}
    return {}


# Module types whose forward uses weights without calling a layer on them, or holds weights no
# layer type describes, read from the transformers sources (5.x): weight (relative to the
# module) -> its unit axis, or why weight norm should not go on it (a reason overrides the
# axis of the layer holding the weight). A use counts when the module's forward is called.
# The families of scripts/coverage_models.py add theirs (coverage_models.MODULE_USES).
MODULE_USES: dict[str, dict[str, int | str]] = {
    # MoE: the router is F.linear(x, self.weight) (out, in); the experts are (E, out, in)
    # stacks used one expert at a time (eager: F.linear(x, W[e]); grouped_mm: W.transpose)
    **{f"{family}TopKRouter": {"weight": 0} for family in ("Mixtral", "Olmoe")},
    **{
        f"{family}Experts": {"gate_up_proj": STACKED, "down_proj": STACKED}
        for family in ("Mixtral", "Olmoe")
    },
    # Mamba without its CUDA kernels: the depthwise conv1d.weight (C, 1, K) squeezed to (C, K)
    # for a per-channel conv, dt_proj.weight @ x (out, in); A_log is exp'd into a decay
    "MambaMixer": {"conv1d.weight": 0, "dt_proj.weight": 0, "A_log": ELEMENTWISE},
    # WavLM: F.multi_head_attention_forward with the four projections' weights (out, in)
    "WavLMAttention": {
        **{f"{proj}.weight": 0 for proj in ("q_proj", "k_proj", "v_proj", "out_proj")},
        "gru_rel_pos_const": ELEMENTWISE,
    },
    "Snake1d": {"alpha": ELEMENTWISE},  # DAC's x + sin(alpha x)^2 / alpha, per channel
    "VitsElementwiseAffine": {"translate": ELEMENTWISE, "log_scale": ELEMENTWISE},
    "VitsAttention": {"emb_rel_k": POSITIONS, "emb_rel_v": POSITIONS},
    "ViTEmbeddings": {"cls_token": POSITIONS, "position_embeddings": POSITIONS},
    "SwinRelativePositionBias": {"relative_position_bias_table": POSITIONS},
    **coverage_models.MODULE_USES,
}


@dataclasses.dataclass
class Verdict:
    expected: dict[str, int]  # weight -> unit axis
    not_expected: dict[str, str]  # every other weight of 2+ dimensions -> why
    undecided: list[str]  # weights of 2+ dimensions the oracle has no rule for


def oracle(model: nn.Module, inputs: Inputs, functional: dict[str, int | str]) -> Verdict:
    """Weight name -> unit axis that weight norm should be applied at, and a reason for every
    other weight of two or more dimensions (or: undecided, never silently counted)."""
    try:
        from transformers.pytorch_utils import Conv1D as conv1d
    except ImportError:  # the torch models need no transformers
        conv1d = None
    called: set[str] = set()
    names = {id(m): n for n, m in model.named_modules()}
    handles = [
        m.register_forward_pre_hook(lambda m, _args: called.add(names[id(m)]))
        for m in model.modules()
    ]
    try:
        run_forward(model, as_batch(inputs))
    finally:
        for handle in handles:
            handle.remove()
    tied = {id(_get(model, names[0])) for names in _tied_groups(model)}
    params = dict(model.named_parameters())
    # the model's own declarations: an axis, or a reason (which overrides a layer's axis)
    expected: dict[str, int] = {n: u for n, u in functional.items() if isinstance(u, int)}
    declared = {n: u for n, u in functional.items() if isinstance(u, str)}  # not expected, why
    unused: set[str] = set()  # a known use whose module the forward never calls
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        cls = torch.nn.utils.parametrize.type_before_parametrizations(module)
        uses = {**_layer_weights(module, conv1d), **MODULE_USES.get(cls.__name__, {})}
        if isinstance(module, nn.Embedding):
            declared[f"{prefix}weight"] = EMBEDDING
        for local, use in uses.items():
            if isinstance(use, str):
                declared.setdefault(prefix + local, use)
            elif module_name not in called:
                unused.add(prefix + local)
            elif not torch.nn.utils.parametrize.is_parametrized(module):
                expected[prefix + local] = use
    expected = {n: a for n, a in expected.items() if n in params}
    verdict = Verdict({}, {}, [])
    for name, param in params.items():
        axis = expected.get(name)
        reason = (
            "tied" if id(param) in tied
            else "frozen" if not param.requires_grad
            else "already parametrized" if ".parametrizations." in name
            else declared[name] if name in declared
            else "an all-zero output unit" if axis is not None and _has_zero_unit(param, axis)
            else "not called by the forward" if axis is None and name in unused
            else None
        )  # fmt: skip
        if axis is not None and reason is None:
            verdict.expected[name] = axis
        elif reason is not None and (param.ndim >= 2 or axis is not None):
            verdict.not_expected[name] = reason
        elif param.ndim >= 2:
            verdict.undecided.append(name)
    return verdict


def _has_zero_unit(weight: torch.Tensor, axis: int) -> bool:
    rows = weight.detach().movedim(axis, 0).reshape(weight.shape[axis], -1)
    return not bool(rows.any(dim=1).all())


# -- one model ------------------------------------------------------------------------------


def _max_rel(outputs: list[torch.Tensor], exact: list[torch.Tensor]) -> float:
    """The library's measure over the float outputs (NaN/Inf in new places: inf, never 0)."""
    pairs = [(a, b) for a, b in zip(outputs, exact, strict=True) if b.is_floating_point()]
    return max_rel_error(
        result_leaves([a.double() for a, _ in pairs]), result_leaves([b.double() for _, b in pairs])
    )


def _double(batch: Batch) -> Batch:
    def cast(value: Any) -> Any:
        return (
            value.double()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            else value
        )

    return Batch(tuple(cast(v) for v in batch.args), {k: cast(v) for k, v in batch.kwargs.items()})


def _plain_key(key: str) -> str:
    """A state-dict key as it is once every weight norm is folded (rules' key forms)."""
    parsed = parse_key(key)
    return parsed[0].weight if parsed is not None and parsed[0].form == "parametrize" else key


def _loss(model: nn.Module, batch: Batch) -> Any:
    """The sum of the outputs' mean squares (not a tensor where no output has a gradient)."""
    live = model(*batch.args, **batch.kwargs)
    floats = [t for t in _live_tensors(live) if t.is_floating_point() and t.requires_grad]
    return sum(t.float().square().mean() for t in floats)


def _plain_gradients(plain: nn.Module, inputs: Inputs, rng: torch.Tensor) -> set[str]:
    """The weights that get a gradient in the same step of the plain model (same random state):
    behind a quantizer's argmin or a duration's ceil, say, none do, with or without wnpass."""
    with _forked_rng():
        torch.set_rng_state(rng)
        plain.train()
        loss = _loss(plain, as_batch(inputs))
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
        plain.eval()
    return {n for n, p in plain.named_parameters() if p.grad is not None}


def _train_step(model: nn.Module, inputs: Inputs, plain_grads: set[str]) -> tuple[bool, str]:
    """One SGD step: a finite loss, a finite gradient on every g and v whose plain weight gets
    one in the same step of the plain model, g/v updated."""
    batch = as_batch(inputs)
    model.train()
    originals = {n: p for n, p in model.named_parameters() if ".original" in n}
    before = {n: p.detach().clone() for n, p in originals.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = _loss(model, batch)
    if not isinstance(loss, torch.Tensor) or not torch.isfinite(loss):
        model.eval()
        return False, "no finite loss"
    optimizer.zero_grad()
    loss.backward()
    gradless = [n for n, p in originals.items() if p.grad is None]
    no_grad = [n for n in gradless if _plain_key(n) in plain_grads]
    bad = [n for n, p in originals.items() if p.grad is not None and not p.grad.isfinite().all()]
    optimizer.step()
    changed = sum(not torch.equal(before[n], p) for n, p in originals.items())
    model.eval()
    if no_grad:
        return False, f"no gradient on {len(no_grad)} of g/v (e.g. {no_grad[0]})"
    if bad or not changed:
        return False, f"{len(bad)} non-finite gradients, {changed} of g/v changed"
    # a g whose gradient is ~0 (a conv before BatchNorm, a key projection at init) may stay
    # bit-identical after one small step: counted, not a failure
    note = f"loss {float(loss):.3g}; {changed} of {len(originals)} g/v changed"
    if gradless:  # the plain weight gets none either
        note += f"; {len(gradless)} of g/v without a gradient, as in the plain model"
    return True, note


def _live_tensors(value: Any) -> list[torch.Tensor]:
    """Tensors of a forward's result without detaching (tuples, dicts, ModelOutputs)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _live_tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _live_tensors(v)]
    return []


def _holder(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner, _, leaf = name.rpartition(".")
    return (model.get_submodule(owner) if owner else model), leaf


def _get(model: nn.Module, name: str) -> Any:
    owner, leaf = _holder(model, name)
    return getattr(owner, leaf)


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of each parameter held by two or more modules (or attributes): tied weights. One
    module registered under several names (``ModuleList([block] * 3)``) holds its own once."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [
        names
        for names in groups.values()
        if len({(id(m), leaf) for m, leaf in (_holder(model, n) for n in names)}) > 1
    ]


def _still_tied(model: nn.Module, groups: list[list[str]]) -> bool:
    return all(all(_get(model, n) is _get(model, names[0]) for n in names) for names in groups)


@contextlib.contextmanager
def _float32_noise() -> Iterator[None]:
    """torch.randn/rand(_like) asked for float64 draw float32 and cast: a float64 run consumes
    the random stream as a float32 one does and gets the same noise (rounded), so runs under one
    seed differ by their weights and arithmetic only (VITS samples its latents and durations)."""
    patched = {name: getattr(torch, name) for name in ("randn", "rand", "randn_like", "rand_like")}

    def wrap(name: str, draw: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        like = name.endswith("_like")

        def drawn(*args: Any, **kwargs: Any) -> torch.Tensor:
            dtype = kwargs.get("dtype") or (args[0].dtype if like else None)
            if dtype != torch.float64:
                return draw(*args, **kwargs)
            return draw(*args, **{**kwargs, "dtype": torch.float32}).double()

        return drawn

    for name, draw in patched.items():
        setattr(torch, name, wrap(name, draw))
    try:
        yield
    finally:
        for name, draw in patched.items():
            setattr(torch, name, draw)


@contextlib.contextmanager
def _forked_rng() -> Iterator[None]:
    """torch's, NumPy's and Python's global random states given back after the block: model
    code draws from all three. transformers' layerdrop draws ``np.random.uniform`` for each
    layer in training: the plain step took one draw and the weight-normed step the next, and
    where only the second dropped VITS's first encoder layer, its g/v got no gradient and the
    train check failed, about one run in ten."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _seeded(model: nn.Module, batch: Batch, seed: int = 0) -> list[torch.Tensor]:
    """run_forward under one seed (the global random state is left as it was)."""
    with _forked_rng(), _float32_noise():
        torch.manual_seed(seed)
        return run_forward(model, batch)


def _detach_state(model: nn.Module) -> None:
    """Detach the tensors with a history that modules keep as plain attributes: RecurrentGemma's
    recurrent and conv states, left by the training step, hold the step's graph, and
    ``copy.deepcopy`` refuses a non-leaf tensor (with or without wnpass)."""
    for module in model.modules():
        for key, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                vars(module)[key] = value.detach()


def _float64(model: nn.Module) -> tuple[nn.Module, str]:
    """A float64 copy to run the reference. transformers' default MoE experts (``grouped_mm``)
    have no float64 kernel ("Expected mat_a to be Float32, BFloat16 or Float16"): the copy runs
    them with transformers' ``eager`` experts instead (a loop of F.linear over the experts, the
    same function), and the row says so (``reference``)."""
    copied = copy.deepcopy(model).double()
    notes = ["float64"]
    # .double() casts parameters and buffers, not a float tensor a module caches as a plain
    # attribute on its first forward (Mimi's codebooks: embed_sum / usage): cast those too
    cached = [
        (module, key)
        for module in copied.modules()
        for key, value in vars(module).items()
        if isinstance(value, torch.Tensor) and value.is_floating_point()
    ]
    for module, key in cached:
        vars(module)[key] = vars(module)[key].double()
    if cached:
        notes.append(f"{len(cached)} cached tensors cast")
    config = getattr(copied, "config", None)
    implementation = getattr(config, "_experts_implementation", None)
    if implementation not in (None, "eager") and hasattr(copied, "set_experts_implementation"):
        copied.set_experts_implementation("eager")
        notes.append(f"experts eager (not {implementation})")
    return copied, ", ".join(notes)


def run_case(case: Case, tracer: Tracer = "auto") -> dict[str, Any]:
    torch.manual_seed(0)
    np.random.seed(0)  # model code draws from these too (layerdrop): the same row every run
    random.seed(0)
    row: dict[str, Any] = {"model": case.name}
    start = time.perf_counter()
    model = case.build().eval()
    inputs = case.inputs()
    plain = copy.deepcopy(model)
    built_keys = list(model.state_dict())  # its own weight norm's keys too
    verdict = oracle(model, inputs, case.functional)
    expected = verdict.expected
    groups = _tied_groups(model)
    report = apply_weight_norm(model, inputs, tracer=tracer)
    applied = {s.name: s.axis for s in report.sites if s.status == "applied"}
    correct = [n for n, a in applied.items() if n in expected and expected[n] == a]
    row.update(
        params=sum(1 for _ in model.named_parameters()) - len(applied),  # before the rewrite
        expected=len(expected),
        applied=len(applied),
        correct=len(correct),
        wrong_axis=sorted(n for n, a in applied.items() if n in expected and expected[n] != a),
        false=sorted(n for n in applied if n not in expected and n not in verdict.undecided),
        missed=sorted(n for n in expected if n not in applied),
        undecided=sorted(verdict.undecided),
        not_expected=dict(sorted(collections.Counter(verdict.not_expected.values()).items())),
        already=report.count("already"),
        traced_with=report.traced_with,
        status=report.status,
        tied_groups=len(groups),
        tied_kept=_still_tied(model, groups),
        max_rel_error=report.max_rel_error,
        equal_outputs=bool(report.equivalent),
    )
    row["coverage"] = len(correct) / len(expected) if expected else 1.0
    plain_grads = _plain_gradients(plain, inputs, torch.get_rng_state())
    row["train_ok"], row["train_note"] = _train_step(model, inputs, plain_grads)
    batch = as_batch(inputs)
    _detach_state(model)
    reference, row["reference"] = _float64(model)
    reference_batch = _double(batch)
    try:
        exact = _seeded(reference, reference_batch)
    except ForwardFailedError as error:
        # a forward that makes float32 tensors of its own and mixes them with its inputs or
        # weights (Autoformer, FastSpeech2Conformer): the reference is the trained weight-normed
        # model itself, in float32
        reference, reference_batch = copy.deepcopy(model), batch
        cause = error.__cause__ or error
        row["reference"] = f"float32 (in float64: {type(cause).__name__}: {cause})"[:160]
        exact = _seeded(reference, reference_batch)
    # a forward that draws random numbers: every run below is under the same seed
    row["random_forward"] = _max_rel(_seeded(reference, reference_batch, seed=1), exact) > 0
    fold = fold_weight_norm(model, added_only=True)
    folded = _seeded(model, batch)
    fold_error = _max_rel(folded, exact)
    # the float32 arithmetic of the network itself (the folded model run in float32 and in
    # float64, same weights): a deep net with BatchNorm amplifies it far past one ulp; not
    # measured where the model cannot run in float64
    arithmetic = (
        _max_rel(folded, _seeded(_float64(model)[0], _double(batch)))
        if reference_batch is not batch
        else None
    )
    row.update(
        fold_ok=bool(fold) and list(model.state_dict()) == built_keys
        and fold_error <= max(FOLD_RTOL, 2 * (arithmetic or 0.0)) and math.isfinite(fold_error),
        fold_max_rel_error=fold_error,
        float32_noise=arithmetic,
        seconds=round(time.perf_counter() - start, 2),
    )  # fmt: skip
    return row


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.1e}"
    if isinstance(value, list):
        return str(len(value)) if not value else f"**{len(value)}**"
    return str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | expected | applied | coverage | wrong axis | false | missed | undecided | "
        "already | tied kept | outputs equal (max rel) | train step | fold back | s |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- "
        "| ---: |\n"
    )
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |" + " |" * 12)
            continue
        tied = _cell(r["tied_kept"]) + (f" ({r['tied_groups']})" if r["tied_groups"] else "")
        lines.append(
            f"| {r['model']} | {r['expected']} | {r['applied']} | {r['coverage']:.0%} | "
            f"{_cell(r['wrong_axis'])} | {_cell(r['false'])} | {_cell(r['missed'])} | "
            f"{_cell(r['undecided'])} | {r['already']} | {tied} | {_cell(r['equal_outputs'])} "
            f"({_cell(r['max_rel_error'] or 0.0)}) | {_cell(r['train_ok'])} | "
            f"{_cell(r['fold_ok'])}{' (same seed)' if r['random_forward'] else ''} | "
            f"{r['seconds']} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="substrings of model names to run")
    parser.add_argument("--json", type=Path, default=DOCS / "coverage.json")
    parser.add_argument(
        "--tracer",
        choices=TRACERS,
        default="auto",
        help="how uses are found: auto (observe a forward), or static (torch.fx, torch.export, "
        "module types: what wnpass did before it observed)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    cases = _torch_cases() + coverage_models.torch_cases() + coverage_models.audio_cases()
    try:
        cases = _transformers_cases() + coverage_models.transformers_cases() + cases
    except ImportError as error:
        print(f"transformers not installed ({error}): torch models only", file=sys.stderr)
    if args.only:
        cases = [c for c in cases if any(o.lower() in c.name.lower() for o in args.only)]
    rows = []
    start = time.perf_counter()
    for case in cases:
        try:
            row = run_case(case, args.tracer)
        except Exception as error:  # one broken model does not stop the benchmark
            row = {"model": case.name, "error": f"{type(error).__name__}: {error}"[:200]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    try:
        import transformers

        version = transformers.__version__
    except ImportError:
        version = None
    meta = {"torch": torch.__version__, "transformers": version}
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(markdown(rows))
    bad = [
        r["model"]
        for r in rows
        if "error" in r or r["wrong_axis"] or r["false"] or r["missed"] or r["undecided"]
        or not r["equal_outputs"] or not r["tied_kept"] or not r["train_ok"] or not r["fold_ok"]
    ]  # fmt: skip
    done = [r for r in rows if "error" not in r]
    total = {
        k: sum(r[k] if isinstance(r[k], int) else len(r[k]) for r in done)
        for k in ("expected", "correct", "applied", "wrong_axis", "false", "missed", "undecided")
    }
    print(
        f"{len(rows)} models: {total['correct']} of {total['expected']} expected weights at the "
        f"oracle's axis, {total['applied']} applied, {total['wrong_axis']} wrong axes, "
        f"{total['false']} false applications, {total['missed']} missed, "
        f"{total['undecided']} undecided; {time.perf_counter() - start:.0f} s"
    )
    print(f"{len(rows) - len(bad)} of {len(rows)} models meet every target; failing: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
