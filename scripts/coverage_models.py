"""The model families ``scripts/bench_coverage.py`` runs besides its first 42, and their oracle.

Each family is one :class:`Case`: a name, a builder from a tiny config with random weights (no
model hub), the example inputs, and the uses of weights the model itself declares. Besides the
cases, :data:`MODULE_USES` extends the oracle's table of module types whose forward uses
weights without calling a layer on them, or holds weights no layer type describes (read from
the transformers 5.x sources); ``bench_coverage.py`` merges it into its own.

- :func:`transformers_cases`: text, mixture of experts, state space and recurrent, vision,
  speech, a text-to-speech model with its vocoder, time series;
- :func:`torch_cases`: plain torch models (``nn.Transformer*`` layers, RNN cells, grouped and
  3-D convolutions, tying, ``torch.compile``, other parametrizations);
- :func:`audio_cases`: twelve audio models written from their papers in plain torch (WaveNet,
  MelGAN's generator and discriminator, Parallel WaveGAN, BigVGAN, Vocos, Demucs, Conv-TasNet,
  Tacotron 2, WaveRNN, a Conformer, HN-NSF).

This module also holds what both scripts share: :class:`Case`, the example input helpers and
the oracle's reasons for a weight that weight norm should not go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Inputs = dict[str, Any] | tuple[Any, ...]


@dataclasses.dataclass
class Case:
    """One row of the benchmark."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], Inputs]
    # the uses the model declares, added to the oracle: weight -> its unit axis, or why weight
    # norm should not go on it (a reason overrides the axis of the layer holding the weight)
    functional: dict[str, int | str] = dataclasses.field(default_factory=dict)


# -- the oracle's reasons for a weight weight norm should not go on ----------------------------

STACKED = "stacked experts (a unit spans the expert and output axes)"
ELEMENTWISE = "elementwise (a scale, decay or gate), no output units"
POSITIONS = "a position embedding or bias table (embeddings are opt-in)"
EMBEDDING = "an embedding (opt-in)"
TWO_AXES = "a unit spans two axes (heads x head_dim)"
WRITTEN = "written in place by the model's forward (weight norm would lose the write)"


# -- example inputs --------------------------------------------------------------------------


def generator(seed: int = 1) -> torch.Generator:
    """A generator of its own, so that inputs do not depend on the global random state."""
    return torch.Generator().manual_seed(seed)


def ids(vocab: int = 96, shape: tuple[int, ...] = (2, 8)) -> torch.Tensor:
    """Token ids, above the special tokens 0 to 2."""
    return torch.randint(3, vocab, shape, generator=generator())


def pixels(size: int = 32, channels: int = 3) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=generator())


def wave(samples: int = 400) -> torch.Tensor:
    return torch.randn(2, samples, generator=generator())


def tiny_text(**extra: Any) -> dict[str, Any]:
    """The config of a tiny text transformer: 2 layers, width 32, 2 heads, vocabulary 96."""
    return dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=32, **extra)  # fmt: skip


# -- transformers ----------------------------------------------------------------------------


def _lm(config_cls: Any, model_cls: Any, inputs: Callable[[], Inputs] | None = None,
        **config: Any) -> Case:  # fmt: skip
    """A model of one config class, run on token ids unless ``inputs`` says otherwise."""
    return Case(
        model_cls.__name__,
        lambda: model_cls(config_cls(**config)),
        inputs or (lambda: {"input_ids": ids()}),
    )


def _seq2seq_inputs() -> Inputs:
    return {"input_ids": ids(), "decoder_input_ids": ids(shape=(2, 5))}


def _dbrx() -> nn.Module:
    import transformers as tf

    attention = tf.models.dbrx.configuration_dbrx.DbrxAttentionConfig(kv_n_heads=1, clip_qkv=8.0)
    attention.rope_theta = 10000.0  # transformers 5.25's DbrxAttention reads it from here
    return tf.DbrxForCausalLM(tf.DbrxConfig(
        d_model=32, n_heads=2, n_layers=1, max_seq_len=32, vocab_size=96, attn_config=attention,
        ffn_config=dict(ffn_hidden_size=16, moe_num_experts=4, moe_top_k=2)))  # fmt: skip


