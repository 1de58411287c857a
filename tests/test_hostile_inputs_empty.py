"""Hostile inputs at the front door, continued (issue 12, item 8): an empty batch (N = 0) on every kernel and
backend follows PyTorch; other empty dimensions stay errors. Run with tests/test_hostile_inputs.py as one
group: ``pytest tests/test_hostile_inputs.py tests/test_hostile_inputs_empty.py``.
"""

import numpy as np
import pytest

F32 = np.float32


# --- item 8: an empty batch ------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch", reason="torch not installed: pip install torch==2.13.0")


def _same(tg, got, want, what):
    got = tg.get(got)
    assert got.shape == tuple(want.shape), f"{tg.id} {what}: shape {got.shape}, torch {tuple(want.shape)}"
    assert got.dtype == np.float32, f"{tg.id} {what}: dtype {got.dtype}"
    np.testing.assert_array_equal(got, want.detach().numpy(), err_msg=f"{tg.id} {what}")


def test_empty_batch_conv_dense_pool_follow_torch(plain_target):
    """N = 0 through conv, the fused kernels, pooling, dense and activations: empty outputs of PyTorch's
    shapes, an empty dx and zero dw, db (nothing to sum), on every backend."""
    torch = _torch()
    F = torch.nn.functional
    tg = plain_target
    x0, w, b = np.zeros((0, 3, 6, 6), F32), np.ones((4, 3, 3, 3), F32), np.ones(4, F32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x0, w, b))
    ty = F.conv2d(tx, tw, tb, padding=1)
    ty.sum().backward()
    y = tg.call("conv2d_forward", tg.put(x0), tg.put(w), tg.put(b), padding=1)
    _same(tg, y, ty, "conv2d_forward y")
    dx, dw, db = tg.call("conv2d_backward", tg.put(np.zeros(ty.shape, F32)), tg.put(x0), tg.put(w), padding=1)
    for got, want, what in ((dx, tx.grad, "dx"), (dw, tw.grad, "dw"), (db, tb.grad, "db")):
        _same(tg, got, want, f"conv2d_backward {what}")
    y = tg.call("conv2d_bias_act_forward", tg.put(x0), tg.put(w), tg.put(b), padding=1, activation="relu")
    _same(tg, y, ty, "conv2d_bias_act_forward y")
    tp, targ = F.max_pool2d(ty, 2, return_indices=True)
    yp, arg = tg.call("conv2d_act_maxpool_forward", tg.put(x0), tg.put(w), tg.put(b), padding=1, pool_size=2)
    _same(tg, yp, tp, "conv2d_act_maxpool_forward y")
    assert tg.get(arg).shape == tuple(targ.shape) and tg.get(arg).dtype == np.int64
    grads = tg.call(
        "conv2d_act_maxpool_backward", yp, yp, arg, tg.put(x0), tg.put(w), padding=1, activation="relu"
    )
    for got, want, what in zip(grads, (tx.grad, tw.grad, tb.grad), ("dx", "dw", "db")):
        _same(tg, got, want, f"conv2d_act_maxpool_backward {what}")
    y, arg = tg.call("maxpool2d_forward", tg.put(x0), kernel_size=2)
    _same(tg, y, F.max_pool2d(torch.tensor(x0), 2), "maxpool2d_forward y")
    _same(tg, tg.call("maxpool2d_forward", tg.put(x0), kernel_size=2, return_argmax=False),
          F.max_pool2d(torch.tensor(x0), 2), "maxpool2d_forward y (no argmax)")  # fmt: skip
    _same(tg, tg.call("maxpool2d_backward", y, arg, x0.shape), tx.grad, "maxpool2d_backward dx")
    _same(
        tg, tg.call("maxpool2d_act_backward", y, arg, tg.put(x0), "tanh"), tx.grad, "maxpool2d_act_backward"
    )
    ya = tg.call("avgpool2d_forward", tg.put(x0), kernel_size=3, stride=2, padding=1)
    _same(tg, ya, F.avg_pool2d(torch.tensor(x0), 3, 2, 1), "avgpool2d_forward y")
    dxa = tg.call("avgpool2d_backward", ya, x0.shape, kernel_size=3, stride=2, padding=1)
    _same(tg, dxa, tx.grad, "avgpool2d_backward dx")
    for kind in ("relu", "leaky_relu", "sigmoid", "tanh"):
        _same(tg, tg.call("activation_forward", tg.put(x0), kind), tx.grad, f"activation_forward {kind}")
        _same(tg, tg.call("activation_backward", tg.put(x0), tg.put(x0), kind), tx.grad, f"{kind} backward")
    xd, wd = np.zeros((0, 7), F32), np.ones((4, 7), F32)
    txd, twd, tbd = (torch.tensor(a, requires_grad=True) for a in (xd, wd, b))
    tyd = F.linear(txd, twd, tbd)
    tyd.sum().backward()
    _same(tg, tg.call("dense_forward", tg.put(xd), tg.put(wd), tg.put(b)), tyd, "dense_forward y")
    _same(tg, tg.call("dense_bias_act_forward", tg.put(xd), tg.put(wd), tg.put(b), activation="relu"), tyd,
          "dense_bias_act_forward y")  # fmt: skip
    grads = tg.call("dense_backward", tg.put(np.zeros((0, 4), F32)), tg.put(xd), tg.put(wd))
    for got, want, what in zip(grads, (txd.grad, twd.grad, tbd.grad), ("dx", "dw", "db")):
        _same(tg, got, want, f"dense_backward {what}")


