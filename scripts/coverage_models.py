"""The model families ``scripts/bench_coverage.py`` runs besides its first 42, and their oracle.

Each family is one :class:`Case`: a name, a builder from a tiny config with random weights (no
model hub), the example inputs, and the uses of weights the model itself declares. Besides the
cases, :data:`MODULE_USES` extends the oracle's table of module types whose forward uses
weights without calling a layer on them, or holds weights no layer type describes (read from
the transformers 5.x sources); ``bench_coverage.py`` merges it into its own.

- :func:`transformers_cases`: text, mixture of experts, state space and recurrent, vision,
  speech, a text-to-speech model with its vocoder, time series;
- :func:`torch_cases`: plain torch models (``nn.Transformer*`` layers, RNN cells, grouped and
  3-D convolutions, tying, ``torch.compile``, other parametrizations).

This module also holds what both scripts share: :class:`Case`, the example input helpers and
the oracle's reasons for a weight that weight norm should not go on.
"""

from __future__ import annotations

import dataclasses
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