def _reinitialised(model: nn.Module) -> nn.Module:
    """PyTorch's default init, and BatchNorm statistics from three training-mode batches.

    transformers' init draws BatchNorm scales from N(0, 0.02) like the weights: each block of a
    tiny EfficientNet shrinks its activations about 1e9-fold and the logits are exactly 0, equal
    whatever a rewrite does."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear | nn.BatchNorm2d):
            module.reset_parameters()
    model.train()
    with torch.no_grad():
        for seed in range(10, 13):
            model(pixel_values=torch.randn(4, 3, 32, 32, generator=generator(seed)))
    return model.eval()


def _time_series_inputs() -> Inputs:
    draw = generator()
    return {
        "past_values": torch.randn(2, 10, generator=draw),
        "past_time_features": torch.randn(2, 10, 1, generator=draw),
        "past_observed_mask": torch.ones(2, 10),
        "future_values": torch.randn(2, 4, generator=draw),
        "future_time_features": torch.randn(2, 4, 1, generator=draw),
    }


def _fastspeech2_inputs() -> Inputs:
    return {
        "input_ids": ids(32, (1, 8)),
        "duration_labels": torch.full((1, 8), 2),
        "spectrogram_labels": torch.randn(1, 16, 16, generator=generator()),
        "pitch_labels": torch.randn(1, 8, 1, generator=generator(2)),
        "energy_labels": torch.randn(1, 8, 1, generator=generator(3)),
    }


def transformers_cases() -> list[Case]:
    """The transformers families, each from a tiny config (transformers 5.x)."""
    import transformers as tf

    bart_like: dict[str, Any] = dict(
        vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=32, pad_token_id=1, decoder_start_token_id=2)  # fmt: skip
    moe: dict[str, Any] = dict(
        vocab_size=96, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    t5_like: dict[str, Any] = dict(vocab_size=96, d_model=32, d_kv=16, d_ff=64, num_heads=2,
                                   decoder_start_token_id=0)  # fmt: skip
    vit: dict[str, Any] = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, num_channels=3)  # fmt: skip
    audio: dict[str, Any] = dict(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
        layerdrop=0.0)  # fmt: skip
    time_series: dict[str, Any] = dict(
        prediction_length=4, context_length=8, lags_sequence=[1, 2], num_time_features=1,
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)  # fmt: skip
    fastspeech2: dict[str, Any] = dict(
        hidden_size=16, vocab_size=32, num_mel_bins=16, encoder_layers=1, decoder_layers=1,
        encoder_num_attention_heads=2, decoder_num_attention_heads=2, encoder_linear_units=32,
        decoder_linear_units=32, encoder_kernel_size=3, decoder_kernel_size=3,
        duration_predictor_layers=1, duration_predictor_channels=16, pitch_predictor_layers=1,
        pitch_predictor_channels=16, energy_predictor_layers=1, energy_predictor_channels=16,
        speech_decoder_postnet_layers=1, speech_decoder_postnet_units=16,
        speech_decoder_postnet_kernel=3, max_source_positions=64)  # fmt: skip
    hifigan: dict[str, Any] = dict(
        model_in_dim=16, upsample_initial_channel=32, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]])  # fmt: skip

    def seq2seq(model_cls: Any, config: Callable[[], Any]) -> Case:
        return Case(model_cls.__name__, lambda: model_cls(config()), _seq2seq_inputs)

    def image(model_cls: Any, config: Callable[[], Any]) -> Case:
        return Case(model_cls.__name__, lambda: model_cls(config()),
                    lambda: {"pixel_values": pixels()})  # fmt: skip

    def speech(model_cls: Any, config: Callable[[], Any]) -> Case:
        return Case(model_cls.__name__, lambda: model_cls(config()),
                    lambda: {"input_values": wave()})  # fmt: skip

    return [
        # text
        _lm(tf.Phi3Config, tf.Phi3ForCausalLM, **tiny_text(num_key_value_heads=1, pad_token_id=0)),
        _lm(tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, head_dim=16,
            **tiny_text(num_key_value_heads=1)),
        _lm(tf.Qwen3Config, tf.Qwen3ForCausalLM, head_dim=16, **tiny_text(num_key_value_heads=1)),
        _lm(tf.BloomConfig, tf.BloomForCausalLM, vocab_size=96, hidden_size=32, n_layer=2,
            n_head=2),
        _lm(tf.GPTJConfig, tf.GPTJForCausalLM, vocab_size=96, n_embd=32, n_layer=2, n_head=2,
            rotary_dim=8, n_positions=32),
        _lm(tf.CodeGenConfig, tf.CodeGenForCausalLM, vocab_size=96, n_embd=32, n_layer=2,
            n_head=2, rotary_dim=8, n_positions=32, n_ctx=32),
        _lm(tf.GPTBigCodeConfig, tf.GPTBigCodeForCausalLM, vocab_size=96, n_embd=32, n_layer=2,
            n_head=2, n_positions=32, multi_query=True),
        _lm(tf.LongformerConfig, tf.LongformerForMaskedLM, attention_window=4, pad_token_id=1,
            **tiny_text()),
        _lm(tf.BigBirdConfig, tf.BigBirdForMaskedLM, attention_type="original_full",
            **tiny_text()),
        _lm(tf.XLNetConfig, tf.XLNetLMHeadModel, vocab_size=96, d_model=32, n_layer=2, n_head=2,
            d_inner=64),
        _lm(tf.FNetConfig, tf.FNetForMaskedLM,
            **tiny_text(use_tpu_fourier_optimizations=False)),
        _lm(tf.FunnelConfig, tf.FunnelForMaskedLM, vocab_size=96, block_sizes=[1, 1], d_model=32,
            n_head=2, d_head=16, d_inner=64, num_decoder_layers=1),
        _lm(tf.ConvBertConfig, tf.ConvBertForMaskedLM, embedding_size=32, **tiny_text()),
        _lm(tf.ElectraConfig, tf.ElectraForMaskedLM, embedding_size=16, **tiny_text()),
        _lm(tf.MPNetConfig, tf.MPNetForMaskedLM, **tiny_text(pad_token_id=1)),
        seq2seq(tf.PegasusForConditionalGeneration, lambda: tf.PegasusConfig(**bart_like)),
        seq2seq(tf.MarianMTModel, lambda: tf.MarianConfig(**bart_like)),
        seq2seq(tf.M2M100ForConditionalGeneration, lambda: tf.M2M100Config(**bart_like)),
        seq2seq(tf.MBartForConditionalGeneration, lambda: tf.MBartConfig(**bart_like)),
        seq2seq(tf.LEDForConditionalGeneration, lambda: tf.LEDConfig(
            **{**bart_like, "max_position_embeddings": None}, max_encoder_position_embeddings=32,
            max_decoder_position_embeddings=32, attention_window=[4])),
        seq2seq(tf.LongT5ForConditionalGeneration, lambda: tf.LongT5Config(
            num_layers=1, encoder_attention_type="transient-global", local_radius=4,
            global_block_size=4, **t5_like)),
        _lm(tf.ReformerConfig, tf.ReformerModelWithLMHead, vocab_size=96, hidden_size=32,
            attention_head_size=16, num_attention_heads=2, feed_forward_size=64,
            attn_layers=["local", "lsh"], axial_pos_embds=True, axial_pos_shape=[4, 4],
            axial_pos_embds_dim=[16, 16], local_attn_chunk_length=4, lsh_attn_chunk_length=4,
            num_buckets=2, num_hashes=1, max_position_embeddings=16, is_decoder=True,
            pad_token_id=0, inputs=lambda: {"input_ids": ids(shape=(2, 16))}),
        _lm(tf.PerceiverConfig, tf.PerceiverForMaskedLM, num_latents=8, d_latents=32, d_model=32,
            num_blocks=1, num_self_attends_per_block=1, num_self_attention_heads=2,
            num_cross_attention_heads=2, vocab_size=96, max_position_embeddings=16,
            inputs=lambda: {"inputs": ids(shape=(2, 16))}),
        # mixture of experts (transformers' default experts implementation)
        _lm(tf.Qwen2MoeConfig, tf.Qwen2MoeForCausalLM, num_experts=4, num_experts_per_tok=2,
            moe_intermediate_size=16, shared_expert_intermediate_size=16, **moe),
        _lm(tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM, num_experts=4, num_experts_per_tok=2,
            moe_intermediate_size=16, head_dim=16, **moe),
        Case("DbrxForCausalLM", _dbrx, lambda: {"input_ids": ids()}),
        _lm(tf.DeepseekV3Config, tf.DeepseekV3ForCausalLM, vocab_size=96, hidden_size=32,
            intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, n_routed_experts=4,
            num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1,
            kv_lora_rank=8, q_lora_rank=12, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
            max_position_embeddings=32),
        _lm(tf.GptOssConfig, tf.GptOssForCausalLM, vocab_size=96, hidden_size=32,
            intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
            sliding_window=8, max_position_embeddings=32, layer_types=["full_attention"]),
        _lm(tf.Qwen3NextConfig, tf.Qwen3NextForCausalLM, vocab_size=96, hidden_size=32,
            intermediate_size=32, moe_intermediate_size=16, shared_expert_intermediate_size=16,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
            num_experts=4, num_experts_per_tok=2, linear_num_value_heads=2,
            linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=8,
            linear_conv_kernel_dim=4, layer_types=["linear_attention", "full_attention"],
            max_position_embeddings=32),
        seq2seq(tf.SwitchTransformersForConditionalGeneration, lambda: tf.SwitchTransformersConfig(
            num_layers=2, num_decoder_layers=2, num_experts=4, num_sparse_encoder_layers=1,
            num_sparse_decoder_layers=1, **t5_like)),
        # state space and recurrent (their PyTorch paths, no CUDA kernels)
        _lm(tf.Mamba2Config, tf.Mamba2ForCausalLM, vocab_size=96, hidden_size=32, state_size=8,
            num_hidden_layers=1, expand=2, conv_kernel=4, num_heads=8, head_dim=8, n_groups=1,
            chunk_size=8),
        _lm(tf.JambaConfig, tf.JambaForCausalLM, vocab_size=96, hidden_size=32,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=32, num_experts=2, num_experts_per_tok=1, expert_layer_period=2,
            expert_layer_offset=1, attn_layer_period=2, attn_layer_offset=1, mamba_d_state=4,
            mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=4, use_mamba_kernels=False),
        _lm(tf.RecurrentGemmaConfig, tf.RecurrentGemmaForCausalLM, vocab_size=96,
            hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, lru_width=32, attention_window_size=8, conv1d_width=4,
            block_types=["recurrent", "attention"]),
        _lm(tf.RwkvConfig, tf.RwkvForCausalLM, vocab_size=96, hidden_size=32,
            num_hidden_layers=2, attention_hidden_size=32, intermediate_size=64,
            context_length=32),
        # vision
        image(tf.Dinov2Model, lambda: tf.Dinov2Config(**vit)),
        image(tf.BeitForImageClassification, lambda: tf.BeitConfig(
            use_relative_position_bias=True, num_labels=4, **vit)),
        image(tf.DeiTForImageClassificationWithTeacher, lambda: tf.DeiTConfig(num_labels=4, **vit)),
        Case("EfficientNetForImageClassification (convs re-initialised)",
             lambda: _reinitialised(tf.EfficientNetForImageClassification(tf.EfficientNetConfig(
                 image_size=32, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=128,
                 num_labels=4))),
             lambda: {"pixel_values": pixels()}),
        image(tf.RegNetForImageClassification, lambda: tf.RegNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=4, num_labels=4)),
        image(tf.PoolFormerForImageClassification, lambda: tf.PoolFormerConfig(
            num_encoder_blocks=2, depths=[1, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
            strides=[4, 2], padding=[2, 1], num_labels=4)),
        image(tf.YolosForObjectDetection, lambda: tf.YolosConfig(
            num_detection_tokens=4, **{**vit, "image_size": [32, 32]})),
        image(tf.HieraForImageClassification, lambda: tf.HieraConfig(
            embed_dim=8, image_size=[32, 32], patch_size=[3, 3], patch_stride=[2, 2],
            patch_padding=[1, 1], depths=[1, 1], num_heads=[1, 2], query_stride=[2, 2],
            masked_unit_size=[4, 4], mlp_ratio=2.0, num_query_pool=1, num_labels=4)),
        image(tf.ConvNextV2ForImageClassification, lambda: tf.ConvNextV2Config(
            hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=4)),
        image(tf.DetrForObjectDetection, lambda: tf.DetrConfig(
            use_timm_backbone=False, use_pretrained_backbone=False,
            backbone_config=tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                            out_features=["stage2"]),
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=4,
            num_labels=3)),
        # speech, and language models over audio codec tokens
        speech(tf.HubertForCTC, lambda: tf.HubertConfig(**audio)),
        speech(tf.UniSpeechForCTC, lambda: tf.UniSpeechConfig(**audio)),
        speech(tf.Data2VecAudioForCTC, lambda: tf.Data2VecAudioConfig(
            **{**audio, "num_conv_pos_embeddings": 3}, conv_pos_kernel_size=5)),
        speech(tf.Wav2Vec2ConformerForCTC, lambda: tf.Wav2Vec2ConformerConfig(
            position_embeddings_type="relative", conv_depthwise_kernel_size=3, **audio)),
        Case("Speech2TextForConditionalGeneration",
             lambda: tf.Speech2TextForConditionalGeneration(tf.Speech2TextConfig(
                 vocab_size=96, d_model=32, encoder_layers=1, decoder_layers=1,
                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                 decoder_ffn_dim=64, max_source_positions=64, max_target_positions=32,
                 num_conv_layers=2, conv_channels=16, conv_kernel_sizes=[5, 5],
                 input_feat_per_channel=16, input_channels=1, decoder_start_token_id=2,
                 pad_token_id=1)),
             lambda: {"input_features": torch.randn(2, 24, 16, generator=generator()),
                      "decoder_input_ids": ids(shape=(2, 5))}),
        _lm(tf.MusicgenDecoderConfig, tf.MusicgenForCausalLM, vocab_size=32, hidden_size=32,
            num_hidden_layers=1, ffn_dim=64, num_attention_heads=2, num_codebooks=2,
            max_position_embeddings=32, inputs=lambda: {"input_ids": ids(32, (4, 6))}),
        _lm(tf.BarkSemanticConfig, tf.BarkSemanticModel, input_vocab_size=96,
            output_vocab_size=96, hidden_size=32, num_layers=1, num_heads=2, block_size=32),
        _lm(tf.BarkFineConfig, tf.BarkFineModel, input_vocab_size=32, output_vocab_size=32,
            hidden_size=32, num_layers=1, num_heads=2, block_size=32, n_codes_total=4,
            n_codes_given=1, inputs=lambda: {"codebook_idx": 2, "input_ids": ids(32, (2, 8, 4))}),
        # text to speech with its vocoder
        Case("FastSpeech2ConformerWithHifiGan",
             lambda: tf.FastSpeech2ConformerWithHifiGan(tf.FastSpeech2ConformerWithHifiGanConfig(
                 model_config=fastspeech2, vocoder_config=hifigan)),
             _fastspeech2_inputs),
        # time series
        Case("TimeSeriesTransformerForPrediction",
             lambda: tf.TimeSeriesTransformerForPrediction(
                 tf.TimeSeriesTransformerConfig(**time_series)),
             _time_series_inputs),
        Case("InformerForPrediction",
             lambda: tf.InformerForPrediction(tf.InformerConfig(**time_series)),
             _time_series_inputs),
        Case("AutoformerForPrediction",
             lambda: tf.AutoformerForPrediction(tf.AutoformerConfig(
                 moving_average=3, autocorrelation_factor=1, label_length=4, **time_series)),
             _time_series_inputs),
        Case("PatchTSTForPrediction",
             lambda: tf.PatchTSTForPrediction(tf.PatchTSTConfig(
                 num_input_channels=2, context_length=16, patch_length=4, patch_stride=4,
                 prediction_length=4, d_model=16, num_attention_heads=2, num_hidden_layers=1,
                 ffn_dim=32)),
             lambda: {"past_values": torch.randn(2, 16, 2, generator=generator())}),
    ]  # fmt: skip


_ROUTERS = ("Qwen2MoeTopKRouter", "Qwen3MoeTopKRouter", "JambaTopKRouter",
            "DeepseekV3TopkRouter", "GptOssTopKRouter", "Qwen3NextTopKRouter")  # fmt: skip

# Module types of these families whose forward uses weights without calling a layer on them,
# or holds weights no layer type describes, read from the transformers 5.25 sources: weight
# (relative to the module) -> its unit axis, or why weight norm should not go on it.
MODULE_USES: dict[str, dict[str, int | str]] = {
    # MoE routers: F.linear(x, self.weight) (out, in); experts: (E, out, in) stacks used one
    # expert at a time, their biases (E, out) added per expert
    **{router: {"weight": 0} for router in _ROUTERS},
    **{
        f"{family}Experts": {
            "gate_up_proj": STACKED,
            "down_proj": STACKED,
            "gate_up_proj_bias": ELEMENTWISE,
            "down_proj_bias": ELEMENTWISE,
        }
        for family in ("Qwen2Moe", "Qwen3Moe", "Jamba", "DeepseekV3", "GptOss", "Qwen3Next")
    },
    # DBRX: w1 and v1 (E*F, H) viewed (E, F, H), x @ w[e].T: a unit is a row (axis 0); w2 the
    # same shape, x @ w2[e]: a unit is a column inside one expert's block, no single axis
    "DbrxExpertGLU": {"w1": 0, "v1": 0, "w2": STACKED},
    # Jamba's Mamba without kernels, like Mamba's: conv1d.weight (C, 1, K) squeezed to a
    # per-channel conv, dt_proj.weight @ x (out, in), A_log exp'd into a decay
    "JambaMambaMixer": {"conv1d.weight": 0, "dt_proj.weight": 0, "A_log": ELEMENTWISE},
    # Mamba2's and Qwen3-Next's gated DeltaNet's causal conv without kernels: the depthwise
    # conv1d.weight through F.conv1d (per channel, axis 0)
    "Mamba2Mixer": {"conv1d.weight": 0},
    "Qwen3NextGatedDeltaNet": {"conv1d.weight": 0},
    # RecurrentGemma's RG-LRU gates: baddbmm(b, x (H, N, bw), W (H, bw, bw)): a unit is a
    # column of one head's block
    "RecurrentGemmaRglru": {
        "input_gate_weight": TWO_AXES,
        "recurrent_gate_weight": TWO_AXES,
        "input_gate_bias": ELEMENTWISE,
        "recurrent_gate_bias": ELEMENTWISE,
    },
    # RWKV: token-shift mixes (elementwise); RwkvModel._rescale_layers (rescale_every > 0, the
    # default 6) divides each block's two output weights in place on the switch to eval mode and
    # multiplies them back on the switch to training
    "RwkvSelfAttention": {f"time_mix_{k}": ELEMENTWISE for k in ("key", "value", "receptance")},
    "RwkvFeedForward": {f"time_mix_{k}": ELEMENTWISE for k in ("key", "receptance")},
    "RwkvBlock": {"attention.output.weight": WRITTEN, "feed_forward.value.weight": WRITTEN},
    # XLNet: q/k/v/r (H, n, d) in einsum("ibh,hnd->ibnd"): a unit spans n and d; o in
    # einsum("ibnd,hnd->ibh"): a unit is a row (axis 0); seg_embed (2, n, d): the keys of the
    # two segments, an embedding; the r_*_bias (n, d) are added to the queries
    "XLNetRelativeAttention": {
        **{k: TWO_AXES for k in ("q", "k", "v", "r")},
        "o": 0,
        "seg_embed": EMBEDDING,
        **{k: ELEMENTWISE for k in ("r_r_bias", "r_s_bias", "r_w_bias")},
    },
    "XLNetModel": {"mask_emb": "a mask embedding (used only with target_mapping)"},
    # Funnel (attention_type "relative_shift", the default): r_kernel (D, n, d) in
    # einsum("td,dnh->tnh"): a unit spans n and d; seg_embed like XLNet's
    "FunnelRelMultiheadAttention": {
        "r_kernel": TWO_AXES,
        "seg_embed": EMBEDDING,
        **{k: ELEMENTWISE for k in ("r_r_bias", "r_s_bias", "r_w_bias")},
    },
    "SeparableConv1D": {"bias": ELEMENTWISE},  # ConvBERT: a (C, 1) bias added
    "ConvNextV2GRN": {"weight": ELEMENTWISE, "bias": ELEMENTWISE},  # (1, 1, 1, C) scales
    # relative-position biases of conformer attention: added per head and channel
    "Wav2Vec2ConformerSelfAttention": {"pos_bias_u": ELEMENTWISE, "pos_bias_v": ELEMENTWISE},
    "FastSpeech2ConformerAttention": {"pos_bias_u": ELEMENTWISE, "pos_bias_v": ELEMENTWISE},
    # position tables and tokens (like embeddings, opt-in)
    "Dinov2Embeddings": {k: POSITIONS for k in ("cls_token", "mask_token", "position_embeddings")},
    "BeitEmbeddings": {k: POSITIONS for k in ("cls_token", "mask_token", "position_embeddings")},
    "BeitRelativePositionBias": {"relative_position_bias_table": POSITIONS},
    "DeiTEmbeddings": {
        k: POSITIONS
        for k in ("cls_token", "distillation_token", "mask_token", "position_embeddings")
    },
    "YolosEmbeddings": {
        k: POSITIONS for k in ("cls_token", "detection_tokens", "position_embeddings")
    },
    "InterpolateMidPositionEmbeddings": {"mid_position_embeddings": POSITIONS},
    "HieraEmbeddings": {"position_embeddings": POSITIONS},
    "PerceiverTrainablePositionEncoding": {"position_embeddings": POSITIONS},
    "AxialPositionEmbeddings": {"weights.0": POSITIONS, "weights.1": POSITIONS},  # Reformer
    "PerceiverEmbeddings": {"latents": "the latent array (queries of the attention, an input)"},
    # the audio models' elementwise parameters: BigVGAN's Snake-beta alpha and beta (per
    # channel, exp'd), Vocos's ConvNeXt layer scale, Conv-TasNet's gLN (1, N, 1) gamma and
    # beta (3-D: without these, undecided), PReLU's slopes
    "SnakeBeta": {"alpha": ELEMENTWISE, "beta": ELEMENTWISE},
    "ConvNeXtBlock": {"gamma": ELEMENTWISE},
    "GlobalLayerNorm": {"gamma": ELEMENTWISE, "beta": ELEMENTWISE},
    "PReLU": {"weight": ELEMENTWISE},
}


# -- plain torch models ----------------------------------------------------------------------


class TransformerDecoderNet(nn.Module):
    """``nn.TransformerDecoder``, 2 layers, causal, over a memory."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerDecoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.dec = nn.TransformerDecoder(layer, 2)
        self.head = nn.Linear(32, 5)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=tgt.dtype)
        return self.head(self.dec(tgt, memory, tgt_mask=mask))


