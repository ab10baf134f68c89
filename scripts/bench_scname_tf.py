#!/usr/bin/env python3
"""scNAME's pre-training step in TensorFlow (the reference framework), timed on one thread.

A peer measurement for `syncytium bench model`, never a dependency: run by
scripts/bench_scname_vs_tf.sh from a throwaway venv. The network and losses follow the
reference code (aster-ww/scNAME, MODELS.md §2): for each of the clean and the corrupted
branch an encoder G→256→64→32 and decoder 32→64→256 (ReLU, linear bottleneck); on the clean
branch the ZINB heads (mean exp clipped to [1e-5, 1e6] times the size factor, dispersion
softplus clipped to [1e-4, 1e4], dropout sigmoid) with the DCA ZINB loss and ridge 1; on the
corrupted branch the mask head (sigmoid) with binary cross-entropy; Adam. The step is one
tf.function (graph mode, oneDNN), the VIME corruption done in the graph as well. Prints the
median step time and cells/s over the measured steps.
"""
import argparse
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("--input", default="/work/shared/data/pbmc_10x_4k_top2000.h5ad")
ap.add_argument("--genes", type=int, default=1000)
ap.add_argument("--batch", type=int, default=256)
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--shared", action="store_true", help="one encoder/decoder for both branches (Syncytium's default)")
ap.add_argument("--variant", choices=["full", "network"], default="full",
                help="full: corruption, ZINB and BCE in the step; network: the same layers with the corrupted "
                     "batch precomputed outside the timed step and MSE in place of ZINB (the dense shapes alone)")
ap.add_argument("--xla", action="store_true", help="compile the step with XLA (jit_compile=True)")
args = ap.parse_args()
JIT = args.xla

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

# Counts: CSR X of the h5ad, the `genes` most variable log-normalised genes (shapes are what matter).
with h5py.File(args.input, "r") as f:
    x = f["X"]
    data, indices, indptr = x["data"][:], x["indices"][:], x["indptr"][:]
    shape = x.attrs["shape"]
n, g_all = int(shape[0]), int(shape[1])
dense = np.zeros((n, g_all), dtype=np.float32)
for i in range(n):
    dense[i, indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
lib = dense.sum(1, keepdims=True)
logn = np.log1p(dense / np.maximum(lib, 1) * np.median(lib))
top = np.argsort(-logn.var(0))[: args.genes]
counts = dense[:, top]
x_log = logn[:, top]
x_scaled = ((x_log - x_log.mean(0)) / np.maximum(x_log.std(0), 1e-6)).astype(np.float32)
sf = (counts.sum(1) / np.median(counts.sum(1))).astype(np.float32)
G = args.genes

def mlp(widths, last_linear):
    layers = []
    for i, w in enumerate(widths):
        act = None if (last_linear and i == len(widths) - 1) else "relu"
        layers.append(tf.keras.layers.Dense(w, activation=act, kernel_initializer="glorot_uniform"))
    return tf.keras.Sequential(layers)

enc = mlp([256, 64, 32], True)
dec = mlp([64, 256], False)
if args.shared:
    enc_c, dec_c = enc, dec
else:
    enc_c, dec_c = mlp([256, 64, 32], True), mlp([64, 256], False)
heads = tf.keras.layers.Dense(3 * G, kernel_initializer="glorot_uniform")
mask_head = tf.keras.layers.Dense(G, kernel_initializer="glorot_uniform")
opt = tf.keras.optimizers.Adam(1e-3)
for m in (enc, dec, enc_c, dec_c):
    m.build((None, G if m in (enc, enc_c) else 32))
heads.build((None, 256)); mask_head.build((None, 256))
variables = []
for m in (enc, dec, heads, enc_c, dec_c, mask_head):
    for v in m.trainable_variables:
        if all(v is not u for u in variables):
            variables.append(v)

def zinb(xc, mean_l, disp_l, pi_l, s):
    eps = 1e-10
    mu = tf.clip_by_value(tf.exp(mean_l), 1e-5, 1e6) * s
    theta = tf.clip_by_value(tf.nn.softplus(disp_l), 1e-4, 1e4)
    pi = tf.sigmoid(pi_l)
    t1 = tf.math.lgamma(theta + eps) + tf.math.lgamma(xc + 1.0) - tf.math.lgamma(xc + theta + eps)
    t2 = (theta + xc) * tf.math.log(1.0 + mu / (theta + eps)) + xc * (tf.math.log(theta + eps) - tf.math.log(mu + eps))
    nb = t1 + t2 - tf.math.log(1.0 - pi + eps)
    zero_nb = tf.pow(theta / (theta + mu + eps), theta)
    zero = -tf.math.log(pi + (1.0 - pi) * zero_nb + eps)
    res = tf.where(xc < 1e-8, zero, nb) + 1.0 * tf.square(pi)
    return tf.reduce_mean(res)

def train_step(xs, xt, label, xc, s, use_zinb):
    """Both branches, the reconstruction loss (ZINB, or MSE on the mean head) plus mask BCE, one Adam step."""
    with tf.GradientTape() as tape:
        h = heads(dec(enc(xs)))
        if use_zinb:
            l_rec = zinb(xc, h[:, :G], h[:, G:2 * G], h[:, 2 * G:], s[:, None])
        else:
            # MSE on the mean head; the zero-weighted term keeps the whole 256→3G head in the backward
            # pass, so the dense shapes match the full step's.
            l_rec = tf.reduce_mean(tf.square(h[:, :G] - xc)) + tf.reduce_mean(tf.square(h[:, G:])) * 0.0
        logits = mask_head(dec_c(enc_c(xt)))
        loss = l_rec + tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=label, logits=logits))
    grads = tape.gradient(loss, variables)
    opt.apply_gradients(zip(grads, variables))
    return loss

