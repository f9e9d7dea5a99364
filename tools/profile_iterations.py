#!/usr/bin/env python3
"""Measure one serving-engine iteration of a Llama-3.1-8B-shaped decoder on a CUDA GPU and
write the times in llmsim's profile format (the columns of `llmsim calibrate PROFILE.csv`).

Why this exists: the shared H200 profile has prefill-only and decode-only rows; this script
also measures `mixed` iterations (prompts and decodes in one forward pass), which the
profiled cost model predicts without having seen any.

The forward pass is lean, as serving engines run it: bf16, random weights (latency does
not depend on their values), fused SDPA attention with grouped-query attention, RoPE,
SwiGLU, logits only for the last token of each sequence, decodes attending to a
preallocated KV cache into which their new key/value is written, and the whole iteration
captured as one CUDA graph and replayed.

Usage: python3 tools/profile_iterations.py OUT.csv [--tiny]   (--tiny: a small model, to
check the script quickly). Needs torch with CUDA.

`profiles/h200_llama-3.1-8b_mixed.csv` was measured with this script on one NVIDIA H200
(torch 2.11.0+cu130) on 2026-11-27: 29 prefill/decode rows and 24 mixed rows. Its pure rows
differ from the shared profile's by up to ~30% for small decode batches (a different
attention kernel choice); fitted on its own pure rows, the profiled model predicts its mixed
rows with MAPE 3.7%, max error 8.5% (tests/calibration.rs checks this).
`profiles/h100_llama-3.1-8b.csv` holds the same pure rows measured on one NVIDIA H100 80GB
(rows whose KV cache exceeds 262,144 tokens left out: they do not fit beside the weights);
the built-in preset `h100-llama3.1-8b` is fitted to it.
"""

import csv
import sys

import torch
import torch.nn.functional as F

LLAMA_8B = dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, mlp=14336, vocab=128256)
TINY = dict(hidden=256, layers=2, heads=4, kv_heads=2, head_dim=64, mlp=512, vocab=1000)
COLUMNS = ["model", "kind", "prefill_seqs", "prefill_len", "prefill_tokens", "decode_batch",
           "decode_context", "batch_tokens", "median_ms", "p10_ms", "p90_ms", "reps"]


class Model:
    def __init__(self, cfg, dev):
        self.c = cfg
        h, kv = cfg["hidden"], cfg["kv_heads"] * cfg["head_dim"]
        w = lambda *s: torch.randn(*s, device=dev, dtype=torch.bfloat16) * 0.02
        self.embed = w(cfg["vocab"], h)
        self.lm_head = w(h, cfg["vocab"])
        self.layers = [dict(qkv=w(h, h + 2 * kv), o=w(h, h), gate_up=w(h, 2 * cfg["mlp"]),
                            down=w(cfg["mlp"], h), n1=torch.ones(h, device=dev, dtype=torch.bfloat16),
                            n2=torch.ones(h, device=dev, dtype=torch.bfloat16)) for _ in range(cfg["layers"])]
        self.norm = torch.ones(h, device=dev, dtype=torch.bfloat16)
        inv = 1.0 / (500000.0 ** (torch.arange(0, cfg["head_dim"], 2, device=dev).float() / cfg["head_dim"]))
        ang = torch.outer(torch.arange(16384, device=dev).float(), inv)
        self.cos, self.sin = ang.cos().to(torch.bfloat16), ang.sin().to(torch.bfloat16)

    def rope(self, x, pos):
        # x: (T, heads, d); rotate halves.
        cos, sin = self.cos[pos][:, None, :], self.sin[pos][:, None, :]
        a, b = x[..., ::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)

    def forward(self, ids, pos, np_, lp, nd, caches, ctx, last):
        c = self.c
        H, KV, D = c["heads"], c["kv_heads"], c["head_dim"]
        x = self.embed[ids]
        P = np_ * lp
        for L, (kc, vc) in zip(self.layers, caches):
            y = F.rms_norm(x, (c["hidden"],), L["n1"])
            qkv = y @ L["qkv"]
            q, k, v = qkv.split([H * D, KV * D, KV * D], dim=-1)
            q = self.rope(q.view(-1, H, D), pos)
            k = self.rope(k.view(-1, KV, D), pos)
            v = v.view(-1, KV, D)
            outs = []
            if np_:
                qp = q[:P].view(np_, lp, H, D).transpose(1, 2)
                kp = k[:P].view(np_, lp, KV, D).transpose(1, 2)
                vp = v[:P].view(np_, lp, KV, D).transpose(1, 2)
                op = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=True)
                outs.append(op.transpose(1, 2).reshape(P, H * D))
            if nd:
                # The new token's key/value go into the cache slot after the context.
                kc[:, ctx] = k[P:]
                vc[:, ctx] = v[P:]
                qd = q[P:].view(nd, 1, H, D).transpose(1, 2)
                od = F.scaled_dot_product_attention(qd, kc.transpose(1, 2), vc.transpose(1, 2), enable_gqa=True)
                outs.append(od.transpose(1, 2).reshape(nd, H * D))
            a = torch.cat(outs) if len(outs) > 1 else outs[0]
            x = x + a @ L["o"]
            y = F.rms_norm(x, (c["hidden"],), L["n2"])
            g, u = (y @ L["gate_up"]).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ L["down"]
        x = F.rms_norm(x[last], (c["hidden"],), self.norm)
        return x @ self.lm_head