class TransformerEncoderNet(nn.Module):
    """``nn.TransformerEncoder``, 2 layers: in eval mode without grad it takes PyTorch's fast
    path (``torch._transformer_encoder_layer_fwd``)."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x))


class GRUNet(nn.Module):
    """A 2-layer bidirectional GRU, a GRUCell run over its outputs, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.cell = nn.GRUCell(32, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(x)
        state = h.new_zeros(h.shape[0], 16)
        for t in range(h.shape[1]):
            state = self.cell(h[:, t], state)
        return self.head(state)


class CrossAttentionNet(nn.Module):
    """``nn.MultiheadAttention`` with kdim and vdim unlike embed_dim: separate q, k and v
    projection weights."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(32, 2, kdim=16, vdim=24, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(q, k, v)[0])


class GroupedResNet(nn.Module):
    """Grouped (groups=4), depthwise and depthwise-with-multiplier 3x3 convs, a pointwise one,
    BatchNorm, a residual, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.dw2 = nn.Conv2d(16, 32, 3, padding=1, groups=16)  # channel multiplier 2
        self.pw = nn.Conv2d(32, 16, 1)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn0(self.stem(x)))
        h = h + torch.relu(self.bn1(self.grouped(h)))
        h = self.pw(torch.relu(self.dw2(torch.relu(self.dw(h)))))
        return self.head(h.mean((2, 3)))


