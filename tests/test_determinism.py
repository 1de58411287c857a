"""Every kernel's result is bitwise the same at 1, 2 and 3 threads, on the backends with a CPU thread pool
(docs/threads.md: reductions are cut into parts that depend on the problem alone, added in a fixed order).

The cases reach each code path whose work is split over threads: for conv, the one-channel direct kernel,
the indirect GEMM (stride 1, no padding), im2col with images batched side by side (few output pixels) and
one by one, fewer images than threads, groups, a depthwise conv, a pointwise conv (with one image too), db
alone; the fused conv + pool pair with the one-channel kernel and the composition; dense, batch norm,
pooling, activations, the loss (large enough for its threaded path) and the optimizers.
"""

import subprocess
import sys

import numpy as np
import pytest

import cnnkern
from cnnkern import ops

from .conftest import subprocess_env

THREADS = (1, 2, 3)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _conv(x, w, b=None, **geom):
    def run(be):
        y = ops.conv2d_forward(x, w, b, backend=be, **geom)
        dy = np.sin(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
        return (y,) + tuple(ops.conv2d_backward(dy, x, w, backend=be, need_db=b is not None, **geom))

    return run


def _conv_pool(x, w, b):
    def run(be):
        pool = dict(pool_size=2, activation="relu")
        y, argmax = ops.conv2d_act_maxpool_forward(x, w, b, backend=be, **pool)
        dy = np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape)
        grads = ops.conv2d_act_maxpool_backward(
            dy, y, argmax, x, w, activation="relu", need_dx=False, backend=be
        )
        return (y, argmax) + tuple(g for g in grads if g is not None)

    return run


def cases():
    """{name: run(backend) -> tuple of arrays}, on fixed random data."""
    rng = np.random.default_rng(12)
    r = lambda *s: _rand(rng, *s)  # noqa: E731
    x1, x32, x64 = r(32, 1, 28, 28), r(32, 32, 13, 13), r(32, 64, 5, 5)
    dense_x, dense_w, dense_b = r(96, 1600), r(64, 1600), r(64)
    bn_x, gamma, beta = r(16, 24, 12, 12), r(24), r(24)
    logits, labels = r(4096, 10), rng.integers(0, 10, 4096)
    p_adam, g_adam = r(300_001), r(300_001)

    def batchnorm(be):
        mean, var = np.zeros(24, np.float32), np.ones(24, np.float32)
        y, m, s = ops.batchnorm2d_forward(bn_x, gamma, beta, mean, var, training=True, backend=be)
        dx, dg, db = ops.batchnorm2d_backward(np.tanh(bn_x), bn_x, gamma, m, s, training=True, backend=be)
        return y, m, s, mean, var, dx, dg, db

    def pools(be):
        y, argmax = ops.maxpool2d_forward(x32, kernel_size=3, stride=2, backend=be)
        dx = ops.maxpool2d_backward(y, argmax, x32.shape, backend=be)
        fused = ops.maxpool2d_act_backward(y, argmax, np.abs(x32), "relu", backend=be)
        a = ops.avgpool2d_forward(x32, kernel_size=2, padding=1, backend=be)
        da = ops.avgpool2d_backward(a, x32.shape, kernel_size=2, padding=1, backend=be)
        return y, argmax, dx, fused, a, da

    def dense(be):
        y = ops.dense_bias_act_forward(dense_x, dense_w, dense_b, activation="relu", backend=be)
        y1 = ops.dense_bias_act_forward(dense_x[:1], dense_w, dense_b, backend=be)  # batch 1: the GEMV
        return (y, y1) + tuple(ops.dense_backward(y, dense_x, dense_w, backend=be))

    def activation(be):
        out = []
        for kind in ("relu", "leaky_relu", "sigmoid", "tanh"):
            y = ops.activation_forward(x32, kind, backend=be)
            out += [y, ops.activation_backward(x32, y, kind, backend=be)]
        return tuple(out)

    def loss(be):
        value, probs = ops.softmax_cross_entropy_forward(logits, labels, backend=be)
        return value, probs, ops.softmax_cross_entropy_backward(probs, labels, backend=be)

    def optim(be):
        p, v = p_adam.copy(), np.zeros_like(p_adam)
        ops.sgd_update(p, g_adam, v, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, backend=be)
        q, m, s = p_adam.copy(), np.zeros_like(p_adam), np.zeros_like(p_adam)
        ops.adam_update(q, g_adam, m, s, step=1, lr=1e-3, weight_decay=0.01, backend=be)
        return p, v, q, m, s

    return {
        "conv one channel 3x3": _conv(x1, r(32, 1, 3, 3), r(32)),
        "conv indirect gemm": _conv(x32, r(64, 32, 3, 3), r(64)),
        "conv few pixels (batched)": _conv(x64, r(64, 64, 3, 3), r(64)),
        "conv padded (im2col)": _conv(x32, r(16, 32, 3, 3), r(16), padding=1),
        "conv padded, 2 images": _conv(x32[:2], r(16, 32, 3, 3), r(16), padding=1),
        "conv padded, few pixels": _conv(x64, r(16, 64, 3, 3), r(16), padding=1, stride=2),
        "conv groups + dilation": _conv(x32, r(16, 8, 3, 3), r(16), groups=4, dilation=2),
        "conv grouped, 8 channels a group": _conv(x32, r(32, 8, 3, 3), r(32), groups=4, padding=1),
        "conv depthwise, stride 2": _conv(x32, r(32, 1, 3, 3), r(32), groups=32, stride=2, padding=1),
        "conv pointwise": _conv(x32, r(48, 32, 1, 1), None),
        "conv pointwise, one image": _conv(x32[:1], r(17, 32, 1, 1), r(17)),
        "conv pointwise, one image, weights outweighing it": _conv(x64[:1], r(40, 64, 1, 1), r(40)),
        "conv pointwise, one image, 2 groups": _conv(x64[:1], r(40, 32, 1, 1), r(40), groups=2),
        "conv one image": _conv(x32[:1], r(64, 32, 3, 3), r(64)),
        # weights outweighing the image: the cpp forward splits the filter slivers (a partial last one here)
        "conv one image, 40 filters": _conv(x64[:1], r(40, 64, 3, 3), r(40)),
        "conv one image, 40 filters, padded, stride 2": _conv(
            x64[:1], r(40, 64, 3, 3), None, padding=1, stride=2
        ),
        "conv + relu + maxpool, one channel": _conv_pool(x1, r(32, 1, 3, 3), r(32)),
        "conv + relu + maxpool, composed": _conv_pool(x32, r(64, 32, 3, 3), r(64)),
        "dense": dense,
        "batchnorm": batchnorm,
        "pooling": pools,
        "activations": activation,
        "softmax cross-entropy": loss,
        "optimizers": optim,
    }


