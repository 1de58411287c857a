"""The front door (cnnkern.ops) on every backend: non-contiguous and negative-stride inputs give the result of
their contiguous copy; inputs are never modified; hostile calls never crash the interpreter. (Bad input:
test_frontdoor_errors.py.)
"""

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from .cases import frontdoor_arguments, randn
from .compare import assert_equal
from .conftest import load_backend, subprocess_env

F32 = np.float32


# Every kernel once. "kernel[-variant]" -> (build(v) -> keyword arguments, NumPy; names written in place)
_BN = ("running_mean", "running_var")
CALLS = {
    "conv2d_forward": (lambda v: dict(x=v.x, w=v.w, b=v.b, stride=2, padding=1), ()),
    "conv2d_backward": (lambda v: dict(dy=v.dy[:, :, ::2, ::2].copy(), x=v.x, w=v.w, stride=2, padding=1),
                        ()),
    "maxpool2d_forward": (lambda v: dict(x=v.x, kernel_size=3, stride=2, padding=1), ()),
    "maxpool2d_backward": (lambda v: dict(dy=v.pdy, argmax=v.arg, x_shape=v.x.shape), ()),
    "avgpool2d_forward": (lambda v: dict(x=v.x, kernel_size=3, stride=2, padding=1), ()),
    "avgpool2d_backward": (lambda v: dict(dy=v.pdy, x_shape=v.x.shape, kernel_size=2), ()),
    "batchnorm2d_forward-train": (lambda v: dict(x=v.x, gamma=v.gamma, beta=v.beta, running_mean=v.rm,
                                                 running_var=v.rv, training=True), _BN),
    "batchnorm2d_forward-eval": (lambda v: dict(x=v.x, gamma=v.gamma, beta=v.beta, running_mean=v.rm,
                                                running_var=v.rv, training=False), ()),
    "batchnorm2d_backward": (lambda v: dict(dy=v.x[::-1].copy(), x=v.x, gamma=v.gamma, mean=v.rm,
                                            invstd=v.rv), ()),
    "dense_forward": (lambda v: dict(x=v.xd, w=v.wd, b=v.bd), ()),
    "dense_backward": (lambda v: dict(dy=v.dyd, x=v.xd, w=v.wd), ()),
    "activation_forward": (lambda v: dict(x=v.x, kind="sigmoid"), ()),
    "activation_backward": (lambda v: dict(dy=v.dy, y=v.dy[::-1].copy(), kind="tanh"), ()),
    "softmax_cross_entropy_forward": (lambda v: dict(logits=v.logits, labels=v.labels), ()),
    "softmax_cross_entropy_backward": (lambda v: dict(probs=v.logits, labels=v.labels), ()),
    "sgd_update": (lambda v: dict(param=v.param, grad=v.grad, velocity=v.vel, lr=0.1, momentum=0.9,
                                  nesterov=True, weight_decay=0.01), ("param", "velocity")),
    "adam_update": (lambda v: dict(param=v.param, grad=v.grad, m=v.m, v=v.v, step=3, weight_decay=0.01),
                    ("param", "m", "v")),
}  # fmt: skip


def _numpy_inputs():
    v = frontdoor_arguments()
    return SimpleNamespace(**{k: (a if a.dtype.kind in "iu" else a.astype(F32)) for k, a in v.items()})


def _view(tg, a, kind):
    """Array a on the target's device as a view of the given layout, holding the same values."""
    if kind == "contiguous" or a.ndim == 0:
        return tg.put(a)
    if kind == "negative-stride":  # reversed copy, viewed reversed again
        return tg.put(a[..., ::-1])[..., ::-1]
    if kind == "strided":
        big = tg.put(np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype))
        big[..., 1::2] = tg.put(a)
        return big[..., 1::2]
    if kind == "fortran":
        return tg.put(a).T.copy().T
    if kind == "byteswapped":  # the same values in the other byte order (a layout, like the strides)
        if tg.name == "cuda":
            pytest.skip("CuPy arrays have no non-native byte order")
        return a.astype(a.dtype.newbyteorder("S"))
    raise ValueError(kind)


def _run(tg, kernel, kwargs, inplace, kind):
    """Call kernel with every array argument (but the in-place targets) laid out as `kind`; return every
    output and the in-place targets afterwards, as NumPy."""
    args = {}
    for name, a in kwargs.items():
        if isinstance(a, np.ndarray):
            args[name] = tg.put(a) if name in inplace else _view(tg, a, kind)
        else:
            args[name] = a
    out = tg.call(kernel, **args)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [tg.get(o) for o in outs] + [tg.get(args[name]) for name in inplace], args


