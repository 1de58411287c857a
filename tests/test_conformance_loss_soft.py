"""softmax_cross_entropy_soft_forward / _backward (soft targets, optional per-sample weights) on every backend
against the float64 reference, over the sparse loss's cases (class counts crossing the SIMD widths, logits
in the thousands); the targets are label-smoothed one-hot rows or random distributions."""

import numpy as np
import pytest

from cnnkern import ops

from .cases import LOSS_CASES, randn
from .compare import EPS32, assert_close, scaled


def _inputs(case, seed, kind, weighted):
    rng = np.random.default_rng(seed)
    n, c = case.n, case.classes
    logits = randn((n, c), seed, scale=case.scale)
    if kind == "smoothed":
        labels = rng.integers(0, c, n)
        targets = np.full((n, c), 0.1 / c)
        targets[np.arange(n), labels] += 0.9
    else:
        targets = rng.random((n, c))
        targets /= targets.sum(axis=1, keepdims=True)
    weights = rng.random(n) * 2 if weighted else None
    return logits, targets, weights


KINDS = [("smoothed", False), ("smoothed", True), ("random", True)]
KIND_IDS = ["smoothed", "smoothed-weighted", "random-weighted"]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.id)
def test_soft_forward(target, case, kind):
    logits, targets, weights = _inputs(case, 1, *kind)
    loss, probs = ops.softmax_cross_entropy_soft_forward(logits, targets, weights, backend="reference")
    for dt in target.dtypes:
        gloss, gprobs = target.call(
            "softmax_cross_entropy_soft_forward", target.put(logits, dt), target.put(targets, dt),
            target.put(weights, dt),
        )  # fmt: skip
        gloss = target.get(gloss)
        assert gloss.shape == (), f"{target.id}: loss must be a 0-d array, got shape {gloss.shape}"
        # the targets and weights are rounded to dt too: a relative error of a few eps per term
        tol = scaled(dt, 16 * EPS32 * case.classes**0.5, 16 * EPS32 * (case.n * case.classes) ** 0.5)
        assert_close(gloss, loss, **tol, what=f"{target.id} {dt} loss", dtype=dt)
        tol = scaled(dt, 8 * EPS32, 8 * EPS32 * case.classes**0.5)
        assert_close(target.get(gprobs), probs, **tol, what=f"{target.id} {dt} probs", dtype=dt)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("case", LOSS_CASES, ids=lambda c: c.id)
def test_soft_backward(target, case, kind):
    logits, targets, weights = _inputs(case, 2, *kind)
    _, probs = ops.softmax_cross_entropy_soft_forward(logits, targets, weights, backend="reference")
    for dt in target.dtypes:
        as_dt = [None if a is None else a.astype(dt).astype(np.float64) for a in (probs, targets, weights)]
        want = ops.softmax_cross_entropy_soft_backward(*as_dt, backend="reference")
        got = target.call("softmax_cross_entropy_soft_backward", *[target.put(a, dt) for a in as_dt])
        # a C-term target sum, then a product, a difference and a scale
        tol = scaled(dt, 4 * EPS32 * case.classes / case.n, 4 * EPS32 * case.classes)
        assert_close(target.get(got), want, **tol, what=f"{target.id} {dt} dlogits", dtype=dt)


def test_one_hot_targets_equal_the_sparse_loss(target):
    """One-hot targets, no weights: the sparse kernels' loss and gradient."""
    case = LOSS_CASES[4]
    logits = randn((case.n, case.classes), 5)
    labels = np.random.default_rng(6).integers(0, case.classes, case.n)
    onehot = np.eye(case.classes)[labels]
    for dt in target.dtypes:
        x = target.put(logits, dt)
        loss, probs = target.call("softmax_cross_entropy_forward", x, target.put(labels))
        sloss, sprobs = target.call("softmax_cross_entropy_soft_forward", x, target.put(onehot, dt))
        tol = scaled(dt, 4 * EPS32, 4 * EPS32)
        assert_close(target.get(sloss), target.get(loss), **tol, what=f"{target.id} {dt} loss", dtype=dt)
        d = target.call("softmax_cross_entropy_backward", probs, target.put(labels))
        sd = target.call("softmax_cross_entropy_soft_backward", sprobs, target.put(onehot, dt))
        assert_close(target.get(sd), target.get(d), **tol, what=f"{target.id} {dt} dlogits", dtype=dt)
