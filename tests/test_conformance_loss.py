"""softmax_cross_entropy_forward / _backward on every backend against the float64 reference.

Logits up to thousands (a softmax without the max shift overflows), labels at 0 and C-1. Backward gets the
reference's probs.
"""

import numpy as np
import pytest

from cnnkern import ops

from .cases import LOSS_CASES, randn
from .compare import EPS32, assert_close, scaled


def _inputs(case, seed):
    logits = randn((case.n, case.classes), seed, scale=case.scale)
    c = case.classes
    labels = {
        "random": np.random.default_rng(seed + 1).integers(0, c, case.n),
        "first": np.zeros(case.n, dtype=np.int64),
        "last": np.full(case.n, c - 1, dtype=np.int64),
        "ends": np.where(np.arange(case.n) % 2 == 0, 0, c - 1),
    }[case.labels].astype(np.int64)
    return logits, labels


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.id)
def test_softmax_cross_entropy_forward(target, case):
    logits, labels = _inputs(case, 1)
    loss, probs = ops.softmax_cross_entropy_forward(logits, labels, backend="reference")
    for dt in target.dtypes:
        gloss, gprobs = target.call(
            "softmax_cross_entropy_forward", target.put(logits, dt), target.put(labels)
        )
        gloss = target.get(gloss)
        assert gloss.shape == (), f"{target.id}: loss must be a 0-d array, got shape {gloss.shape}"
        # per row: a max, C exps summed, one log; then a mean over N rows
        tol = scaled(dt, 16 * EPS32 * case.classes**0.5, 16 * EPS32 * case.n**0.5)
        assert_close(gloss, loss, **tol, what=f"{target.id} {dt} loss", dtype=dt)
        tol = scaled(dt, 8 * EPS32, 8 * EPS32 * case.classes**0.5)
        assert_close(target.get(gprobs), probs, **tol, what=f"{target.id} {dt} probs", dtype=dt)
        assert np.isfinite(target.get(gprobs)).all(), f"{target.id} {dt}: probs not finite"


@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.id)
def test_softmax_cross_entropy_backward(target, case):
    logits, labels = _inputs(case, 2)
    _, probs = ops.softmax_cross_entropy_forward(logits, labels, backend="reference")
    for dt in target.dtypes:
        probs_dt = probs.astype(dt).astype(np.float64)
        want = ops.softmax_cross_entropy_backward(probs_dt, labels, backend="reference")
        got = target.call("softmax_cross_entropy_backward", target.put(probs_dt, dt), target.put(labels))
        # (p - onehot) / N: two roundings
        assert_close(
            target.get(got),
            want,
            **scaled(dt, 2 * EPS32 / case.n, 2 * EPS32),
            what=f"{target.id} {dt} dlogits",
            dtype=dt,
        )


@pytest.mark.parametrize("label_dtype", ["int32", "uint8", "int64"])
def test_labels_of_any_integer_dtype(target, label_dtype):
    logits, labels = _inputs(LOSS_CASES[1], 3)
    loss, probs = ops.softmax_cross_entropy_forward(logits, labels, backend="reference")
    gloss, _ = target.call(
        "softmax_cross_entropy_forward", target.put(logits, "float32"), target.put(labels.astype(label_dtype))
    )
    assert_close(
        target.get(gloss), loss, atol=1e-5, rtol=1e-5, what=f"{target.id} loss with {label_dtype} labels"
    )
    d = target.call(
        "softmax_cross_entropy_backward", target.put(probs, "float32"), target.put(labels.astype(label_dtype))
    )
    want = ops.softmax_cross_entropy_backward(probs, labels, backend="reference")
    assert_close(
        target.get(d), want, atol=1e-7, rtol=1e-6, what=f"{target.id} dlogits with {label_dtype} labels"
    )