def test_empty_batch_batchnorm_and_loss_follow_torch(plain_target):
    """Batch norm over N = 0 follows torch.nn.functional.batch_norm (torch 2.13): an empty y, the running
    statistics untouched in training, zero dgamma and dbeta; the batch mean and invstd of no values are NaN.
    The mean loss over no rows is NaN (0/0), as torch's cross_entropy; probs and the gradient are (0, C)."""
    torch = _torch()
    F = torch.nn.functional
    tg = plain_target
    x0, g, bt = np.zeros((0, 3, 4, 4), F32), np.full(3, 2, F32), np.ones(3, F32)
    rm, rv = np.full(3, 0.5, F32), np.full(3, 3, F32)
    for training in (True, False):
        trm, trv = torch.tensor(rm), torch.tensor(rv)
        tx, tgam, tbt = (torch.tensor(a, requires_grad=True) for a in (x0, g, bt))
        ty = F.batch_norm(tx, trm, trv, tgam, tbt, training=training)
        ty.sum().backward()
        brm, brv = tg.put(rm), tg.put(rv)
        y, mean, invstd = tg.call("batchnorm2d_forward", tg.put(x0), tg.put(g), tg.put(bt), brm, brv,
                                  training=training)  # fmt: skip
        _same(tg, y, ty, f"batchnorm2d_forward y (training={training})")
        _same(tg, brm, trm, "running_mean")
        _same(tg, brv, trv, "running_var")
        if training:
            assert np.isnan(tg.get(mean)).all() and np.isnan(tg.get(invstd)).all()
        else:
            np.testing.assert_array_equal(tg.get(mean), rm)
            np.testing.assert_allclose(tg.get(invstd), 1 / np.sqrt(rv + 1e-5), rtol=1e-6)
        dx, dg, db = tg.call(
            "batchnorm2d_backward", y, tg.put(x0), tg.put(g), mean, invstd, training=training
        )
        for got, want, what in ((dx, tx.grad, "dx"), (dg, tgam.grad, "dgamma"), (db, tbt.grad, "dbeta")):
            _same(tg, got, want, f"batchnorm2d_backward {what} (training={training})")
        # the fused batch norm + relu + max pool: the same statistics, a pooled empty y and argmax
        brm, brv = tg.put(rm), tg.put(rv)
        yp, arg, mean_p, invstd_p = tg.call(
            "batchnorm2d_act_maxpool_forward", tg.put(x0), tg.put(g), tg.put(bt), brm, brv,
            training=training, activation="relu", pool_size=2,
        )  # fmt: skip
        _same(tg, yp, F.max_pool2d(F.relu(ty), 2), "batchnorm2d_act_maxpool_forward y")
        assert tg.get(arg).shape == (0, 3, 2, 2) and tg.get(arg).dtype == np.int64
        _same(tg, brm, trm, "running_mean (fused)")
        np.testing.assert_array_equal(tg.get(mean_p), tg.get(mean))
        np.testing.assert_array_equal(tg.get(invstd_p), tg.get(invstd))
        dx, dg, db = tg.call(
            "batchnorm2d_act_maxpool_backward", yp, yp, arg, tg.put(x0), tg.put(g), mean_p, invstd_p,
            training=training, activation="relu",
        )  # fmt: skip
        for got, want, what in ((dx, tx.grad, "dx"), (dg, tgam.grad, "dgamma"), (db, tbt.grad, "dbeta")):
            _same(tg, got, want, f"batchnorm2d_act_maxpool_backward {what} (training={training})")
    logits = torch.zeros((0, 10), requires_grad=True)
    tloss = F.cross_entropy(logits, torch.zeros(0, dtype=torch.long))
    tloss.backward()
    loss, probs = tg.call(
        "softmax_cross_entropy_forward", tg.put(np.zeros((0, 10), F32)), tg.put(np.zeros(0, int))
    )
    assert tg.get(loss).shape == () and np.isnan(tg.get(loss)) and np.isnan(tloss.item())
    assert tg.get(probs).shape == (0, 10)
    d = tg.call("softmax_cross_entropy_backward", probs, tg.put(np.zeros(0, int)))
    _same(tg, d, logits.grad, "softmax_cross_entropy_backward")


@pytest.mark.parametrize(
    "kernel, build, name",
    [
        ("conv2d_forward", lambda: dict(x=np.zeros((2, 0, 6, 6), F32), w=np.ones((4, 0, 3, 3), F32)), "x"),
        ("conv2d_forward", lambda: dict(x=np.zeros((2, 3, 0, 6), F32), w=np.ones((4, 3, 1, 1), F32)), "x"),
        ("dense_forward", lambda: dict(x=np.zeros((2, 0), F32), w=np.ones((4, 0), F32)), "x"),
        ("maxpool2d_forward", lambda: dict(x=np.zeros((0, 3, 6, 0), F32), kernel_size=2), "x"),
        ("activation_forward", lambda: dict(x=np.zeros((3, 0), F32), kind="relu"), "x"),
        (
            "softmax_cross_entropy_forward",
            lambda: dict(logits=np.zeros((0, 0), F32), labels=np.zeros(0, int)),
            "logits",
        ),
        (
            "sgd_update",
            lambda: dict(param=np.zeros(0, F32), grad=np.zeros(0, F32), velocity=None, lr=0.1),
            "param",
        ),
    ],
)
def test_other_empty_dimensions_are_still_refused(plain_target, kernel, build, name):
    """Only the batch may be empty: a zero channel, height, width, feature or class count (or an empty
    parameter) stays a ValueError naming the argument."""
    kwargs = {k: (plain_target.put(a) if isinstance(a, np.ndarray) else a) for k, a in build().items()}
    with pytest.raises(ValueError, match=rf"^{name} must not be empty"):
        plain_target.call(kernel, **kwargs)
