"""How fast this machine trains tiny models, beside its fp32 matmul peak, and where a step's time goes.

    python -m caplab.bench --out bench/bench.json [--compile]

For three sizes (about 25k, 100k and 760k non-embedding parameters, the cpu tier's range) it measures:
- the profile of one training step of the project's own loop (`caplab.step_profile`): seconds by phase and by kind
  of work (matmul, attention, normalisation, elementwise, optimizer, data loading, framework and Python overhead);
- the aggregate training throughput of each way to run a sweep of independent runs on this machine: one process
  using every core's thread (the plain loop), one single-thread process per core (`caplab.substrate.sweep`, what
  the notebooks use), the latter at four times the batch, and with `--compile` one process with `torch.compile`.
It also times the scaling-law fitter's inner loop (`fitting_speed`): one evaluation of the Huber objective and its
exact gradient, by the sympy-compiled formula and by dual numbers, for the Chinchilla and Shannon laws.
Throughput is tokens/s summed over the processes, as achieved FLOP/s and as a share of the fp32 peak (the best time
of a large `torch.matmul` using every core), counted two ways: 6 N per token with N the non-embedding parameters
(the scaling-law convention), and the step's model FLOPs (`model_flops_per_token`), which count every matmul,
the output head's (V d per token, V the vocabulary) and attention's causal scores and weighted sums (6 n_layer T d
per token at context T) included: at these sizes the head and attention are a large part of the step's arithmetic.
Prints tables; writes JSON atomically.
A benchmark, not a test: run it on a quiet machine (another process on the cores changes everything).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time

import torch

from caplab.step_profile import profile_step
from caplab.substrate import data, models
from caplab.substrate.cache import atomic_write_text
from caplab.substrate.family import log_spaced_shapes
from caplab.substrate.sweep import workers
from caplab.substrate.train import TrainConfig, resolve_device, train

SIZES = {"25k": 2.5e4, "100k": 1e5, "760k": 7.6e5}     # non-embedding parameters, the cpu tier's range
STEPS = {"25k": 24, "100k": 16, "760k": 8}             # timed steps per size
BATCH, SEQ = 16, 128


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best achieved FLOP/s of an n x n fp32 matmul (2 n^3 FLOPs) with this process's threads."""
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


def shape_of(size: str) -> dict:
    """The tiny shape (TinySpec dict) of a size label: `log_spaced_shapes`' rule at that parameter count."""
    target = SIZES[size]
    shape = log_spaced_shapes(1, target, target, max_seq_len=SEQ)[0]
    return {k: v for k, v in shape.items() if k != "name"}


def model_flops_per_token(model, seq: int) -> int:
    """A training step's matmul FLOPs per token at context `seq`: 6 (W + n_layer seq d), with W the weights of
    every linear map, the output head included (a matmul even when tied to the input embedding, which is a
    lookup; normalisation and biases do none), and n_layer seq d attention's scores and weighted sums under a
    causal mask (half of the full square's 12 n_layer seq d; Kaplan et al. 2020, Table 1)."""
    from transformers.pytorch_utils import Conv1D
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D)))
    return 6 * (linear + model.config.num_hidden_layers * seq * model.config.hidden_size)


def training_speed(shape: dict, steps: int, blocks, device: str, *, batch: int = BATCH, compile: bool = False
                   ) -> dict:
    """Median step time of the training loop for a shape, after two warm-up steps (three when compiling, whose
    first steps compile; the compile time is reported)."""
    model, _ = models.tiny_model(dict(shape))
    counts = models.param_counts(model)
    started = time.perf_counter()
    if compile:
        model = torch.compile(model)
    warm = 3 if compile else 2
    config = TrainConfig(steps=steps + warm, batch_size=batch, warmup_steps=1, device=device, log_every=1)
    log = train(model, blocks, config).log
    step_s = statistics.median(log.seconds.diff().dropna().iloc[warm - 1:])
    tokens_per_s = batch * SEQ / step_s
    return {"non_embedding": counts["non_embedding"], "total": counts["total"],
            "model_flops_per_token": model_flops_per_token(model, SEQ), "step_s": step_s,
            "tokens_per_s": tokens_per_s, "first_steps_s": float(log.seconds.iloc[warm - 1]),
            "setup_s": time.perf_counter() - started - float(log.seconds.iloc[-1])}