class Conv3dNet(nn.Module):
    """Conv3d and ConvTranspose3d, and three grouped transposed convs: groups=2, depthwise with
    a channel multiplier 2 (in 4, out 8, groups 4), depthwise (in = out = groups = 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv3d(2, 8, 3, stride=2, padding=1)
        self.dec = nn.ConvTranspose3d(8, 4, 4, stride=2, padding=1)
        self.gdec = nn.ConvTranspose3d(4, 4, 3, padding=1, groups=2)
        self.mdec = nn.ConvTranspose3d(4, 8, 3, padding=1, groups=4)
        self.dwdec = nn.ConvTranspose3d(8, 8, 3, padding=1, groups=8)
        self.out = nn.Conv3d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.enc(x))
        for layer in (self.dec, self.gdec, self.mdec, self.dwdec):
            h = torch.relu(layer(h))
        return self.out(h)


class TiedNet(nn.Module):
    """Two Linears sharing one Parameter, and a tied autoencoder whose decoder reads the
    encoder's weight transposed (one weight used at axis 0 and at axis 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight
        self.enc = nn.Linear(16, 8)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.b(torch.tanh(self.a(x))))
        z = torch.tanh(self.enc(h))
        return self.head(F.linear(z, self.enc.weight.t()) + h)


class MixBlock(nn.Module):
    """A Linear and a functional weight used as ``x @ W`` (in, out)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.mix = nn.Parameter(torch.randn(16, 16) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x)) @ self.mix


def _compiled_net() -> nn.Module:
    """Two blocks under ``torch.compile`` (eager backend): one module compiled (an
    OptimizedModule, its weights under ``_orig_mod``), one whose forward method is. Built here
    so that importing this module does not import torch._dynamo."""

    class CompiledForward(MixBlock):
        @torch.compile(backend="eager")
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(x)) @ self.mix

    class CompiledNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.compile(MixBlock(), backend="eager")
            self.b = CompiledForward()
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.b(self.a(x)))

    return CompiledNet()


class RNNExtrasNet(nn.Module):
    """A circular-padded conv, an LSTM with proj_size (weight_hr), an LSTMCell loop, an
    RNN(relu), nn.Bilinear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1, padding_mode="circular")
        self.lstm = nn.LSTM(8, 16, proj_size=6, batch_first=True)
        self.cell = nn.LSTMCell(6, 12)
        self.rnn = nn.RNN(12, 10, nonlinearity="relu", batch_first=True)
        self.bil = nn.Bilinear(10, 6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).transpose(1, 2)
        h, _ = self.lstm(h)
        state = cell = h.new_zeros(h.shape[0], 12)
        states = []
        for t in range(h.shape[1]):
            state, cell = self.cell(h[:, t], (state, cell))
            states.append(state)
        r, _ = self.rnn(torch.stack(states, 1))
        return self.bil(r[:, -1], h[:, -1])


class OtherParametrizationsNet(nn.Module):
    """Linears under the orthogonal parametrization, spectral norm (the parametrization) and
    the legacy spectral_norm hook, and a plain head."""

    def __init__(self) -> None:
        super().__init__()
        self.orth = nn.utils.parametrizations.orthogonal(nn.Linear(16, 16))
        self.sn = nn.utils.parametrizations.spectral_norm(nn.Linear(16, 16))
        self.snl = nn.utils.spectral_norm(nn.Linear(16, 16))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.orth(x))
        return self.head(torch.tanh(self.snl(torch.tanh(self.sn(h)))))


def _randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed))


def torch_cases() -> list[Case]:
    """The plain torch models, and the uses each declares."""
    return [
        Case("TransformerDecoder (torch)", TransformerDecoderNet,
             lambda: (_randn(2, 6, 32), _randn(2, 7, 32, seed=2))),
        Case("TransformerEncoder fast path (torch)", TransformerEncoderNet,
             lambda: (_randn(2, 6, 32),)),
        Case("GRU stack + GRUCell (torch)", GRUNet, lambda: (_randn(2, 5, 8),)),
        Case("MHA kdim!=vdim (torch)", CrossAttentionNet,
             lambda: (_randn(2, 5, 32), _randn(2, 7, 16, seed=2), _randn(2, 7, 24, seed=3))),
        Case("GroupedResNet (torch)", GroupedResNet, lambda: (_randn(2, 3, 16, 16),)),
        Case("Conv3d/ConvTranspose3d (torch)", Conv3dNet, lambda: (_randn(1, 2, 8, 8, 8),)),
        Case("tied across modules (torch)", TiedNet, lambda: (_randn(4, 16),),
             {"enc.weight": "used at axis 0 (enc) and at axis 1 (the decoder's W.t())"}),
        Case("torch.compile submodules (torch)", _compiled_net, lambda: (_randn(4, 16),),
             {"a._orig_mod.mix": 1, "b.mix": 1}),
        Case("RNN extras: LSTM proj, LSTMCell, RNN relu, Bilinear (torch)", RNNExtrasNet,
             lambda: (_randn(2, 4, 6),)),
        Case("orthogonal / spectral norm (torch)", OtherParametrizationsNet,
             lambda: (_randn(4, 16),),
             {"snl.weight_orig": "under the legacy spectral_norm hook (weight computed from it)"}),
    ]  # fmt: skip


