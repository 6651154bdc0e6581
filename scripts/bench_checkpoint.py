"""Fold a multi-GB sharded safetensors checkpoint: peak memory and time, wnpass vs naive.

Builds (in a temporary folder under /tmp, removed at the end unless ``--keep``) a random
sharded checkpoint of legacy weight-norm pairs (``layers.N.conv.weight_g``/``_v``, float32,
one pair per shard split across two shards) plus plain tensors, written shard by shard. Then,
alternating, each in a fresh process whose own peak resident memory is read with ``wait4``:

- wnpass: ``wnpass fold model.safetensors.index.json -o ...`` (the whole CLI process);
- naive: ``safetensors.torch.load_file`` of every shard into one dict, each pair folded with
  torch in float64 and rounded once, ``save_file`` of every output shard, the index.

Target (issue 12): peak RSS <= 0.5 x the checkpoint's size + 300 MB. Medians of ``--runs``.

    python scripts/bench_checkpoint.py [--size-gib 2.5] [--shard-mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIR_SHAPE = (1024, 512, 8)  # 16 MiB of float32 per v


def build(folder: Path, size_gib: float, shard_mib: int) -> Path:
    """Write the shards and the index, a shard at a time."""
    import torch
    from safetensors.torch import save_file

    pair_bytes = 4 * PAIR_SHAPE[0] * PAIR_SHAPE[1] * PAIR_SHAPE[2]
    per_shard = max(1, shard_mib * 2**20 // pair_bytes)
    shards = max(1, round(size_gib * 2**30 / (per_shard * pair_bytes)))
    generator = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    total = 0
    carry: dict[str, torch.Tensor] = {}
    layer = 0
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = dict(carry)
        carry = {}
        for i in range(per_shard):
            v = torch.randn(PAIR_SHAPE, generator=generator)
            g = torch.rand(PAIR_SHAPE[0], 1, 1, generator=generator) + 0.5
            part[f"layers.{layer}.conv.bias"] = torch.randn(PAIR_SHAPE[0], generator=generator)
            part[f"layers.{layer}.conv.weight_v"] = v
            if i == per_shard - 1 and s < shards - 1:
                carry[f"layers.{layer}.conv.weight_g"] = g  # g in the next shard
            else:
                part[f"layers.{layer}.conv.weight_g"] = g
            layer += 1
        save_file(part, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
        total += sum(t.numel() * t.element_size() for t in part.values())
        del part
    index = folder / "model.safetensors.index.json"
    ordered = dict(sorted(weight_map.items()))
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": ordered}))
    return index


def naive(index: Path, out: Path) -> None:
    """Everything loaded, folded with torch, saved: what a hand-written script does."""
    import torch
    from safetensors.torch import load_file, save_file

    data = json.loads(index.read_text())
    state: dict[str, torch.Tensor] = {}
    for shard in dict.fromkeys(data["weight_map"].values()):
        state.update(load_file(str(index.parent / shard)))
    folded: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for key, shard in data["weight_map"].items():
        if key.endswith("_g"):
            continue
        if key.endswith("_v"):
            name = key[:-2]
            v, g = state[key].double(), state[f"{name}_g"].double()
            folded[name] = torch._weight_norm(v, g, 0).to(state[key].dtype)
            where[name] = shard
        else:
            folded[key], where[key] = state[key], shard
    for shard in dict.fromkeys(where.values()):
        part = {key: folded[key] for key, s in where.items() if s == shard}
        save_file(part, str(out.parent / f"naive-{shard}"), metadata={"format": "pt"})
    weight_map = {key: f"naive-{shard}" for key, shard in where.items()}
    out.write_text(json.dumps({"metadata": data["metadata"], "weight_map": weight_map}))


def measure(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one process, from the kernel (wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(
            f"{argv[:4]} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return seconds, usage.ru_maxrss * 1024


def check_same(folder: Path) -> str:
    """Max |wnpass - naive| over every folded weight (both round once from float64)."""
    from safetensors import safe_open

    ours = json.loads((folder / "out.safetensors.index.json").read_text())["weight_map"]
    theirs = json.loads((folder / "naive.safetensors.index.json").read_text())["weight_map"]
    assert set(ours) == set(theirs)
    worst, weights = 0.0, 0
    for key in ours:
        if not key.endswith(".weight"):
            continue
        with (
            safe_open(str(folder / ours[key]), "pt") as a,
            safe_open(str(folder / theirs[key]), "pt") as b,
        ):
            diff = (a.get_tensor(key).double() - b.get_tensor(key).double()).abs().max()
            worst, weights = max(worst, float(diff)), weights + 1
    return f"{weights} folded weights; max |wnpass - naive torch float64| = {worst:.1e}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.5)
    parser.add_argument("--shard-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--naive", nargs=2, metavar=("INDEX", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        naive(Path(args.naive[0]), Path(args.naive[1]))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="wnpass-bench-checkpoint-", dir="/tmp"))
    try:
        index = build(folder, args.size_gib, args.shard_mib)
        files = [index, *folder.glob("model-*.safetensors")]
        size = sum(p.stat().st_size for p in files)
        wnpass = shutil.which("wnpass") or "wnpass"
        commands = {
            "wnpass": [
                wnpass,
                "fold",
                str(index),
                "-o",
                str(folder / "out.safetensors.index.json"),
            ],
            "naive": [
                sys.executable,
                __file__,
                "--naive",
                str(index),
                str(folder / "naive.safetensors.index.json"),
            ],
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                results[name].append(measure(argv))
        verdict = check_same(folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    target = 0.5 * size + 300e6
    shards = len(files) - 1
    print(
        f"checkpoint {size / 2**30:.2f} GiB in {shards} shards; "
        f"target peak <= {target / 2**20:.0f} MiB"
    )
    print(verdict)
    print(
        f"| tool | time (s), median of {args.runs} | peak RSS (MiB), median (min-max) "
        "| peak / size | within target |"
    )
    print("|---|---:|---:|---:|---|")
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        peaks = [r[1] for r in runs]
        peak = statistics.median(peaks)
        ok = "yes" if peak <= target else "no"
        print(
            f"| {name} | {seconds:.1f} | {peak / 2**20:.0f} ({min(peaks) / 2**20:.0f}-"
            f"{max(peaks) / 2**20:.0f}) | {peak / size:.2f} | {ok} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
