"""PyTorch CPU peer for bench/realScale.ts: random-init models of real checkpoints' shapes
(SmolLM2-135M, Qwen2.5-0.5B), float32, timed the way realScale.ts times the kit, one
measurement ("row") per process so that each row's peak RSS is its own.

It extends ../shared/bench/torch_reference.py (the standard bench's peer) with what the real
shapes need: tied embeddings, q/k/v biases (qwen2), per-model RoPE theta and RMSNorm eps, a
prefill-only forward, and LoRA written in plain PyTorch (no peft): frozen base weights plus
A [r, in] / B [out, r] on q, k, v, o, gate, up and down, scaled by alpha / r.

Needs Debian's python3-torch with a real BLAS (apt-get install -y python3-torch libopenblas0-pthread)
and /usr/bin/python3.
  /usr/bin/python3 torch_real_scale.py --config cfg.json --row prefill|generate|train-full|train-lora|blas
      [--threads 2] [--seq 512] [--batch 1] [--prompt 32] [--new-tokens 32] [--steps 2] [--warmup 1]
      [--lora-r 16] [--lora-alpha 32]
Prints one JSON line: {"what": <row>, "tokens_per_s": ..., "max_rss_mb": ..., "blas": {...}, ...}.
--row blas only reports the BLAS torch loaded (and why a reference BLAS makes ratios meaningless).
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # else OpenBLAS threads fight torch's own
import argparse, json, math, re, resource, time

p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--row", required=True, choices=["prefill", "generate", "train-full", "train-lora", "blas"])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--prompt", type=int, default=32)
p.add_argument("--new-tokens", type=int, default=32)
p.add_argument("--steps", type=int, default=2)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--lora-r", type=int, default=16)
p.add_argument("--lora-alpha", type=float, default=32.0)
a = p.parse_args()

import torch
import torch.nn as nn
import torch.nn.functional as F


def blas_info():
    """Which BLAS this process loaded, from /proc/self/maps (the shared objects actually mapped)
    and torch.__config__.show(). Debian's python3-torch links libblas.so.3, which is whatever the
    libblas.so.3 alternative points to: netlib's reference BLAS (libblas3, ~10x slower) unless
    OpenBLAS (libopenblas0-pthread) or BLIS is installed."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if re.search(r"(blas|lapack|mkl|blis|gomp|iomp)[^/]*\.so", path):
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    names = " ".join(sorted(libs))
    if "mkl" in names:
        kind = "mkl"
    elif "openblas" in names:
        kind = "openblas"
    elif "blis" in names:
        kind = "blis"
    elif re.search(r"/blas/libblas\.so", names):
        kind = "reference"  # netlib, Debian's libblas3
    elif "libblas" in names:
        kind = "unknown-libblas"
    else:
        kind = "none-found"
    show = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", show)
    return {"kind": kind, "libraries": sorted(libs), "torch_blas_info": m.group(1) if m else None,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


torch.set_num_threads(a.threads)
torch.manual_seed(0)
if a.row == "blas":
    print(json.dumps({"what": "blas", "blas": blas_info()}))
    raise SystemExit(0)

with open(a.config) as f:
    c = json.load(f)
V, D, L = c["vocab_size"], c["hidden_size"], c["num_hidden_layers"]
H, KV, I = c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"]
HD = c.get("head_dim") or D // H
THETA = float(c.get("rope_theta", 10000.0))
EPS = float(c.get("rms_norm_eps", 1e-6))
TIED = bool(c.get("tie_word_embeddings", False))
QKV_BIAS = c.get("model_type") == "qwen2" or bool(c.get("attention_bias", False))
LORA = a.row == "train-lora"


class RMSNorm(nn.Module):
    def __init__(s, d):
        super().__init__(); s.w = nn.Parameter(torch.ones(d))

    def forward(s, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * s.w


class LoraLinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update: y = W x + b + (alpha / r) B A x."""

    def __init__(s, base, r, alpha):
        super().__init__()
        s.base = base
        for q in s.base.parameters():
            q.requires_grad_(False)
        s.A = nn.Parameter(torch.randn(r, base.in_features) / math.sqrt(base.in_features))
        s.B = nn.Parameter(torch.zeros(base.out_features, r))
        s.scale = alpha / r

    def forward(s, x):
        return s.base(x) + F.linear(F.linear(x, s.A), s.B) * s.scale


def rope_tables(pos):
    inv = 1.0 / (THETA ** (torch.arange(0, HD, 2).float() / HD))
    f = pos[:, None].float() * inv[None]
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin()


def rope(x, cos, sin):  # x [b,h,t,hd]
    x1, x2 = x[..., : HD // 2], x[..., HD // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1, s.n2 = RMSNorm(D), RMSNorm(D)
        s.q = nn.Linear(D, H * HD, bias=QKV_BIAS); s.k = nn.Linear(D, KV * HD, bias=QKV_BIAS)
        s.v = nn.Linear(D, KV * HD, bias=QKV_BIAS); s.o = nn.Linear(H * HD, D, bias=False)
        s.g = nn.Linear(D, I, bias=False); s.u = nn.Linear(D, I, bias=False); s.d = nn.Linear(I, D, bias=False)

    def forward(s, x, cos, sin, cache=None):
        b, t, _ = x.shape
        h = s.n1(x)
        q = rope(s.q(h).view(b, t, H, HD).transpose(1, 2), cos, sin)
        k = rope(s.k(h).view(b, t, KV, HD).transpose(1, 2), cos, sin)
        v = s.v(h).view(b, t, KV, HD).transpose(1, 2)
        if cache is not None:
            if cache[0] is not None:
                k = torch.cat([cache[0], k], 2); v = torch.cat([cache[1], v], 2)
            cache[0], cache[1] = k, v
        k = k.repeat_interleave(H // KV, 1); v = v.repeat_interleave(H // KV, 1)
        att = q @ k.transpose(-1, -2) / math.sqrt(HD)
        if t > 1:
            att = att + torch.triu(torch.full((t, k.shape[2]), float("-inf")), k.shape[2] - t + 1)
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, H * HD)
        x = x + s.o(y)
        h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))


class LM(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, D); s.blocks = nn.ModuleList([Block() for _ in range(L)])
        s.norm = RMSNorm(D); s.head = nn.Linear(D, V, bias=False)
        if TIED:
            s.head.weight = s.emb.weight
        for mod in s.modules():  # HF's _init_weights: normal(0, 0.02), biases zero
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
            if isinstance(mod, nn.Linear) and mod.bias is not None:
                nn.init.zeros_(mod.bias)

    def forward(s, ids, start=0, caches=None, last_only=False):
        cos, sin = rope_tables(torch.arange(start, start + ids.shape[1]))
        x = s.emb(ids)
        for i, bl in enumerate(s.blocks):
            x = bl(x, cos, sin, None if caches is None else caches[i])
        x = s.norm(x)
        return s.head(x[:, -1:] if last_only else x)


def add_lora(m, r, alpha):
    for q in m.parameters():
        q.requires_grad_(False)
    for bl in m.blocks:
        for name in ("q", "k", "v", "o", "g", "u", "d"):
            setattr(bl, name, LoraLinear(getattr(bl, name), r, alpha))


def rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


t_build = time.perf_counter()
m = LM()
nparams = sum(q.numel() for q in {id(q): q for q in m.parameters()}.values())
if LORA:
    add_lora(m, a.lora_r, a.lora_alpha)
build_s = time.perf_counter() - t_build
common = {"peer": f"torch-{torch.__version__}", "threads": a.threads, "params": nparams, "build_s": round(build_s, 2)}
g = torch.Generator().manual_seed(1)

if a.row == "prefill":
    # A forward over batch x seq tokens without gradients, all logits (as the kit's forward returns them).
    ids = torch.randint(0, V, (a.batch, a.seq), generator=g)
    ts = []
    with torch.no_grad():
        for s in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            m(ids).sum().item()
            if s >= a.warmup:
                ts.append(time.perf_counter() - t0)
    best = min(ts)
    out = {"what": "prefill", "batch": a.batch, "seq": a.seq, "ms": round(best * 1000, 1), "ms_all": [round(t * 1000, 1) for t in ts],
           "tokens_per_s": round(a.batch * a.seq / best, 2)}
elif a.row == "generate":
    # Greedy decoding with a KV cache, cold: the prompt in one pass, then one token per step;
    # time = prompt pass + every step, tokens = batch x new tokens (torch_reference.py's measure).
    prompt = torch.randint(0, V, (a.batch, a.prompt), generator=g)
    with torch.no_grad():
        caches = [[None, None] for _ in range(L)]
        t0 = time.perf_counter()
        nxt = m(prompt, 0, caches, last_only=True)[:, -1].argmax(-1, keepdim=True)
        for i in range(a.new_tokens - 1):
            nxt = m(nxt, a.prompt + i, caches, last_only=True)[:, -1].argmax(-1, keepdim=True)
        dt = time.perf_counter() - t0
    out = {"what": "generate", "batch": a.batch, "prompt": a.prompt, "new_tokens": a.new_tokens, "ms": round(dt * 1000, 1),
           "tokens_per_s": round(a.batch * a.new_tokens / dt, 2)}
else:
    # One training step: forward on batch x seq, mean next-token cross-entropy, backward, AdamW
    # (torch defaults: lr 1e-3 here, weight decay 0.01 on every trained tensor).
    trained = [q for q in m.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-3)
    data = torch.randint(0, V, (a.batch, a.seq + 1), generator=g)
    x, y = data[:, :-1], data[:, 1:]
    ts = []
    for s in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(); loss.backward(); opt.step(); loss.item()
        if s >= a.warmup:
            ts.append(time.perf_counter() - t0)
    best = min(ts)
    out = {"what": a.row, "batch": a.batch, "seq": a.seq, "ms": round(best * 1000, 1), "ms_all": [round(t * 1000, 1) for t in ts],
           "tokens_per_s": round(a.batch * a.seq / best, 2), "trained_params": sum(q.numel() for q in trained), "loss": round(loss.item(), 4)}
    if LORA:
        out.update({"lora_r": a.lora_r, "lora_alpha": a.lora_alpha})
print(json.dumps({**out, **common, "max_rss_mb": rss_mb(), "blas": blas_info()}))
