"""Hostile inputs at the front door (issue 12, items 3-8 and 16), on every backend: each case either gives the
right answer or a clear error naming the argument, never undefined behaviour in a kernel. These run as a
group under the ASan + UBSan build of the extension (``pytest tests/test_hostile_inputs.py``).
"""

import math

import numpy as np
import pytest

F32 = np.float32


# --- item 3: softmax cross-entropy at a large offset ----------------------------------------------------


@pytest.mark.parametrize("offset", [1e16, -1e16, 3e38, -3e38, 2.0**60])
def test_loss_at_a_large_offset_is_log_c(target, offset):
    """Equal logits of any magnitude give the loss log C (here log 2, log 3): the loss comes from the shifted
    logit, never from m + log s - x[label], which rounds to 0 when |m| dwarfs log s."""
    for dt in target.dtypes:
        logits = np.array([[offset, offset], [offset, offset]], dt)
        logits3 = np.full((1, 3), offset, dt)
        loss, probs = target.call(
            "softmax_cross_entropy_forward", target.put(logits), target.put(np.array([0, 1]))
        )
        loss3, _ = target.call(
            "softmax_cross_entropy_forward", target.put(logits3), target.put(np.array([2]))
        )
        tol = 1e-6 if dt == "float32" else 1e-12
        got, got3 = float(target.get(loss)), float(target.get(loss3))
        assert abs(got - math.log(2)) <= tol, f"{target.id} {dt}: loss {got}, want log 2"
        assert abs(got3 - math.log(3)) <= tol, f"{target.id} {dt}: loss {got3}, want log 3"
        np.testing.assert_allclose(target.get(probs), 0.5, rtol=0, atol=tol)
        d = target.call("softmax_cross_entropy_backward", probs, target.put(np.array([0, 1])))
        np.testing.assert_allclose(target.get(d), [[-0.25, 0.25], [0.25, -0.25]], rtol=0, atol=tol)


def test_loss_at_a_large_offset_matches_the_shifted_reference(target):
    """Distinct logits on a large offset (each row its own): the mean loss equals the float64 reference."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 5))
    offsets = np.array([0.0, 1e16, -1e16, 2.0**55, 1e20, -1e30])[:, None]
    labels = np.array([0, 1, 2, 3, 4, 0])
    for dt in target.dtypes:
        # rows with a huge offset are equal after rounding to dt: the loss is then log 5
        logits = (base * (np.abs(offsets) < 1) + offsets).astype(dt)
        shifted = logits.astype(np.float64) - logits.astype(np.float64).max(axis=1, keepdims=True)
        want = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(6), labels])
        loss, _ = target.call("softmax_cross_entropy_forward", target.put(logits), target.put(labels))
        got = float(target.get(loss))
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), f"{target.id} {dt}: {got} != {want}"