def mismatches(backend, threads=THREADS):
    """The cases (and output index) whose results differ bitwise between thread counts; [] if none."""
    runs = {}
    previous = cnnkern.get_num_threads(backend)
    try:
        for n in threads:
            cnnkern.set_num_threads(n, backend=backend)
            assert cnnkern.get_num_threads(backend) == n
            runs[n] = {name: [np.asarray(a).copy() for a in run(backend)] for name, run in cases().items()}
    finally:
        cnnkern.set_num_threads(previous, backend=backend)
    out = []
    first = runs[threads[0]]
    for n in threads[1:]:
        for name, outputs in runs[n].items():
            for i, (a, b) in enumerate(zip(first[name], outputs)):
                if a.tobytes() != b.tobytes():
                    diff = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
                    what = f"{name} output {i}: {threads[0]} vs {n} threads"
                    out.append(f"{what} differ (max |diff| {diff:.3g})")
    return out


def _skip_without_pool(target):
    if target.name not in cnnkern.threads.THREADED:
        pytest.skip(f"backend {target.name!r} has no CPU thread pool (nothing depends on a thread count)")


def test_results_do_not_depend_on_the_thread_count(target):
    _skip_without_pool(target)
    threads = THREADS
    if target.name == "numba":
        top = target.backend.max_threads()
        if top < max(THREADS):
            # numba cannot grow its pool: 1 and 2 here, 1, 2 and 3 in the subprocess test below
            threads = tuple(n for n in THREADS if n <= top)
            if len(threads) < 2:
                pytest.skip(
                    f"numba's pool has {top} thread (NUMBA_NUM_THREADS); the subprocess test runs 1-3"
                )
    assert mismatches(target.backend.name, threads) == []


def test_numba_results_do_not_depend_on_the_thread_count_in_a_larger_pool(plain_target):
    """numba at 1, 2 and 3 threads, in a child whose pool is started with 3 (NUMBA_NUM_THREADS)."""
    if plain_target.name != "numba":
        pytest.skip("numba only: the other backends run all of THREADS in process")
    code = "from tests.test_determinism import mismatches; print(repr(mismatches('numba')))"
    env = subprocess_env(NUMBA_NUM_THREADS=str(max(THREADS)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-3000:]