@pytest.mark.parametrize("kind", ["negative-stride", "strided", "fortran", "byteswapped"])
@pytest.mark.parametrize("call", list(CALLS))
def test_noncontiguous_inputs_give_the_contiguous_result(plain_target, call, kind):
    kernel, (build, inplace) = call.split("-")[0], CALLS[call]
    kwargs = build(_numpy_inputs())
    want, _ = _run(plain_target, kernel, kwargs, inplace, "contiguous")
    got, _ = _run(plain_target, kernel, kwargs, inplace, kind)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None
        else:
            assert_equal(g, w, what=f"{plain_target.id} {kernel} output {i} with {kind} inputs")


@pytest.mark.parametrize("kind", ["contiguous", "negative-stride"])
@pytest.mark.parametrize("call", list(CALLS))
def test_inputs_are_unchanged(plain_target, call, kind):
    """Every argument that is not an in-place target holds the same values after the call."""
    kernel, (build, inplace) = call.split("-")[0], CALLS[call]
    kwargs = build(_numpy_inputs())
    _, args = _run(plain_target, kernel, kwargs, inplace, kind)
    for name, a in kwargs.items():
        if isinstance(a, np.ndarray) and name not in inplace:
            assert_equal(plain_target.get(args[name]), a, what=f"{plain_target.id} {kernel}: argument {name}")


def test_batchnorm_defaults_for_missing_gamma_beta(plain_target):
    """gamma None and beta None mean 1 and 0."""
    x = randn((2, 3, 4, 4), 1)
    rm, rv = np.zeros(3), np.ones(3)
    got = plain_target.call(
        "batchnorm2d_forward",
        plain_target.put(x, F32),
        None,
        None,
        plain_target.put(rm, F32),
        plain_target.put(rv, F32),
        training=False,
    )
    want = plain_target.call(
        "batchnorm2d_forward",
        plain_target.put(x, F32),
        plain_target.put(np.ones(3), F32),
        plain_target.put(np.zeros(3), F32),
        plain_target.put(rm, F32),
        plain_target.put(rv, F32),
        training=False,
    )
    for g, w in zip(got, want):
        assert_equal(plain_target.get(g), plain_target.get(w), what=f"{plain_target.id} gamma/beta None")


