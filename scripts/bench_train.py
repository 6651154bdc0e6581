"""Training cost and convergence of weight norm: plain vs wnpass vs PyTorch's parametrization.

python scripts/bench_train.py timing        # step times, CPU, 2 threads -> docs/bench_train.json
python scripts/bench_train.py convergence   # digits, SGD and Adam, seeds -> docs/convergence.png

Timing: one training step (zero_grad, forward, loss, backward, SGD step) of each model in three
variants built from the same seed: plain; ``wnpass.apply_weight_norm``; and the same layers
wrapped by hand with ``torch.nn.utils.parametrizations.weight_norm`` at the same ``dim``. The
variants run interleaved in rounds, in rotating order (so drift hits all alike), and the median
step is reported.
For the LSTM the number of weight-norm forwards per model forward is counted too.

Convergence: a small CNN (no BatchNorm) on scikit-learn's digits (1797 8x8 images, 80/20 split),
plain vs weight norm (init keep) vs weight norm with the paper's data-dependent init, with and
without rescaling v to ||v|| = g; SGD with momentum (lr 0.05) and Adam (lr 1e-3); several seeds.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from wnpass import apply_weight_norm, load_model_py  # noqa: E402
from wnpass.fx.analyse import owner_of  # noqa: E402

DOCS = ROOT / "docs"
THREADS = 2
LR = 1e-4
TARGETS = torch.Generator().manual_seed(0)

# model -> (batch builder, loss); batches are larger than the example inputs so a step is not
# dominated by Python overhead.
Batch = tuple[torch.Tensor, ...]


def _batches() -> dict[str, Callable[[], Batch]]:
    g = torch.Generator().manual_seed(0)
    return {
        "mlp": lambda: (16 * torch.rand(64, 64, generator=g),),
        "resnet": lambda: (16 * torch.rand(64, 1, 8, 8, generator=g),),
        "transformer": lambda: (torch.randn(32, 16, 64, generator=g),),
        "lstm_lm": lambda: (torch.randint(0, 100, (16, 32), generator=g),),
        "lstm_lm_large": lambda: (torch.randint(0, 1000, (16, 32), generator=g),),
    }


def _variants(name: str) -> dict[str, nn.Module]:
    stem, large, _ = name.partition("_large")
    factory = "build_model_large" if large else None
    plain, inputs = load_model_py(ROOT / "models" / "plain" / f"{stem}.py", factory)
    ours = copy.deepcopy(plain)
    report = apply_weight_norm(ours, inputs)
    hand = copy.deepcopy(plain)
    for site in report.sites:
        if site.status == "applied":
            owner, leaf = owner_of(hand, site.name)
            parametrizations.weight_norm(owner, leaf, dim=site.axis)  # type: ignore[arg-type]
    return {"plain": plain.train(), "hand": hand.train(), "wnpass": ours.train()}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> None:
    """Cross-entropy against fixed random targets with a small learning rate: the loss stays
    bounded and the weights barely move, so no variant drifts into inf/NaN or (as a loss that
    reaches 0 does) into slow denormal arithmetic."""
    optimizer.zero_grad(set_to_none=True)
    out = model(*batch).float()
    logits = out.reshape(-1, out.shape[-1])
    targets = torch.randint(0, logits.shape[-1], (len(logits),), generator=TARGETS)
    F.cross_entropy(logits, targets).backward()
    optimizer.step()


def _norm_calls(model: nn.Module, batch: Batch) -> int:
    calls = [0]
    handles = [
        m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for m in model.modules()
        if type(m).__name__ == "_WeightNorm"
    ]
    with torch.no_grad():
        model(*batch)
    for handle in handles:
        handle.remove()
    return calls[0]


def timing(args: argparse.Namespace) -> None:
    torch.set_num_threads(THREADS)
    torch.set_flush_denormal(True)
    results = []
    for name, make in _batches().items():
        if args.models and name not in args.models:
            continue
        batch = make()
        models = _variants(name)
        optimizers = {k: torch.optim.SGD(m.parameters(), lr=LR) for k, m in models.items()}
        samples: dict[str, list[float]] = {k: [] for k in models}
        for key, model in models.items():
            for _ in range(args.warmup):
                _step(model, optimizers[key], batch)
        keys = list(models)
        for round_ in range(args.rounds):  # rotate the order: no variant always runs first
            for key in keys[round_ % 3 :] + keys[: round_ % 3]:
                model = models[key]
                for _ in range(args.steps):
                    start = time.perf_counter()
                    _step(model, optimizers[key], batch)
                    samples[key].append(time.perf_counter() - start)
        median = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
        row = {
            "model": name,
            "batch": [list(t.shape) for t in batch],
            "steps": len(samples["plain"]),
            **{f"{k}_ms": round(v, 3) for k, v in median.items()},
            "wnpass_vs_hand": round(median["wnpass"] / median["hand"], 3),
            "wnpass_vs_plain": round(median["wnpass"] / median["plain"], 3),
            "hand_vs_plain": round(median["hand"] / median["plain"], 3),
            "norm_forwards_hand": _norm_calls(models["hand"], batch),
            "norm_forwards_wnpass": _norm_calls(models["wnpass"], batch),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    meta = {"torch": torch.__version__, "threads": THREADS, "rounds": args.rounds}
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(
        "\n| model | plain ms | hand-wrapped ms | wnpass ms | wnpass / hand | wnpass / plain "
        "| weight-norm forwards per forward (hand / wnpass) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['model']} | {r['plain_ms']:.3f} | {r['hand_ms']:.3f} | {r['wnpass_ms']:.3f} "
            f"| {r['wnpass_vs_hand']:.3f} | {r['wnpass_vs_plain']:.3f} "
            f"| {r['norm_forwards_hand']} / {r['norm_forwards_wnpass']} |"
        )


class SmallCNN(nn.Module):
    """Two 3x3 convs (1 -> 16 -> 32), ReLU, 2x2 average pool, Linear head; no BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(x.flatten(1))