def measure(m, dev, np_, lp, nd, ctx, reps=10):
    c = m.c
    P = np_ * lp
    T = P + nd
    ids = torch.randint(0, c["vocab"], (T,), device=dev)
    pos = torch.cat([torch.arange(lp, device=dev).repeat(np_), torch.full((nd,), ctx, device=dev)]).long()
    last = torch.cat([torch.arange(np_, device=dev) * lp + lp - 1, P + torch.arange(nd, device=dev)]).long()
    # Cache layout (batch, slots, kv_heads, head_dim); attention sees it as (b, heads, slots, d).
    caches = [(torch.randn(nd, ctx + 1, c["kv_heads"], c["head_dim"], device=dev, dtype=torch.bfloat16),
               torch.randn(nd, ctx + 1, c["kv_heads"], c["head_dim"], device=dev, dtype=torch.bfloat16))
              if nd else (None, None) for _ in range(c["layers"])]
    run = lambda: m.forward(ids, pos, np_, lp, nd, caches, ctx, last)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        run()
    for _ in range(3):
        g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    del g, caches
    torch.cuda.empty_cache()
    times.sort()
    # Median; second fastest and second slowest of 10 replays stand for p10 and p90.
    return (times[(reps - 1) // 2] + times[reps // 2]) / 2, times[1], times[-2], reps


def shapes(tiny):
    if tiny:
        return [(1, 16, 0, 0), (0, 0, 4, 64), (2, 32, 4, 64)]
    rows = [(1, l, 0, 0) for l in (16, 64, 128, 256, 512, 1024, 2048, 4096)]
    rows += [(4, 128, 0, 0), (4, 512, 0, 0), (8, 512, 0, 0)]
    rows += [(0, 0, n, ctx) for ctx in (128, 512, 2048) for n in (1, 8, 32, 128, 256)]
    rows += [(0, 0, n, 8192) for n in (1, 8, 32)]
    rows += [(np_, lp, n, ctx) for (np_, lp) in ((1, 128), (1, 512), (1, 2048), (4, 256))
             for (n, ctx) in ((8, 512), (32, 2048), (64, 1024), (128, 512), (16, 8192), (256, 128))]
    return rows


def main():
    out, tiny = sys.argv[1], "--tiny" in sys.argv
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = Model(TINY if tiny else LLAMA_8B, dev)
    name = "tiny" if tiny else "llama-3.1-8b"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for np_, lp, nd, ctx in shapes(tiny):
            with torch.inference_mode():
                med, p10, p90, reps = measure(m, dev, np_, lp, nd, ctx)
            kind = "mixed" if np_ and nd else ("prefill" if np_ else "decode")
            w.writerow([name, kind, np_, lp, np_ * lp, nd, ctx, np_ * lp + nd,
                        f"{med:.4f}", f"{p10:.4f}", f"{p90:.4f}", reps])
            f.flush()
            print(kind, np_, lp, nd, ctx, f"{med:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