# -- audio models written from their papers (plain torch, tiny, random weights) --------------
#
# Each is the architecture of the paper (and of the implementation its authors released) at a
# tiny size: the layer types the real code uses, no weight norm of their own (the vocoders ship
# weight-normed; these are the plain networks), every weight random.


def _causal(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A causal conv: the past only, padded on the left."""
    return conv(F.pad(x, ((conv.kernel_size[0] - 1) * conv.dilation[0], 0)))


class WaveNet(nn.Module):
    """WaveNet (van den Oord et al. 2016) as a vocoder: a causal conv, stacks of dilated causal
    convs with gated ``tanh * sigmoid`` units and local conditioning (a 1x1 conv of the
    upsampled mel per layer), residual and skip 1x1 convs, a ReLU-1x1 head to 256 logits."""

    def __init__(self, residual: int = 8, skip: int = 8, mels: int = 8, hop: int = 4) -> None:
        super().__init__()
        self.hop = hop
        self.causal = nn.Conv1d(1, residual, 2)
        self.dilations = [1, 2, 4] * 2
        self.filters = nn.ModuleList(
            nn.Conv1d(residual, 2 * residual, 2, dilation=d) for d in self.dilations
        )
        self.conds = nn.ModuleList(nn.Conv1d(mels, 2 * residual, 1) for _ in self.dilations)
        self.residuals = nn.ModuleList(nn.Conv1d(residual, residual, 1) for _ in self.dilations)
        self.skips = nn.ModuleList(nn.Conv1d(residual, skip, 1) for _ in self.dilations)
        self.post1 = nn.Conv1d(skip, skip, 1)
        self.post2 = nn.Conv1d(skip, 256, 1)

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        c = mel.repeat_interleave(self.hop, dim=2)
        x = _causal(audio, self.causal)
        out = 0
        for conv, cond, res, skip in zip(
            self.filters, self.conds, self.residuals, self.skips, strict=True
        ):
            a, b = (_causal(x, conv) + cond(c)).chunk(2, dim=1)
            z = torch.tanh(a) * torch.sigmoid(b)
            out = out + skip(z)
            x = (x + res(z)) * math.sqrt(0.5)
        return self.post2(torch.relu(self.post1(torch.relu(out))))


class MelGANResStack(nn.Module):
    """MelGAN's residual block: LeakyReLU, a dilated 3-tap conv, LeakyReLU, a 1x1 conv, and a
    1x1 shortcut."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            nn.Conv1d(dim, dim, 3, dilation=dilation),
            nn.LeakyReLU(0.2),
            nn.Conv1d(dim, dim, 1),
        )
        self.shortcut = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(nn.Module):
    """MelGAN's generator (Kumar et al. 2019): a 7-tap conv, per upsampling ratio a
    ConvTranspose1d (kernel 2r, stride r) then a residual stack of dilations 1, 3, 9, a 7-tap
    conv to one channel and tanh."""

    def __init__(self, mels: int = 8, ngf: int = 4, ratios: tuple[int, ...] = (2, 2)) -> None:
        super().__init__()
        mult = 2 ** len(ratios)
        layers: list[nn.Module] = [nn.ReflectionPad1d(3), nn.Conv1d(mels, mult * ngf, 7)]
        for r in ratios:
            layers += [
                nn.LeakyReLU(0.2),
                nn.ConvTranspose1d(
                    mult * ngf,
                    mult * ngf // 2,
                    2 * r,
                    stride=r,
                    padding=r // 2 + r % 2,
                    output_padding=r % 2,
                ),
            ]
            layers += [MelGANResStack(mult * ngf // 2, 3**j) for j in range(3)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), nn.Conv1d(ngf, 1, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.model(mel)


class MelGANScale(nn.Module):
    """One scale of MelGAN's discriminator: a 15-tap conv, grouped strided convs (groups =
    in_channels / 4), a 5-tap and a 3-tap conv; returns every layer's feature map."""

    def __init__(self, ndf: int = 8, n_layers: int = 2, stride: int = 2) -> None:
        super().__init__()
        layers = [nn.Sequential(nn.ReflectionPad1d(7), nn.Conv1d(1, ndf, 15), nn.LeakyReLU(0.2))]
        nf = ndf
        for _ in range(n_layers):
            prev, nf = nf, nf * stride
            layers.append(
                nn.Sequential(
                    nn.Conv1d(
                        prev,
                        nf,
                        stride * 10 + 1,
                        stride=stride,
                        padding=stride * 5,
                        groups=prev // 4,
                    ),
                    nn.LeakyReLU(0.2),
                )
            )
        layers.append(nn.Sequential(nn.Conv1d(nf, 2 * nf, 5, padding=2), nn.LeakyReLU(0.2)))
        layers.append(nn.Conv1d(2 * nf, 1, 3, padding=1))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MelGANDiscriminator(nn.Module):
    """MelGAN's multi-scale discriminator: three scales on the waveform average-pooled by 1, 2
    and 4 (AvgPool1d(4, 2, padding 1, count_include_pad=False) between them)."""

    def __init__(self, scales: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(MelGANScale() for _ in range(scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        results = []
        for scale in self.scales:
            results.append(scale(audio))
            audio = self.pool(audio)
        return results


class Stretch2d(nn.Module):
    """Nearest-neighbour stretch of a (B, 1, F, T) map along time."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, dim=3)


def _stretch_upsampler(scales: tuple[int, ...]) -> nn.Sequential:
    """Parallel WaveGAN's and WaveRNN's upsampler: per scale a stretch and a Conv2d(1, 1,
    (1, 2s + 1)) smoothing along time, initialised to an average."""
    layers: list[nn.Module] = []
    for s in scales:
        conv = nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False)
        nn.init.constant_(conv.weight, 1.0 / (2 * s + 1))
        layers += [Stretch2d(s), conv]
    return nn.Sequential(*layers)


class PWGResidualBlock(nn.Module):
    """A Parallel WaveGAN residual block: a dilated non-causal conv, a 1x1 conv of the auxiliary
    features, gated tanh * sigmoid, 1x1 output and skip convs."""

    def __init__(self, residual: int, gate: int, skip: int, aux: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(residual, gate, 3, padding=dilation, dilation=dilation)
        self.conv1x1_aux = nn.Conv1d(aux, gate, 1, bias=False)
        self.conv1x1_out = nn.Conv1d(gate // 2, residual, 1)
        self.conv1x1_skip = nn.Conv1d(gate // 2, skip, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = (self.conv(x) + self.conv1x1_aux(c)).chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        return (self.conv1x1_out(z) + x) * math.sqrt(0.5), self.conv1x1_skip(z)


class ParallelWaveGANGenerator(nn.Module):
    """Parallel WaveGAN's generator (Yamamoto et al. 2020): a non-causal WaveNet on Gaussian
    noise, conditioned on the mel through a context conv and a stretch-and-conv upsampler."""

    def __init__(
        self,
        aux: int = 8,
        residual: int = 8,
        gate: int = 16,
        skip: int = 8,
        layers: int = 4,
        stacks: int = 2,
        scales: tuple[int, ...] = (2, 2),
        context: int = 2,
    ) -> None:
        super().__init__()
        self.first_conv = nn.Conv1d(1, residual, 1)
        self.conv_in = nn.Conv1d(aux, aux, 2 * context + 1, bias=False)
        self.upsample = _stretch_upsampler(scales)
        per_stack = layers // stacks
        self.conv_layers = nn.ModuleList(
            PWGResidualBlock(residual, gate, skip, aux, 2 ** (i % per_stack)) for i in range(layers)
        )
        self.last_conv_layers = nn.Sequential(
            nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, 1, 1)
        )

    def forward(self, noise: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        c = self.upsample(self.conv_in(mel).unsqueeze(1)).squeeze(1)
        x = self.first_conv(noise)
        skips = 0
        for block in self.conv_layers:
            x, h = block(x, c)
            skips = skips + h
        return self.last_conv_layers(skips * math.sqrt(1.0 / len(self.conv_layers)))


def kaiser_sinc_filter1d(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """BigVGAN's Kaiser-windowed sinc low-pass filter, (1, 1, kernel_size)."""
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = torch.arange(-half, half) + 0.5 if even else torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class SnakeBeta(nn.Module):
    """BigVGAN's periodic activation ``x + 1 / beta * sin(alpha x)^2``, with a learnable alpha
    and beta per channel (log scale): elementwise, no output units."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp().unsqueeze(0).unsqueeze(-1)
        beta = self.beta.exp().unsqueeze(0).unsqueeze(-1)
        return x + 1.0 / (beta + 1e-9) * torch.sin(x * alpha).pow(2)


class AntiAliasedActivation(nn.Module):
    """BigVGAN's Activation1d: upsample 2x (a depthwise transposed conv with the low-pass
    filter), the activation, low-pass and downsample 2x (a depthwise strided conv)."""

    def __init__(self, channels: int, ratio: int = 2, kernel: int = 12) -> None:
        super().__init__()
        self.ratio, self.kernel = ratio, kernel
        self.act = SnakeBeta(channels)
        self.register_buffer("filter", kaiser_sinc_filter1d(0.5 / ratio, 0.6 / ratio, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, ratio, kernel = x.shape[1], self.ratio, self.kernel
        taps = self.filter.expand(channels, -1, -1)
        pad = kernel // ratio - 1
        cut_left = pad * ratio + (kernel - ratio) // 2
        cut_right = pad * ratio + (kernel - ratio + 1) // 2
        x = F.pad(x, (pad, pad), mode="replicate")
        x = ratio * F.conv_transpose1d(x, taps, stride=ratio, groups=channels)
        x = self.act(x[..., cut_left:-cut_right])
        x = F.pad(x, (kernel // 2 - 1, kernel // 2), mode="replicate")
        return F.conv1d(x, taps, stride=ratio, groups=channels)


class AMPBlock(nn.Module):
    """BigVGAN's anti-aliased multi-periodicity block: per dilation an activation, a dilated
    conv, an activation, a conv, and the residual."""

    def __init__(self, channels: int, kernel: int = 3, dilations: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )
        self.activations = nn.ModuleList(
            AntiAliasedActivation(channels) for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acts = iter(self.activations)
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(next(acts)(c1(next(acts)(x))))
        return x


class BigVGANGenerator(nn.Module):
    """BigVGAN's generator (Lee et al. 2023): a 7-tap conv, per upsampling rate a
    ConvTranspose1d and an AMP block with Snake-beta activations, an anti-aliased activation,
    a 7-tap conv without bias and tanh."""

    def __init__(self, mels: int = 8, channels: int = 16, rates: tuple[int, ...] = (2, 2)):
        super().__init__()
        self.conv_pre = nn.Conv1d(mels, channels, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, r in enumerate(rates):
            ch = channels // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(2 * ch, ch, 2 * r, stride=r, padding=r // 2))
            self.resblocks.append(AMPBlock(ch))
        self.activation_post = AntiAliasedActivation(ch)
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3, bias=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for up, block in zip(self.ups, self.resblocks, strict=True):
            x = block(up(x))
        return torch.tanh(self.conv_post(self.activation_post(x)))


class ConvNeXtBlock(nn.Module):
    """Vocos's ConvNeXt block: a depthwise 7-tap conv, LayerNorm, Linear-GELU-Linear, a layer
    scale ``gamma`` (elementwise) and the residual."""

    def __init__(self, dim: int, intermediate: int, scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate)
        self.pwconv2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.transpose(1, 2)


class Vocos(nn.Module):
    """Vocos (Siuzdak 2023): a conv embedding, LayerNorm, ConvNeXt blocks, LayerNorm, and an
    ISTFT head: a Linear to log-magnitude and phase, ``torch.istft``."""

    def __init__(
        self, mels: int = 8, dim: int = 16, layers: int = 2, n_fft: int = 16, hop: int = 4
    ) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.embed = nn.Conv1d(mels, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, 3 * dim, 1 / layers) for _ in range(layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        x = self.out(self.final_layer_norm(x.transpose(1, 2))).transpose(1, 2)
        magnitude, phase = x.chunk(2, dim=1)
        spec = torch.exp(magnitude).clip(max=1e2) * torch.polar(torch.ones_like(phase), phase)
        return torch.istft(spec, self.n_fft, self.hop, self.n_fft, self.window, center=True)


class Demucs(nn.Module):
    """Demucs (Défossez et al. 2019, v2): encoder layers Conv1d(K 8, stride 4)-ReLU-1x1
    conv-GLU, a 2-layer BiLSTM with a Linear in the middle, decoder layers 3-tap conv-GLU-
    ConvTranspose1d(K 8, stride 4) (ReLU but the last), U-Net skips trimmed to the centre."""

    def __init__(
        self,
        sources: int = 2,
        audio: int = 2,
        channels: int = 4,
        depth: int = 2,
        growth: int = 2,
        kernel: int = 8,
        stride: int = 4,
        context: int = 3,
    ) -> None:
        super().__init__()
        self.sources, self.audio = sources, audio
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        inp = audio
        for index in range(depth):
            self.encoder.append(
                nn.Sequential(
                    nn.Conv1d(inp, channels, kernel, stride),
                    nn.ReLU(),
                    nn.Conv1d(channels, 2 * channels, 1),
                    nn.GLU(dim=1),
                )
            )
            out = inp if index > 0 else sources * audio
            decode: list[nn.Module] = [
                nn.Conv1d(channels, 2 * channels, context),
                nn.GLU(dim=1),
                nn.ConvTranspose1d(channels, out, kernel, stride),
            ]
            if index > 0:
                decode.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*decode))
            inp, channels = channels, growth * channels
        self.lstm = nn.LSTM(inp, inp, num_layers=2, bidirectional=True)
        self.lstm_linear = nn.Linear(2 * inp, inp)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        x, saved = mix, []
        for encode in self.encoder:
            x = encode(x)
            saved.append(x)
        h, _ = self.lstm(x.permute(2, 0, 1))
        x = self.lstm_linear(h).permute(1, 2, 0)
        for decode in self.decoder:
            skip = saved.pop()
            cut = (skip.shape[-1] - x.shape[-1]) // 2
            x = decode(x + skip[..., cut : cut + x.shape[-1]])
        return x.view(x.shape[0], self.sources, self.audio, x.shape[-1])


class GlobalLayerNorm(nn.Module):
    """Conv-TasNet's gLN: normalised over channels and time, then a (1, N, 1) gamma and beta
    (elementwise)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        mean = y.mean(dim=(1, 2), keepdim=True)
        var = (y - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (y - mean) / torch.sqrt(var + 1e-8) + self.beta


class TasNetBlock(nn.Module):
    """A Conv-TasNet 1-D conv block: 1x1 conv, PReLU, gLN, a dilated depthwise conv, PReLU, gLN,
    and 1x1 residual and skip convs."""

    def __init__(self, bottleneck: int, hidden: int, skip: int, kernel: int, dilation: int):
        super().__init__()
        self.conv1x1 = nn.Conv1d(bottleneck, hidden, 1, bias=False)
        self.prelu1, self.norm1 = nn.PReLU(), GlobalLayerNorm(hidden)
        self.depthwise = nn.Conv1d(
            hidden,
            hidden,
            kernel,
            padding=dilation * (kernel - 1) // 2,
            dilation=dilation,
            groups=hidden,
            bias=False,
        )
        self.prelu2, self.norm2 = nn.PReLU(), GlobalLayerNorm(hidden)
        self.res_conv = nn.Conv1d(hidden, bottleneck, 1, bias=False)
        self.skip_conv = nn.Conv1d(hidden, skip, 1, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm1(self.prelu1(self.conv1x1(x)))
        h = self.norm2(self.prelu2(self.depthwise(h)))
        return x + self.res_conv(h), self.skip_conv(h)


class ConvTasNet(nn.Module):
    """Conv-TasNet (Luo & Mesgarani 2019): a learned encoder (strided conv, ReLU), a separator
    (gLN, a bottleneck 1x1 conv, repeats of dilated conv blocks, PReLU, a 1x1 mask conv,
    sigmoid) and a transposed-conv decoder per source."""

    def __init__(
        self,
        n: int = 16,
        length: int = 8,
        b: int = 8,
        h: int = 16,
        sc: int = 8,
        p: int = 3,
        x: int = 3,
        r: int = 2,
        sources: int = 2,
    ) -> None:
        super().__init__()
        self.sources, self.n = sources, n
        self.encoder = nn.Conv1d(1, n, length, stride=length // 2, bias=False)
        self.layer_norm = GlobalLayerNorm(n)
        self.bottleneck = nn.Conv1d(n, b, 1, bias=False)
        self.blocks = nn.ModuleList(
            TasNetBlock(b, h, sc, p, 2**i) for _ in range(r) for i in range(x)
        )
        self.prelu = nn.PReLU()
        self.mask_conv = nn.Conv1d(sc, sources * n, 1, bias=False)
        self.decoder = nn.ConvTranspose1d(n, 1, length, stride=length // 2, bias=False)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        w = torch.relu(self.encoder(mixture))
        x, skips = self.bottleneck(self.layer_norm(w)), 0
        for block in self.blocks:
            x, s = block(x)
            skips = skips + s
        masks = torch.sigmoid(self.mask_conv(self.prelu(skips)))
        masked = w.unsqueeze(1) * masks.view(w.shape[0], self.sources, self.n, -1)
        out = self.decoder(masked.flatten(0, 1))
        return out.view(w.shape[0], self.sources, -1)


class LocationSensitiveAttention(nn.Module):
    """Tacotron 2's attention: ``v^T tanh(W q + V h + U f)`` with location features f from a
    Conv1d over the previous and cumulative attention weights and a Linear."""

    def __init__(self, query: int, memory: int, dim: int, filters: int, kernel: int) -> None:
        super().__init__()
        self.query_layer = nn.Linear(query, dim, bias=False)
        self.memory_layer = nn.Linear(memory, dim, bias=False)
        self.v = nn.Linear(dim, 1, bias=False)
        self.location_conv = nn.Conv1d(2, filters, kernel, padding=(kernel - 1) // 2, bias=False)
        self.location_dense = nn.Linear(filters, dim, bias=False)

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        processed: torch.Tensor,
        weights_cat: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        location = self.location_dense(self.location_conv(weights_cat).transpose(1, 2))
        energies = self.v(torch.tanh(self.query_layer(query).unsqueeze(1) + location + processed))
        weights = F.softmax(energies.squeeze(-1), dim=1)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


class Tacotron2(nn.Module):
    """Tacotron 2 (Shen et al. 2018), teacher-forced: a character embedding, an encoder of 3
    convs with BatchNorm and a BiLSTM, a decoder of a 2-layer prenet (dropout always on, as in
    the paper), an attention LSTMCell, location-sensitive attention, a decoder LSTMCell, mel and
    stop-token projections, and a 5-conv postnet with BatchNorm."""

    def __init__(
        self,
        symbols: int = 32,
        dim: int = 16,
        mels: int = 8,
        prenet: int = 8,
        rnn: int = 16,
        attention: int = 8,
        filters: int = 4,
        kernel: int = 5,
    ) -> None:
        super().__init__()
        self.mels, self.rnn, self.dim = mels, rnn, dim
        self.embedding = nn.Embedding(symbols, dim)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(dim, dim, 5, padding=2), nn.BatchNorm1d(dim)) for _ in range(3)
        )
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)
        self.prenet = nn.ModuleList(
            [nn.Linear(mels, prenet, bias=False), nn.Linear(prenet, prenet, bias=False)]
        )
        self.attention_rnn = nn.LSTMCell(prenet + dim, rnn)
        self.attention = LocationSensitiveAttention(rnn, dim, attention, filters, kernel)
        self.decoder_rnn = nn.LSTMCell(rnn + dim, rnn)
        self.linear_projection = nn.Linear(rnn + dim, mels)
        self.gate_layer = nn.Linear(rnn + dim, 1)
        chans = [mels] + [dim] * 4 + [mels]
        self.postnet = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, 5, padding=2), nn.BatchNorm1d(b))
            for a, b in itertools.pairwise(chans)
        )

    def forward(self, text: torch.Tensor, mels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embedding(text).transpose(1, 2)
        for conv in self.convs:
            x = F.dropout(torch.relu(conv(x)), 0.5, self.training)
        memory, _ = self.lstm(x.transpose(1, 2))
        processed = self.attention.memory_layer(memory)
        frames = torch.cat([mels.new_zeros(mels.shape[0], self.mels, 1), mels[..., :-1]], dim=2)
        h = frames.transpose(1, 2)
        for linear in self.prenet:
            h = F.dropout(torch.relu(linear(h)), 0.5, training=True)
        batch, steps = text.shape[0], mels.shape[2]
        att_h = att_c = dec_h = dec_c = memory.new_zeros(batch, self.rnn)
        weights = cumulative = memory.new_zeros(batch, text.shape[1])
        context = memory.new_zeros(batch, self.dim)
        outputs, gates, alignments = [], [], []
        for t in range(steps):
            att_h, att_c = self.attention_rnn(torch.cat([h[:, t], context], -1), (att_h, att_c))
            stacked = torch.stack([weights, cumulative], dim=1)
            context, weights = self.attention(att_h, memory, processed, stacked)
            cumulative = cumulative + weights
            dec_h, dec_c = self.decoder_rnn(torch.cat([att_h, context], -1), (dec_h, dec_c))
            out = torch.cat([dec_h, context], -1)
            outputs.append(self.linear_projection(out))
            gates.append(self.gate_layer(out))
            alignments.append(weights)
        mel_out = torch.stack(outputs, dim=2)
        post = mel_out
        for i, conv in enumerate(self.postnet):
            post = conv(post)
            post = F.dropout(torch.tanh(post) if i < 4 else post, 0.5, self.training)
        return mel_out, mel_out + post, torch.cat(gates, 1), torch.stack(alignments, 1)


class MelResBlock(nn.Module):
    def __init__(self, dims: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dims, dims, 1, bias=False)
        self.conv2 = nn.Conv1d(dims, dims, 1, bias=False)
        self.batch_norm1, self.batch_norm2 = nn.BatchNorm1d(dims), nn.BatchNorm1d(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.batch_norm2(self.conv2(torch.relu(self.batch_norm1(self.conv1(x)))))


class WaveRNN(nn.Module):
    """WaveRNN (Kalchbrenner et al. 2018) as a mel vocoder (the widely used fatchord form): a
    MelResNet (convs with BatchNorm) for auxiliary features, a stretch-and-conv upsampler, an
    input Linear, two GRUs and three Linear heads to the logits of 9-bit samples."""

    def __init__(
        self,
        mels: int = 8,
        compute: int = 16,
        res_out: int = 16,
        rnn: int = 16,
        fc: int = 16,
        bits: int = 9,
        pad: int = 2,
        scales: tuple[int, ...] = (2, 2),
    ):
        super().__init__()
        self.aux = res_out // 4
        self.hop = math.prod(scales)
        self.indent = pad * self.hop
        self.conv_in = nn.Conv1d(mels, compute, 2 * pad + 1, bias=False)
        self.batch_norm = nn.BatchNorm1d(compute)
        self.layers = nn.ModuleList(MelResBlock(compute) for _ in range(2))
        self.conv_out = nn.Conv1d(compute, res_out, 1)
        self.upsample = _stretch_upsampler(scales)
        self.I = nn.Linear(mels + self.aux + 1, rnn)
        self.rnn1 = nn.GRU(rnn, rnn, batch_first=True)
        self.rnn2 = nn.GRU(rnn + self.aux, rnn, batch_first=True)
        self.fc1 = nn.Linear(rnn + self.aux, fc)
        self.fc2 = nn.Linear(fc + self.aux, fc)
        self.fc3 = nn.Linear(fc, 2**bits)

    def forward(self, x: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        aux = torch.relu(self.batch_norm(self.conv_in(mels)))
        for layer in self.layers:
            aux = layer(aux)
        aux = self.conv_out(aux).repeat_interleave(self.hop, dim=2).transpose(1, 2)
        m = self.upsample(mels.unsqueeze(1)).squeeze(1)[:, :, self.indent : -self.indent]
        a1, a2, a3, a4 = aux.split(self.aux, dim=2)
        h = self.I(torch.cat([x.unsqueeze(-1), m.transpose(1, 2), a1], dim=2))
        h = h + self.rnn1(h)[0]
        h = h + self.rnn2(torch.cat([h, a2], dim=2))[0]
        h = torch.relu(self.fc1(torch.cat([h, a3], dim=2)))
        h = torch.relu(self.fc2(torch.cat([h, a4], dim=2)))
        return self.fc3(h)


class ConformerBlock(nn.Module):
    """A Conformer block (Gulati et al. 2020): half FFN, multi-head self-attention, the conv
    module (pointwise conv, GLU, depthwise conv, BatchNorm, Swish, pointwise conv), half FFN,
    LayerNorm; each module pre-normed with a residual."""

    def __init__(self, dim: int = 16, heads: int = 2, kernel: int = 7) -> None:
        super().__init__()

        def ffn() -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, dim)
            )

        self.ffn1, self.ffn2 = ffn(), ffn()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise2 = nn.Conv1d(dim, dim, 1)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        h = self.attn_norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        h = F.glu(self.pointwise1(self.conv_norm(x).transpose(1, 2)), dim=1)
        h = self.pointwise2(F.silu(self.batch_norm(self.depthwise(h))))
        x = x + h.transpose(1, 2)
        return self.final_norm(x + 0.5 * self.ffn2(x))


class Conformer(nn.Module):
    """A Conformer encoder with a CTC head: Conv2d subsampling (two 3x3 stride-2 convs), a
    Linear, two blocks, a Linear to the vocabulary (the blocks end in LayerNorm, whose outputs'
    mean square is 1 whatever the weights: without a head the training step sees no gradient)."""

    def __init__(self, mels: int = 16, dim: int = 16, blocks: int = 2, vocab: int = 32) -> None:
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv2d(1, dim, 3, 2), nn.ReLU(), nn.Conv2d(dim, dim, 3, 2), nn.ReLU()
        )
        self.input_proj = nn.Linear(dim * (((mels - 1) // 2 - 1) // 2), dim)
        self.blocks = nn.ModuleList(ConformerBlock(dim) for _ in range(blocks))
        self.head = nn.Linear(dim, vocab)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.subsample(features.unsqueeze(1))  # (B, C, T', F')
        x = self.input_proj(h.permute(0, 2, 1, 3).flatten(2))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class SineGen(nn.Module):
    """The NSF sine source: harmonics 1..H+1 of the upsampled F0, a random initial phase,
    Gaussian noise added (and alone where unvoiced)."""

    def __init__(
        self, harmonics: int = 4, rate: int = 400, amp: float = 0.1, noise_std: float = 0.003
    ) -> None:
        super().__init__()
        self.harmonics, self.rate, self.amp, self.noise_std = harmonics, rate, amp, noise_std

    def forward(self, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        multiples = torch.arange(1, self.harmonics + 2, dtype=f0.dtype)
        rad = (f0 * multiples / self.rate) % 1
        phase = torch.rand(f0.shape[0], 1, self.harmonics + 1, dtype=f0.dtype)
        rad = torch.cat([rad[:, :1] + phase, rad[:, 1:]], dim=1)
        sines = torch.sin(torch.cumsum(rad, dim=1) * 2 * math.pi) * self.amp
        uv = (f0 > 0).to(f0.dtype)
        noise_amp = uv * self.noise_std + (1 - uv) * self.amp / 3
        return sines * uv + noise_amp * torch.randn_like(sines), uv


class NeuralFilterBlock(nn.Module):
    """An NSF filter block: a Linear up to the hidden width (tanh), dilated causal convs with
    gated tanh * sigmoid units plus the condition and residuals, two Linears down (tanh), and
    the block's input signal added."""

    def __init__(self, hidden: int = 8, layers: int = 3, kernel: int = 3) -> None:
        super().__init__()
        self.l_ff_1 = nn.Linear(1, hidden, bias=False)
        self.l_convs = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel, dilation=2**i) for i in range(layers)
        )
        self.l_ff_2 = nn.Linear(hidden, hidden // 4, bias=False)
        self.l_ff_3 = nn.Linear(hidden // 4, 1, bias=False)

    def forward(self, signal: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.l_ff_1(signal)).transpose(1, 2)
        for conv in self.l_convs:
            a, b = _causal(h, conv).chunk(2, dim=1)
            h = (h + torch.tanh(a) * torch.sigmoid(b) + context) * math.sqrt(0.5)
        h = torch.tanh(self.l_ff_2(h.transpose(1, 2)))
        return torch.tanh(self.l_ff_3(h)) + signal


def _fir(cutoff: float, taps: int = 9, high: bool = False) -> torch.Tensor:
    """A windowed-sinc FIR, low-pass (or high-pass by spectral inversion), (1, 1, taps)."""
    time = torch.arange(taps) - taps // 2
    low = 2 * cutoff * torch.sinc(2 * cutoff * time) * torch.hamming_window(taps, periodic=False)
    low = low / low.sum()
    if high:
        low = -low
        low[taps // 2] += 1
    return low.view(1, 1, taps)


class HnNSF(nn.Module):
    """The harmonic-plus-noise neural source-filter model (Wang & Yamagishi 2019): a condition
    module (BiLSTM and a conv over the acoustic features, upsampled), a source module (sines of
    F0's harmonics merged by a Linear, tanh; a noise source), a harmonic branch of filter blocks
    and a noise branch of one, mixed by low- and high-pass FIRs chosen by voicing."""

    def __init__(
        self, features: int = 8, hidden: int = 8, hop: int = 4, harmonics: int = 4, blocks: int = 2
    ) -> None:
        super().__init__()
        self.hop = hop
        self.l_blstm = nn.LSTM(features, hidden // 2, batch_first=True, bidirectional=True)
        self.l_conv1d = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.sine = SineGen(harmonics)
        self.l_linear = nn.Linear(harmonics + 1, 1)
        self.harmonic = nn.ModuleList(NeuralFilterBlock(hidden) for _ in range(blocks))
        self.noise = NeuralFilterBlock(hidden)
        for name, cutoff, high in (
            ("lp_voiced", 0.25, False),
            ("hp_voiced", 0.25, True),
            ("lp_unvoiced", 0.1, False),
            ("hp_unvoiced", 0.1, True),
        ):
            self.register_buffer(name, _fir(cutoff, high=high))

    def forward(self, features: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        context, _ = self.l_blstm(features)
        context = self.l_conv1d(context.transpose(1, 2)).repeat_interleave(self.hop, dim=2)
        f0 = f0.repeat_interleave(self.hop, dim=1)
        sines, uv = self.sine(f0)
        source = torch.tanh(self.l_linear(sines))
        noise = torch.randn_like(uv) * self.sine.amp / 3
        h = source
        for block in self.harmonic:
            h = block(h, context)
        n = self.noise(noise, context)
        h, n, uv = h.transpose(1, 2), n.transpose(1, 2), uv.transpose(1, 2)
        pad = self.lp_voiced.shape[-1] // 2

        def fir(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
            return F.conv1d(x, taps, padding=pad)

        voiced = fir(h, self.lp_voiced) + fir(n, self.hp_voiced)
        unvoiced = fir(h, self.lp_unvoiced) + fir(n, self.hp_unvoiced)
        return uv * voiced + (1 - uv) * unvoiced


def _hn_nsf_inputs() -> Inputs:
    f0 = 100 + 60 * torch.rand(2, 12, 1, generator=generator(2))
    f0[:, 8:] = 0.0  # unvoiced frames
    return (_randn(2, 12, 8), f0)


def audio_cases() -> list[Case]:
    """Twelve audio models written from their papers in plain torch (vocoders, a
    discriminator, source separation, text to spectrogram, an ASR encoder), tiny, random
    weights. Their elementwise parameters are in :data:`MODULE_USES` (Snake-beta's alpha and
    beta, Vocos's layer scale, Conv-TasNet's gLN, PReLU)."""
    return [
        Case("WaveNet (audio)", WaveNet, lambda: (_randn(2, 1, 48), _randn(2, 8, 12, seed=2))),
        Case("MelGAN generator (audio)", MelGANGenerator, lambda: (_randn(2, 8, 12),)),
        Case("MelGAN multi-scale discriminator (audio)", MelGANDiscriminator,
             lambda: (_randn(2, 1, 64),)),
        Case("Parallel WaveGAN generator (audio)", ParallelWaveGANGenerator,
             lambda: (_randn(2, 1, 48), _randn(2, 8, 16, seed=2))),
        Case("BigVGAN generator (audio)", BigVGANGenerator, lambda: (_randn(2, 8, 12),)),
        Case("Vocos (audio)", Vocos, lambda: (_randn(2, 8, 12),)),
        Case("Demucs (audio)", Demucs, lambda: (_randn(2, 2, 116),)),
        Case("Conv-TasNet (audio)", ConvTasNet, lambda: (_randn(2, 1, 64),)),
        Case("Tacotron2 (audio)", Tacotron2,
             lambda: (ids(32, (2, 7)), _randn(2, 8, 6, seed=2))),
        Case("WaveRNN (audio)", WaveRNN,
             lambda: (_randn(2, 48).tanh(), _randn(2, 8, 16, seed=2))),
        Case("Conformer (audio)", Conformer, lambda: (_randn(2, 16, 16),)),
        Case("HN-NSF (audio)", HnNSF, _hn_nsf_inputs),
    ]  # fmt: skip