HOSTILE = textwrap.dedent(r"""
    import sys
    import numpy as np
    from cnnkern import backends, ops

    be = backends.get(sys.argv[1])  # loads here, outside the guarded calls
    f = lambda *s: np.ones(s, np.float32)
    big = 2**31
    arg0 = np.zeros((2, 3, 1, 1), np.int64)
    calls = [
        lambda: ops.conv2d_forward(f(1, 1, 1, 1), f(1, 1, 1, 1), padding=2**20, backend=be),
        lambda: ops.conv2d_forward(f(1, 1, 1, 1), f(1, 1, 1, 1), padding=big, backend=be),
        lambda: ops.conv2d_forward(f(1, 1, 1, 1), f(1, 1, 1, 1), padding=2**62, backend=be),
        lambda: ops.conv2d_forward(f(1, 1, 3, 3), f(1, 1, 1, 1), stride=2**62, dilation=2**62, backend=be),
        lambda: ops.conv2d_forward(f(1, 1, 3, 3), f(1, 1, 2, 2), dilation=2**62, backend=be),
        lambda: ops.conv2d_forward(f(1, 1, 3, 3), f(1, 1, 3, 3), padding="same", stride=2**40, backend=be),
        lambda: ops.conv2d_backward(f(1, 1, 1, 1), f(1, 1, 1, 1), f(1, 1, 1, 1), padding=big, backend=be),
        lambda: ops.conv2d_forward(np.full((1, 1, 4, 4), np.nan, np.float32), f(1, 1, 2, 2), backend=be),
        lambda: ops.maxpool2d_forward(f(1, 1, 4, 4), kernel_size=2**62, backend=be),
        lambda: ops.maxpool2d_forward(f(1, 1, 4, 4), kernel_size=1, stride=2**62, backend=be),
        lambda: ops.maxpool2d_forward(f(1, 1, 4, 4), kernel_size=3, dilation=2**40, padding=1, backend=be),
        lambda: ops.maxpool2d_backward(f(2, 3, 1, 1), arg0, (2, 3, big, big), backend=be),
        lambda: ops.maxpool2d_backward(f(2, 3, 1, 1), arg0 + 2**62, (2, 3, big, big), backend=be),
        lambda: ops.maxpool2d_backward(f(2, 3, 1, 1), arg0, (2, 3, 2**40, 2**40), backend=be),
        lambda: ops.maxpool2d_backward(f(2, 3, 1, 1), np.broadcast_to(np.int64(0), (2, 3, 1, 1)),
                                       (2, 3, 1, 1),
                                       backend=be),
        lambda: ops.avgpool2d_backward(f(2, 3, 1, 1), (2, 3, big, big), kernel_size=big, backend=be),
        lambda: ops.avgpool2d_forward(f(1, 1, 4, 4), kernel_size=2, stride=2**62, ceil_mode=True, backend=be),
        lambda: ops.batchnorm2d_forward(f(2, 3, 2, 2), None, None, f(3), f(3), training=True, eps=1e300,
                                        backend=be),
        lambda: ops.batchnorm2d_forward(f(2, 3, 2, 2), None, None, f(3), f(3), training=True,
                                        eps=float("inf"),
                                        backend=be),
        lambda: ops.batchnorm2d_forward(f(2, 3, 2, 2), None, None, np.broadcast_to(np.float32(0), (3,)), f(3),
                                        training=True, backend=be),
        lambda: ops.dense_forward(np.zeros((0, 3), np.float32), f(2, 3), backend=be),
        lambda: ops.dense_forward(f(2, 3), f(2, 3), f(2)[::-1], backend=be),
        lambda: ops.activation_forward(np.ones((1,) * 32, np.float32), "tanh", backend=be),
        lambda: ops.activation_forward(np.float32(1.0), "relu", backend=be),
        lambda: ops.activation_forward(np.array([1, 2], object), "relu", backend=be),
        lambda: ops.softmax_cross_entropy_forward(f(2, 3), np.array([2**62, 0]), backend=be),
        lambda: ops.softmax_cross_entropy_forward(f(2, 3), np.array([2**64 - 1, 0], np.uint64), backend=be),
        lambda: ops.softmax_cross_entropy_forward(np.full((2, 3), np.inf, np.float32), np.array([0, 1]),
                                                  backend=be),
        lambda: ops.softmax_cross_entropy_backward(f(2, 3), np.array([0, -2**63]), backend=be),
        lambda: ops.sgd_update(np.broadcast_to(np.float32(0), (4,)), f(4), None, lr=1.0, backend=be),
        lambda: ops.sgd_update(f(4), f(4), None, lr=float("inf"), backend=be),
        lambda: ops.adam_update(f(4), f(4), f(4), f(4), step=2**62, backend=be),
        lambda: ops.adam_update(f(4), f(4), f(4), f(4), step=1, beta1=0.0, beta2=0.0, eps=0.0, backend=be),
        lambda: ops.adam_update(f(0), f(0), f(0), f(0), step=1, backend=be),
        # issue 12: integers beyond int64, a misaligned view, a masked array, an empty batch
        lambda: ops.conv2d_forward(f(1, 1, 3, 3), f(1, 1, 1, 1), stride=2**70, backend=be),
        lambda: ops.conv2d_forward(np.empty(4 * 9 + 1, np.uint8)[1:].view(np.float32).reshape(1, 1, 3, 3),
                                   f(1, 1, 2, 2), backend=be),
        lambda: ops.dense_forward(np.ma.masked_array(f(2, 3)), f(2, 3), backend=be),
        lambda: ops.conv2d_backward(f(0, 1, 2, 2), f(0, 1, 3, 3), f(1, 1, 2, 2), backend=be),
    ]
    clean = (ValueError, TypeError, IndexError, MemoryError, OverflowError)
    for i, call in enumerate(calls):
        try:
            call()
            print(i, "ran")
        except clean as exc:
            print(i, type(exc).__name__)
        except Exception as exc:
            print(i, "UNCLEAN", type(exc).__name__, str(exc)[:200])
        sys.stdout.flush()
    print("survived")
""")


@pytest.mark.parametrize("name", ["cpp", "numba", "reference"])
def test_hostile_calls_never_crash(name):
    """Extreme but type-correct calls, run in a subprocess: each must either run or raise a clean Python error
    (ValueError, TypeError, IndexError, MemoryError, OverflowError); a segfault or abort fails the test."""
    load_backend(name)  # fails if CNNKERN_TEST_REQUIRE names it, else skips with the reason if unavailable
    env = subprocess_env(NUMBA_NUM_THREADS="2", CNNKERN_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-c", HOSTILE, name], capture_output=True, text=True, timeout=600, env=env
    )
    report = proc.stdout + proc.stderr[-3000:]
    assert proc.returncode == 0 and "survived" in proc.stdout, (
        f"{name}: exit code {proc.returncode}\n{report}"
    )
    assert "UNCLEAN" not in proc.stdout, (
        f"{name}: a hostile call raised an unexpected exception type\n{report}"
    )
