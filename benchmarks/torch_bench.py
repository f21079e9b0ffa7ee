#!/usr/bin/env python3
"""PyTorch anchor figures for `vlm bench --json`: same names, same shapes, same JSON fields.

Run through benchmarks/run_torch.sh (it sets the thread environment that makes the comparison fair: Debian's torch
links OpenBLAS through libblas.so.3, and torch.set_num_threads does not control BLAS threads).

Each line: {"name", "backend": "torch", "shape", "threads", "gflops", "ms", "peak_mb"}; ms is the median of --reps
timed runs after two warm-up runs; peak_mb is the process's peak resident set (ru_maxrss) after the case ran.
"""
import argparse
import os
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn

GEMM_SHAPES = [(1576, 768, 768), (1576, 768, 3072), (1576, 3072, 768), (50, 768, 768)]  # (M, K, N)


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def median_ms(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def emit(name, shape, ms, flop, threads):
    gflops = flop / ms / 1e6 if flop else 0.0
    print(json.dumps({"name": name, "backend": "torch", "shape": shape, "threads": threads,
                      "gflops": round(gflops, 2), "ms": round(ms, 3), "peak_mb": round(peak_mb(), 1)}), flush=True)


def bench_gemm(reps, threads):
    g = torch.Generator().manual_seed(0)
    for m, k, n in GEMM_SHAPES:
        a = torch.randn(m, k, generator=g)
        b = torch.randn(k, n, generator=g)
        c = torch.empty(m, n)
        ms = median_ms(lambda: torch.mm(a, b, out=c), reps)
        emit("gemm", f"{m}x{k}x{n}", ms, 2.0 * m * n * k, threads)


def bench_attention(reps, threads):
    B, H, T, D = 8, 12, 197, 64
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, T, D, generator=g)
    k = torch.randn(B, H, T, D, generator=g)
    v = torch.randn(B, H, T, D, generator=g)
    scale = 1.0 / D ** 0.5

    def run():
        # torch 1.13 has F.scaled_dot_product_attention only as a private op; compose it like `vlm bench` does.
        s = torch.matmul(q, k.transpose(-2, -1)) * scale
        return torch.matmul(torch.softmax(s, dim=-1), v)

    with torch.no_grad():
        ms = median_ms(run, reps)
    emit("attention", f"B{B} H{H} T{T} D{D}", ms, B * H * 2.0 * (2.0 * T * T * D), threads)


def vit_encoder(layers):
    layer = nn.TransformerEncoderLayer(d_model=768, nhead=12, dim_feedforward=3072, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


def encoder_flop(layers, batch, seq=197, d=768, mlp=3072):
    """Forward matmul flops of pre-norm encoder layers (QKV, scores, ·V, out proj, MLP); elementwise ignored."""
    tokens = batch * seq
    per_layer = 2 * tokens * d * (3 * d) + 2 * batch * seq * seq * d * 2 + 2 * tokens * d * d + 2 * tokens * d * mlp * 2
    return layers * per_layer


def bench_vit(reps, threads, batch):
    torch.manual_seed(0)
    model = vit_encoder(12).eval()
    x = torch.randn(batch, 197, 768)
    with torch.no_grad():
        ms = median_ms(lambda: model(x), reps)
    emit(f"vit_b16_forward_b{batch}", f"L12 B{batch} T197 D768", ms, encoder_flop(12, batch), threads)


def bench_train_step(reps, threads):
    torch.manual_seed(0)
    model = vit_encoder(6).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(8, 197, 768)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()

    # Backward is ~2x the forward matmul work.
    ms = median_ms(step, reps)
    emit("train_step_6l_b8", "L6 B8 T197 D768", ms, 3 * encoder_flop(6, 8), threads)


def bridgetower_flop(batch, text_len=50, image=288, patch=16, dt=768, dv=768, h=768, inter=3072, layers=12, cross=6):
    """Matmul FLOPs of one BridgeTowerModel forward at the HF default config (same formula as BenchBridgeTower.Flop)."""
    L, N = float(text_len), float((image // patch) ** 2 + 1)
    pe = 2 * (N - 1) * 3 * patch * patch * dv
    vision = layers * (2 * N * dv * dv * 12 + 4 * N * N * dv)
    text = layers * (2 * L * dt * dt * 4 + 2 * L * dt * inter * 2 + 4 * L * L * dt)
    transforms = cross * (2 * L * dt * h + 2 * N * dv * h)

    def layer(q, kv):
        return (2 * q * h * h * 4 + 4 * q * q * h + 2 * q * h * h * 2 + 2 * kv * h * h * 2 + 4 * q * kv * h
                + 2 * q * h * inter * 2)
    return batch * (pe + vision + text + transforms + cross * (layer(N, L) + layer(L, N)) + 2 * 2 * h * h)


def bench_bridgetower(reps, threads, batch):
    # transformers when importable; otherwise the fixture-checked mirror of its forward (bridgetower_torch.py).
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (batch, 50))
    mask = torch.ones(batch, 50, dtype=torch.long)
    pixels = torch.randn(batch, 3, 288, 288)
    try:
        from transformers import BridgeTowerConfig, BridgeTowerModel  # noqa: optional dependency
        model = BridgeTowerModel(BridgeTowerConfig()).eval()
        run = lambda: model(input_ids=ids, attention_mask=mask, pixel_values=pixels)  # noqa: E731
        impl = "transformers"
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bridgetower_torch import BridgeTower
        model = BridgeTower().eval()
        run = lambda: model(ids, mask, pixels)  # noqa: E731
        impl = "hf-mirror"
    with torch.no_grad():
        ms = median_ms(run, reps)
    emit(f"bridgetower_base_forward_b{batch}", f"B{batch} 288px 50tok {impl}", ms, bridgetower_flop(batch), threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filter", default=None, help="run only benchmarks whose name contains this substring")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="recorded in the output and passed to torch.set_num_threads (BLAS threads come from the env)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cases = [
        ("gemm", lambda: bench_gemm(args.reps, args.threads)),
        ("attention", lambda: bench_attention(args.reps, args.threads)),
        ("vit_b16_forward_b1", lambda: bench_vit(args.reps, args.threads, 1)),
        ("vit_b16_forward_b8", lambda: bench_vit(max(3, args.reps // 2), args.threads, 8)),
        ("train_step_6l_b8", lambda: bench_train_step(max(3, args.reps // 2), args.threads)),
    ]
    cases += [
        ("bridgetower_base_forward_b1", lambda: bench_bridgetower(args.reps, args.threads, 1)),
        ("bridgetower_base_forward_b8", lambda: bench_bridgetower(max(3, args.reps // 2), args.threads, 8)),
    ]

    for name, fn in cases:
        if args.filter is None or args.filter.lower() in name.lower():
            fn()


if __name__ == "__main__":
    main()