def _child(conn, shape, steps, blocks, batch, compile):
    torch.set_num_threads(1)
    try:
        conn.send(training_speed(shape, steps, blocks, "cpu", batch=batch, compile=compile))
    except BaseException as error:           # reported, not raised: the parent writes it in the table
        conn.send({"error": repr(error)})
    conn.close()


def processes_speed(shape: dict, steps: int, blocks, n: int, batch: int = BATCH, compile: bool = False) -> dict:
    """`n` single-thread processes each training its own copy at the same time: tokens/s summed. Compiling
    children are spawned, not forked: a child forked from a process that has compiled before waits forever on the
    compiler's state it inherited."""
    context = multiprocessing.get_context("spawn" if compile else "fork")
    pipes, procs = [], []
    for _ in range(n):
        parent, child = context.Pipe(duplex=False)
        proc = context.Process(target=_child, args=(child, shape, steps, blocks, batch, compile))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"error": errors[0]}
    return {"non_embedding": results[0]["non_embedding"], "total": results[0]["total"],
            "model_flops_per_token": results[0]["model_flops_per_token"],
            "step_s": statistics.mean(r["step_s"] for r in results),
            "tokens_per_s": sum(r["tokens_per_s"] for r in results)}


def fitting_speed(evals: int = 500, points: int = 40) -> list[dict]:
    """Milliseconds per objective-and-gradient evaluation (the fitter's inner loop) by each gradient method, on
    planted data of `points` rows; one row per law and method."""
    import numpy as np

    from caplab.stats import laws
    from caplab.stats.fitting import Objective, single_threaded_blas

    rng = np.random.default_rng(0)
    x = {"N": np.exp(rng.uniform(np.log(1e4), np.log(1e6), points)),
         "D": np.exp(rng.uniform(np.log(1e5), np.log(1e8), points))}
    cases = {"Chinchilla": (laws.CHINCHILLA, {}, dict(A=400.0, B=2000.0, E=1.8, alpha=0.34, beta=0.36)),
             "Shannon": (laws.SHANNON, {"b": 1.0}, dict(a=0.02, b=1.0, c=1e-4, d=1e-3, e=1.0, alpha=0.15, beta=0.3,
                                                        gamma=0.25, delta=0.35))}
    rows = []
    for name, (law, fixed, truth) in cases.items():
        y = law.predict(truth, x) * np.exp(0.01 * rng.standard_normal(points))
        for gradient in ("compiled", "dual"):
            objective = Objective(law, x, y, 1e-3, fixed, gradient=gradient)
            theta = objective.internal(truth)
            objective.value_and_grad(theta)          # compiles (once per law) and checks against dual numbers
            with single_threaded_blas():
                began = time.perf_counter()
                for _ in range(evals):
                    objective.value_and_grad(theta)
                elapsed = time.perf_counter() - began
            rows.append({"law": name, "gradient": objective.method, "points": points,
                         "ms_per_evaluation": 1e3 * elapsed / evals})
    return rows


