#!/usr/bin/env python3
"""CICL's training step in PyTorch (its framework), timed on one thread: the peer of
`syncytium bench model --model cicl` (scripts/bench_cicl_vs_torch.sh runs both in one go).

Two variants of the same network and loss (MODELS.md §4; Alunethy/CICL, objective `para`):
  reference  the modules as the reference writes them: MY_MultiHeadAttention with W_Q, W_K, W_V, fc
             and a LayerNorm built inside forward, the clean pass with autograd on, InfoNCELoss and
             CirculatePairConLoss with its Python loop over the clusters (their code, re-typed here).
  lean       the same function written for speed: no W_Q/W_K (a length-1 sequence makes the softmax
             1), the clean pass under no_grad, the pair loss vectorised with a B×B label mask.
Both: 4 blocks (d_model = genes, 2 heads × 512, feed-forward 1024, dropout 0.2), head
Linear(G, 2048)-ReLU-Linear(2048, 512), L2 normalisation, fixed centres (k-means on the untrained
encoder), T = 0.5, λ = 0.1, Adam with the reference's parameter groups. Views are drawn outside the
timed step (the reference draws them once at load time). Prints one line per variant:
  torch <variant>: step X ms  ->  N cells/s
"""
import argparse
import copy
import math
import time

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(path, genes):
    """log1p of counts normalised to the median library size, the `genes` most variable genes
    (dispersion of the log values; enough for timing), dense float32."""
    with h5py.File(path, "r") as f:
        x = f["X"]
        n, g = f["X"].attrs["shape"] if "shape" in f["X"].attrs else (len(x["indptr"]) - 1, None)
        indptr, indices, data = x["indptr"][()], x["indices"][()], x["data"][()]
    g = int(indices.max()) + 1 if g is None else int(g)
    dense = np.zeros((len(indptr) - 1, g), dtype=np.float32)
    for i in range(len(indptr) - 1):
        dense[i, indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
    lib = dense.sum(1, keepdims=True)
    dense = np.log1p(dense / np.maximum(lib, 1) * np.median(lib))
    if genes < g:
        m = dense.mean(0); v = dense.var(0)
        keep = np.argsort(-(v / np.maximum(m, 1e-12)))[:genes]
        dense = dense[:, np.sort(keep)]
    return dense


def noisy(x, rng, p=0.8, std=0.5):
    """The reference's random_gaussian_noise: ⌊p·G⌋ genes without replacement get N(0, std²)."""
    out = x.copy()
    g = x.shape[1]
    for row in out:
        idx = rng.choice(g, int(g * p), replace=False)
        row[idx] += rng.normal(0, std, len(idx)).astype(np.float32)
    return out


# ---- the reference's modules (transformer_encoder.py, sub_training.py), re-typed -----------------

class RefAttention(nn.Module):
    def __init__(self, d_model, nhead, kdim, vdim):
        super().__init__()
        self.n_heads, self.d_k, self.d_v, self.d_model = nhead, kdim, vdim, d_model
        self.W_Q = nn.Linear(d_model, kdim * nhead, bias=False)
        self.W_K = nn.Linear(d_model, kdim * nhead, bias=False)
        self.W_V = nn.Linear(d_model, vdim * nhead, bias=False)
        self.fc = nn.Linear(nhead * vdim, d_model, bias=False)

    def forward(self, x):
        b = x.size(0)
        q = self.W_Q(x).view(b, -1, self.n_heads, self.d_k).transpose(1, 2)
        k = self.W_K(x).view(b, -1, self.n_heads, self.d_k).transpose(1, 2)
        v = self.W_V(x).view(b, -1, self.n_heads, self.d_v).transpose(1, 2)
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / np.sqrt(self.d_k), dim=-1)
        ctx = torch.matmul(attn, v).transpose(1, 2).reshape(b, -1, self.n_heads * self.d_v)
        return nn.LayerNorm(self.d_model)(self.fc(ctx) + x)


class LeanAttention(nn.Module):
    def __init__(self, d_model, nhead, kdim, vdim):
        super().__init__()
        self.W_V = nn.Linear(d_model, vdim * nhead, bias=False)
        self.fc = nn.Linear(nhead * vdim, d_model, bias=False)
        self.d_model = d_model

    def forward(self, x):
        return F.layer_norm(self.fc(self.W_V(x)) + x, (self.d_model,))


class Block(nn.Module):
    def __init__(self, attention, d_model, ff=1024, dropout=0.2):
        super().__init__()
        self.self_attn = attention
        self.linear1, self.linear2 = nn.Linear(d_model, ff), nn.Linear(ff, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src):
        src = self.norm1(src + self.dropout1(self.self_attn(src)))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src))))))


class Encoder(nn.Module):
    def __init__(self, g, lean, layers=4, heads=2, kv=512):
        super().__init__()
        att = (LeanAttention if lean else RefAttention)(g, heads, kv, kv)
        layer = Block(att, g)
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(layers)])   # as _get_clones
        self.norm = nn.LayerNorm(g)

    def forward(self, x):                     # x: (B, 1, G)
        for m in self.layers:
            x = m(x)
        return self.norm(x).view(x.size(0), -1)


