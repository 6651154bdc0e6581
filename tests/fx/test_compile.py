"""torch.compile sees no graph break caused by wnpass: counted with ``torch._dynamo.explain``."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch._dynamo as dynamo
from torch import nn
from torch._dynamo.utils import counters
from torch.nn.utils import parametrizations

from tests.fx.standins import Conv1D, TinyGPT
from wnpass import apply_weight_norm


def _breaks(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[int, int, int]:
    """Graphs, graph breaks (as explain counts them: graphs - 1, recompiles included), and
    the distinct causes of graph breaks dynamo recorded (code it could not trace)."""
    dynamo.reset()
    counters.clear()
    explained = dynamo.explain(model)(*args, **kwargs)
    real = len(counters["graph_break"]) + len(counters["unimplemented"])  # distinct causes
    return explained.graph_count, explained.graph_break_count, real


def _plain_and_rewritten(model: nn.Module, inputs: Any) -> tuple[nn.Module, nn.Module]:
    plain = copy.deepcopy(model)
    report = apply_weight_norm(model, inputs)
    assert report.applied > 0 and report.equivalent
    return plain.eval(), model.eval()


def test_conv_net_compiles_into_one_graph() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.Tanh(),
        nn.ConvTranspose1d(4, 4, 2, stride=2),
        nn.Flatten(),
        nn.Linear(40, 3),
    )
    x = torch.randn(2, 2, 5)
    plain, rewritten = _plain_and_rewritten(net, (x,))
    assert _breaks(plain, x) == _breaks(rewritten, x) == (1, 0, 0)


def test_gpt2_like_stand_in_breaks_only_where_the_plain_model_does() -> None:
    """Its value-dependent ``if`` breaks the graph (the frame then runs eagerly and each
    Conv1D is compiled on its own). wnpass adds no graph break; each parametrized Conv1D is
    recompiled once (PyTorch gives every parametrized module a class of its own), exactly as
    with the same layers wrapped by hand."""
    torch.manual_seed(0)
    ids = torch.randint(0, 16, (2, 5))
    plain, rewritten = _plain_and_rewritten(TinyGPT(), {"input_ids": ids})
    hand = copy.deepcopy(plain)
    for module in hand.modules():
        if isinstance(module, Conv1D):
            parametrizations.weight_norm(module, "weight", dim=1)
    graphs, _, real = _breaks(rewritten, ids)
    assert real == _breaks(plain, ids)[2] > 0  # the user's `if` (and the loop around it)
    assert (graphs, real) == _breaks(hand, ids)[::2] and graphs == 4  # one per Conv1D


def test_transformers_gpt2_decoder_has_no_wnpass_graph_break() -> None:
    transformers = pytest.importorskip(
        "transformers", reason="transformers not installed (pip install -e '.[dev]')"
    )
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    ids = torch.randint(0, 64, (2, 8))
    plain, rewritten = _plain_and_rewritten(
        transformers.GPT2LMHeadModel(config), {"input_ids": ids}
    )
    assert sum(".original0" in name for name, _ in rewritten.named_parameters()) == 8
    expected = _breaks(plain, input_ids=ids, use_cache=False)
    assert _breaks(rewritten, input_ids=ids, use_cache=False) == expected == (1, 0, 0)
