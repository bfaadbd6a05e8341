"""How fast this machine trains tiny models, beside its fp32 matmul peak.

    python -m caplab.bench --out bench/bench.json

Measures training throughput (tokens/s, achieved FLOP/s = 6 N tokens/s with N non-embedding and total
parameters) with the project's own loop for three model sizes, and the fp32 peak as the best time of a large
`torch.matmul`. Prints a table and writes JSON (atomically). Takes about a minute on two CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from caplab.substrate import data, models
from caplab.substrate.cache import atomic_write_text
from caplab.substrate.train import TrainConfig, resolve_device, train

SIZES = {"0.1M": 24, "1M": 10, "10M": 5}         # preset -> timed steps
BATCH, SEQ = 16, 128


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best achieved FLOP/s of an n x n fp32 matmul (2 n^3 FLOPs)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def training_speed(size: str, steps: int, blocks, device: str) -> dict:
    """Median step time of the training loop for a preset size, after two warm-up steps."""
    model, _ = models.tiny_model({"size": size, "max_seq_len": SEQ})
    counts = models.param_counts(model)
    config = TrainConfig(steps=steps + 2, batch_size=BATCH, warmup_steps=1, device=device)
    log = train(model, blocks, config).log
    step_s = statistics.median(log.seconds.diff().dropna().iloc[1:])
    tokens_per_s = BATCH * SEQ / step_s
    return {"size": size, "non_embedding": counts["non_embedding"], "total": counts["total"], "step_s": step_s,
            "tokens_per_s": tokens_per_s, "flops_per_s": 6 * counts["non_embedding"] * tokens_per_s,
            "flops_per_s_total": 6 * counts["total"] * tokens_per_s}


def run(device: str = "auto") -> dict:
    dev = resolve_device(device)
    tokenizer = models.tiny_model("0.1M")[1]
    blocks = data.pack_blocks(data.zipf_language(4000, seed=0), tokenizer, SEQ)
    peak = matmul_peak(dev)
    rows = [training_speed(size, steps, blocks, device) for size, steps in SIZES.items()]
    for row in rows:
        row["fraction_of_peak"] = row["flops_per_s"] / peak
    return {"device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "batch": [BATCH, SEQ],
            "matmul_peak_flops_per_s": peak, "training": rows}


def table(result: dict) -> str:
    lines = [f"device {result['device']}, {result['threads']} threads, fp32 matmul peak "
             f"{result['matmul_peak_flops_per_s'] / 1e9:.1f} GFLOP/s, batch {result['batch'][0]} x {result['batch'][1]}",
             f"{'size':>6} {'non-emb':>10} {'s/step':>8} {'tok/s':>10} {'GFLOP/s':>9} {'of peak':>8}"]
    for r in result["training"]:
        lines.append(f"{r['size']:>6} {r['non_embedding']:>10,} {r['step_s']:>8.3f} {r['tokens_per_s']:>10,.0f} "
                     f"{r['flops_per_s'] / 1e9:>9.1f} {r['fraction_of_peak']:>8.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/bench.json", help="where to write the JSON result")
    parser.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda'")
    args = parser.parse_args(argv)
    result = run(args.device)
    print(table(result))
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