class Head(nn.Module):
    def __init__(self, g, centres):
        super().__init__()
        self.contrast_head = nn.Sequential(nn.Linear(g, 2048), nn.ReLU(inplace=True), nn.Linear(2048, 512))
        self.cluster_centers = nn.Parameter(torch.tensor(centres, dtype=torch.float))

    def forward(self, x):
        return self.contrast_head(x)

    def get_cluster_prob(self, e, alpha=1.0):
        d2 = torch.sum((e.unsqueeze(1) - self.cluster_centers) ** 2, 2)
        num = (1.0 / (1.0 + d2 / alpha)) ** ((alpha + 1) / 2)
        return num / torch.sum(num, dim=1, keepdim=True)


def info_nce(z1, z2, t=0.5):
    b = z1.shape[0]
    pos = ((z1 * z2).sum(-1) / t).view(b, 1)
    neg = torch.matmul(z1, z2.t()) / t
    neg = neg.masked_fill(torch.eye(b, dtype=torch.bool), float("-inf"))
    logits = torch.cat((pos, neg), 1)
    return F.cross_entropy(logits, torch.zeros(b, dtype=torch.long), reduction="sum") / b


def circulate_pair_reference(f1, f2, label, t=0.5):
    loss = torch.tensor(0.0)
    for c in torch.unique(label):
        eq, ne = label == c, label != c
        p = torch.cat([f1[eq], f2[eq]], 0)
        n = torch.cat([f1[ne], f2[ne]], 0)
        ng = torch.exp(torch.mm(p, n.t()) / t).sum(-1)
        pos = torch.exp(torch.sum(f1[eq] * f2[eq], -1) / t)
        pos = torch.cat([pos, pos], 0)
        loss = loss + (-torch.log(pos / (ng + pos))).mean()
    return loss


def circulate_pair_masked(f1, f2, label, t=0.5):
    f = torch.cat([f1, f2], 0)
    y = torch.cat([label, label], 0)
    other = (y.unsqueeze(0) != y.unsqueeze(1)).float()
    e = torch.exp(f @ f.t() / t)
    ng = (e * other).sum(1)
    pos = torch.exp((f1 * f2).sum(-1) / t).repeat(2)
    per = -torch.log(pos / (pos + ng))
    counts = torch.bincount(y, minlength=int(y.max()) + 1).float()
    return (per / counts[y]).sum()


def bench(x, variant, batch, steps, warmup, clusters, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lean = variant == "lean"
    g = x.shape[1]
    enc = Encoder(g, lean)
    with torch.no_grad():
        h0 = torch.cat([enc(torch.from_numpy(x[i:i + 512]).unsqueeze(1)) for i in range(0, len(x), 512)]).numpy()
    # k-means centres on the untrained encoder (a few Lloyd steps from random cells: timing only).
    c = h0[rng.choice(len(h0), clusters, replace=False)]
    for _ in range(10):
        lab = ((h0[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([h0[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(clusters)])
    head = Head(g, c)
    opt = torch.optim.Adam([{"params": head.contrast_head.parameters(), "lr": 1e-5},
                            {"params": head.cluster_centers, "lr": 1e-4, "weight_decay": 1e-3},
                            {"params": enc.parameters(), "lr": 1e-4, "weight_decay": 1e-3}], lr=1e-5)
    enc.train(); head.train()
    times = []
    for s in range(warmup + steps):
        idx = rng.choice(len(x), batch, replace=False)
        xb = x[idx]
        v1, v2 = noisy(xb, rng), noisy(xb, rng)
        d0, d1, d2 = (torch.from_numpy(a).unsqueeze(1) for a in (xb, v1, v2))
        t0 = time.perf_counter()
        if lean:
            with torch.no_grad():
                labels = head.get_cluster_prob(enc.eval()(d0)).argmax(1)
            enc.train()
        else:
            labels = head.get_cluster_prob(enc(d0)).argmax(1)
        z = torch.cat([enc(d1), enc(d2)], 0)
        ff = F.normalize(head(z), dim=1)
        f2, f3 = ff[:batch], ff[batch:]
        pair = circulate_pair_masked if lean else circulate_pair_reference
        loss = info_nce(f2, f3) + 0.1 * pair(f2, f3, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if s >= warmup:
            times.append(t1 - t0)
    ms = float(np.median(times)) * 1000
    print(f"torch {variant}: step {ms:.2f} ms  ->  {int(batch / (ms / 1000))} cells/s  "
          f"({sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in head.parameters())} parameters, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", default="/work/shared/data/pbmc_10x_4k_top2000.h5ad")
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--variant", choices=["reference", "lean", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x = load(a.input, a.genes)
    for v in (["reference", "lean"] if a.variant == "both" else [a.variant]):
        bench(x, v, a.batch, a.steps, a.warmup, a.clusters, seed=0)


if __name__ == "__main__":
    main()