@tf.function(jit_compile=JIT)
def step_network(xs, xt, label, xc, s):
    return train_step(xs, xt, label, xc, s, use_zinb=False)

@tf.function(jit_compile=JIT)
def step(xs, xc, s):
    b = tf.shape(xs)[0]
    # VIME corruption: Bernoulli(0.3) mask, each masked entry replaced by the gene's value in a random batch row.
    m = tf.cast(tf.random.uniform(tf.shape(xs)) < 0.3, tf.float32)
    src = tf.random.uniform(tf.shape(xs), maxval=b, dtype=tf.int32)
    shuffled = tf.gather_nd(tf.transpose(xs), tf.stack([tf.broadcast_to(tf.range(G)[None, :], tf.shape(src)), src], -1))
    xt = xs * (1 - m) + shuffled * m
    label = tf.cast(tf.not_equal(xt, xs), tf.float32)
    return train_step(xs, xt, label, xc, s, use_zinb=True)

rng = np.random.default_rng(0)
times = []
for it in range(args.warmup + args.steps):
    idx = rng.choice(n, args.batch, replace=False)
    xs, xc, s = tf.constant(x_scaled[idx]), tf.constant(counts[idx]), tf.constant(sf[idx])
    if args.variant == "network":
        m = rng.random(xs.shape) < 0.3
        xt_np = np.where(m, x_scaled[idx][rng.integers(0, args.batch, xs.shape), np.arange(G)[None, :]], x_scaled[idx])
        xt, label = tf.constant(xt_np), tf.constant((xt_np != x_scaled[idx]).astype(np.float32))
    t0 = time.perf_counter()
    if args.variant == "network":
        step_network(xs, xt, label, xc, s).numpy()
    else:
        step(xs, xc, s).numpy()
    t1 = time.perf_counter()
    if it >= args.warmup:
        times.append(t1 - t0)
med = float(np.median(times))
print(f"tensorflow {tf.__version__} scname pretrain ({args.variant}): batch {args.batch}, {G} genes, "
      f"{'shared' if args.shared else 'separate'} encoders, {'XLA' if args.xla else 'graph mode'}, 1 thread")
print(f"  step {med * 1000:.2f} ms  ->  {int(args.batch / med)} cells/s")