def run(device: str = "auto", *, compile: bool = False, sizes: dict | None = None, profile_steps: int = 8,
        matmul_n: int = 2048, corpus_docs: int = 4000, fit_evals: int = 500) -> dict:
    dev = resolve_device(device)
    sizes = sizes or STEPS
    tokenizer = models.tiny_model("0.1M")[1]
    blocks = data.pack_blocks(data.zipf_language(corpus_docs, seed=0), tokenizer, SEQ)
    threads = torch.get_num_threads()
    peak = matmul_peak(dev, matmul_n)
    torch.set_num_threads(1)
    peak_one = matmul_peak(dev, matmul_n)
    torch.set_num_threads(threads)
    cores = workers()
    strategies = {f"1 process x {threads} threads": lambda s, k: training_speed(s, k, blocks, device)}
    if dev.type == "cpu":
        strategies[f"{cores} processes x 1 thread"] = lambda s, k: processes_speed(s, k, blocks, cores)
        strategies[f"{cores} processes x 1 thread, batch x4"] = (
            lambda s, k: processes_speed(s, max(k // 4, 3), blocks, cores, batch=4 * BATCH))
    if compile:
        strategies[f"1 process x {threads} threads, torch.compile"] = (
            lambda s, k: training_speed(s, k, blocks, device, compile=True))
        if dev.type == "cpu":
            strategies[f"{cores} processes x 1 thread, torch.compile"] = (
                lambda s, k: processes_speed(s, k, blocks, cores, compile=True))
    rows, profiles = [], []
    for size, steps in sizes.items():
        shape = shape_of(size)
        profiles.append({"size": size, **profile_step(shape, blocks, batch_size=BATCH, steps=profile_steps,
                                                      device=str(dev))})
        for name, measure in strategies.items():
            try:
                row = measure(shape, steps)
            except Exception as error:       # a strategy that cannot run here (say, no compiler) is reported
                row = {"error": repr(error)}
            if "error" not in row:
                row["flops_per_s"] = 6 * row["non_embedding"] * row["tokens_per_s"]
                row["fraction_of_peak"] = row["flops_per_s"] / peak
                row["model_flops_per_s"] = row["model_flops_per_token"] * row["tokens_per_s"]
                row["model_fraction_of_peak"] = row["model_flops_per_s"] / peak
            rows.append({"size": size, "strategy": name, **row})
    return {"device": str(dev), "threads": threads, "cores": cores, "torch": torch.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "batch": [BATCH, SEQ],
            "load_average": os.getloadavg(), "matmul_peak_flops_per_s": peak,
            "matmul_peak_one_thread_flops_per_s": peak_one, "training": rows, "profiles": profiles,
            "fitting": fitting_speed(fit_evals)}


def table(result: dict) -> str:
    lines = [f"device {result['device']}, {result['threads']} threads, {result['cores']} cores, load average "
             f"{result['load_average'][0]:.1f}; fp32 matmul peak {result['matmul_peak_flops_per_s'] / 1e9:.1f} "
             f"GFLOP/s ({result['matmul_peak_one_thread_flops_per_s'] / 1e9:.1f} on one thread); batch "
             f"{result['batch'][0]} x {result['batch'][1]}", "",
             "where one step's time goes (ms per step; one process, its threads)"]
    kinds = sorted({k for p in result["profiles"] for k in p["kinds"]},
                   key=lambda k: -max(p["kinds"].get(k, 0) for p in result["profiles"]))
    lines.append(f"{'kind':>26} " + " ".join(f"{p['size']:>9}" for p in result["profiles"]))
    lines.append(f"{'step':>26} " + " ".join(f"{p['step_s'] * 1e3:>9.1f}" for p in result["profiles"]))
    for kind in kinds:
        lines.append(f"{kind:>26} " + " ".join(
            f"{p['kinds'].get(kind, 0) * 1e3:>6.1f} {p['kinds'].get(kind, 0) / p['step_s']:>3.0%}"
            if p["step_s"] else f"{'-':>9}" for p in result["profiles"]))
    lines += ["", "aggregate throughput by strategy",
              "(GFLOP/s and share of peak as 6 N tokens/s, N non-embedding; then as the step's model FLOPs, with the "
              "output head and attention)",
              f"{'size':>6} {'non-emb':>9} {'strategy':<40} {'s/step':>8} {'tok/s':>9} {'GFLOP/s':>8} {'of peak':>8}"
              f" {'model':>8} {'of peak':>8}"]
    for r in result["training"]:
        if "error" in r:
            lines.append(f"{r['size']:>6} {'':>9} {r['strategy']:<40} failed: {r['error'][:60]}")
            continue
        lines.append(f"{r['size']:>6} {r['non_embedding']:>9,} {r['strategy']:<40} {r['step_s']:>8.3f} "
                     f"{r['tokens_per_s']:>9,.0f} {r['flops_per_s'] / 1e9:>8.1f} {r['fraction_of_peak']:>8.1%}"
                     f" {r['model_flops_per_s'] / 1e9:>8.1f} {r['model_fraction_of_peak']:>8.1%}")
    lines += ["", "the fitter's inner loop (objective and exact gradient, one thread)",
              f"{'law':>12} {'points':>7} {'gradient':<40} {'ms/eval':>8}"]
    for r in result.get("fitting", []):
        lines.append(f"{r['law']:>12} {r['points']:>7} {r['gradient']:<40} {r['ms_per_evaluation']:>8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/bench.json", help="where to write the JSON result")
    parser.add_argument("--device", default="auto", help="'auto' (cuda if available), 'cpu' or 'cuda'")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes of compiling)")
    args = parser.parse_args(argv)
    result = run(args.device, compile=args.compile)
    print(table(result))
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