VARIANTS = ("plain", "wn", "wn+data init", "wn+data init+rescale")
LABELS = {
    "plain": "plain",
    "wn": "weight norm (init keep)",
    "wn+data init": "weight norm + data init (paper)",
    "wn+data init+rescale": "weight norm + data init, v rescaled (default)",
}
OPTIMIZERS = {
    "SGD momentum 0.9, lr 0.05": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "Adam, lr 1e-3": lambda p: torch.optim.Adam(p, lr=1e-3),
}


def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return xtr, ytr, xte, yte


def _train(variant: str, opt: str, seed: int, data: tuple[torch.Tensor, ...], epochs: int):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = SmallCNN()
    if variant != "plain":
        init = "data" if "data" in variant else "keep"
        apply_weight_norm(model, (xtr[:256],), init=init, rescale="rescale" in variant)
    optimizer = OPTIMIZERS[opt](model.parameters())
    generator = torch.Generator().manual_seed(seed)
    losses, accuracies = [], []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=generator)
        total = 0.0
        for start in range(0, len(xtr), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            accuracy = float((model(xte).argmax(1) == yte).float().mean())
        losses.append(total / len(xtr))
        accuracies.append(accuracy)
    return losses, accuracies


def convergence(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    torch.set_num_threads(THREADS)
    data = _digits()
    runs: dict[str, dict[str, list[tuple[list[float], list[float]]]]] = {}
    for opt in OPTIMIZERS:
        runs[opt] = {}
        for variant in VARIANTS:
            runs[opt][variant] = [
                _train(variant, opt, seed, data, args.epochs) for seed in range(args.seeds)
            ]
            finals = [acc[-1] for _, acc in runs[opt][variant]]
            print(
                f"{opt:28s} {variant:22s} final test accuracy "
                f"mean {100 * statistics.mean(finals):.1f}% "
                f"(min {100 * min(finals):.1f}, max {100 * max(finals):.1f})",
                flush=True,
            )
    colors = dict(zip(VARIANTS, ("#444444", "#1f77b4", "#d62728", "#2ca02c"), strict=True))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    epochs = range(1, args.epochs + 1)
    for col, opt in enumerate(OPTIMIZERS):
        for variant in VARIANTS:
            for row, index in ((0, 0), (1, 1)):
                series = torch.tensor([run[index] for run in runs[opt][variant]])
                if row == 1:
                    series = 100 * series
                mean = series.mean(0)
                ax = axes[row][col]
                ax.plot(epochs, mean, color=colors[variant], label=LABELS[variant], lw=2)
                ax.fill_between(
                    epochs,
                    series.min(0).values,
                    series.max(0).values,
                    color=colors[variant],
                    alpha=0.15,
                )
        axes[0][col].set_title(opt)
        axes[0][col].set_yscale("log")
        axes[0][col].set_ylabel("training loss (log)")
        axes[1][col].set_ylabel("test accuracy (%)")
        axes[1][col].set_ylim(80, 100)
        axes[1][col].set_xlabel("epoch")
        axes[1][col].xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[1][1].legend(loc="lower right", fontsize=9)
    fig.suptitle(f"Small CNN on scikit-learn digits: mean of {args.seeds} seeds, band = min..max")
    fig.tight_layout()
    fig.savefig(DOCS / "convergence.png", dpi=110)
    summary = {
        opt: {v: [acc[-1] for _, acc in runs[opt][v]] for v in VARIANTS} for opt in OPTIMIZERS
    }
    (DOCS / "convergence.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {DOCS / 'convergence.png'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--rounds", type=int, default=30)
    t.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    t.add_argument("--warmup", type=int, default=20)
    t.add_argument("--models", nargs="*", help="only these (default: all)")
    t.add_argument("--out", type=Path, default=DOCS / "bench_train.json")
    c = sub.add_parser("convergence")
    c.add_argument("--epochs", type=int, default=20)
    c.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    timing(args) if args.what == "timing" else convergence(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
