"""cnnkern.torch's custom ops against torch.nn.functional: torch.library.opcheck for each op (schema, fake
implementation, autograd registration, AOT dispatch), forward and gradients (float64 on the reference
backend to 1e-10; float32 on cpp and numba within the suite's gemm tolerance), the same through
torch.compile, and the errors for what the kernels do not take."""

import subprocess
import sys
from unittest import mock

import numpy as np
import pytest

from cnnkern import backends

from .compare import assert_close, gemm_tol
from .conftest import load_backend, subprocess_env

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
import cnnkern.torch  # noqa: E402  (needs torch)
from cnnkern.torch import functional as CF  # noqa: E402

F = torch.nn.functional
OPS = torch.ops.cnnkern
F64_TOL = dict(atol=1e-10, rtol=1e-10)
F32_TOL = gemm_tol(256)  # the longest reduction in these cases (a weight gradient over N*P*Q) is < 256


def _cases(dtype):
    """name -> (op, its arguments, the torch.nn.functional computation of its first output from the
    differentiable arguments, the indices of those arguments)."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    x, w, b = r(2, 4, 7, 7), r(6, 2, 3, 3, scale=0.3), r(6)
    w_even = r(6, 4, 2, 4, scale=0.3)
    conv = ([2, 1], [1, 1], [1, 2], 2)
    gamma, beta, rm, rv = r(4) + 2, r(4), r(4), r(4).abs() + 0.5
    xl, wl, bl = r(5, 7), r(3, 7, scale=0.4), r(3)
    logits, labels = r(6, 5), torch.tensor([0, 4, 2, 2, 1, 3])
    return {
        "conv2d": (
            OPS.conv2d,
            (x, w, b, *conv, None, 0.01),
            lambda x, w, b: F.conv2d(x, w, b, *conv),
            (0, 1, 2),
        ),
        "conv2d_leaky_relu_same_nobias": (
            OPS.conv2d,
            (x, w_even, None, [1, 1], [0, 1, 1, 2], [1, 1], 1, "leaky_relu", 0.2),
            lambda x, w: F.leaky_relu(F.conv2d(F.pad(x, (1, 2, 0, 1)), w), 0.2),
            (0, 1),
        ),
        "conv2d_sigmoid": (
            OPS.conv2d,
            (x, w, b, *conv, "sigmoid", 0.01),
            lambda x, w, b: torch.sigmoid(F.conv2d(x, w, b, *conv)),
            (0, 1, 2),
        ),
        "conv2d_act_maxpool": (
            OPS.conv2d_act_maxpool,
            (x, w, b, [1, 1], [1, 1], [1, 1], 2, "relu", 0.01, [3, 2], [2, 2], [1, 0], [1, 1], True),
            lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, 1, 1, 2)), (3, 2), 2, (1, 0), 1, True),
            (0, 1, 2),
        ),
        "conv2d_tanh_maxpool_dilated": (
            OPS.conv2d_act_maxpool,
            (x, w, b, [1, 1], [0, 0], [1, 1], 2, "tanh", 0.01, [2, 2], [1, 2], [0, 0], [2, 1], False),
            lambda x, w, b: F.max_pool2d(torch.tanh(F.conv2d(x, w, b, groups=2)), 2, (1, 2), 0, (2, 1)),
            (0, 1, 2),
        ),
        "max_pool2d": (
            OPS.max_pool2d,
            (x, [3, 3], [2, 2], [1, 1], [1, 1], True),
            lambda x: F.max_pool2d(x, 3, 2, 1, 1, True),
            (0,),
        ),
        "avg_pool2d": (
            OPS.avg_pool2d,
            (x, [3, 2], [2, 1], [1, 1], True, False),
            lambda x: F.avg_pool2d(x, (3, 2), (2, 1), 1, True, False),
            (0,),
        ),
        "batch_norm_train": (
            OPS.batch_norm,
            (x, gamma, beta, rm, rv, True, 0.1, 1e-5),
            lambda x, g, b: F.batch_norm(x, rm.double(), rv.double(), g, b, True, 0.1, 1e-5),
            (0, 1, 2),
        ),
        "batch_norm_eval": (
            OPS.batch_norm,
            (x, gamma, beta, rm, rv, False, 0.1, 1e-5),
            lambda x, g, b: F.batch_norm(x, rm.double(), rv.double(), g, b, False, 0.1, 1e-5),
            (0, 1, 2),
        ),
        "linear": (OPS.linear, (xl, wl, bl, None, 0.01), F.linear, (0, 1, 2)),
        "linear_relu": (OPS.linear, (xl, wl, bl, "relu", 0.01), lambda *a: F.relu(F.linear(*a)), (0, 1, 2)),
        "relu": (OPS.activation, (x, "relu", 0.01), F.relu, (0,)),
        "leaky_relu": (OPS.activation, (x, "leaky_relu", 0.3), lambda x: F.leaky_relu(x, 0.3), (0,)),
        "sigmoid": (OPS.activation, (x, "sigmoid", 0.01), torch.sigmoid, (0,)),
        "tanh": (OPS.activation, (x, "tanh", 0.01), torch.tanh, (0,)),
        "softmax_cross_entropy": (
            OPS.softmax_cross_entropy,
            (logits, labels),
            lambda z: F.cross_entropy(z, labels),
            (0,),
        ),
    }


NAMES = list(_cases(torch.float64))


def _with_grad(args, diff):
    return tuple(
        a.detach().clone().requires_grad_(i in diff)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for i, a in enumerate(args)
    )


def _run(op, args, diff, fn=None):
    """The op's first output and the gradients of sum(out * fixed weights) for the differentiable args."""
    args = _with_grad(args, diff)
    out = op(*args) if fn is None else fn(*args)
    y = out[0] if isinstance(out, tuple) else out
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    grads = torch.autograd.grad((y * weights).sum(), [args[i] for i in diff])
    return y.detach(), [gr.detach() for gr in grads]


def _expected(fn, args, diff):
    """torch.nn.functional's output and gradients, in float64 from the same (possibly float32) inputs."""
    args64 = tuple(a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
    return _run(lambda *a: fn(*[a[i] for i in diff]), args64, diff)


def _compare(got, want, tol, what):
    y, grads = got
    y_ref, grads_ref = want
    assert_close(y.double().numpy(), y_ref.numpy(), **tol, what=f"{what}: output")
    for i, (g, gr) in enumerate(zip(grads, grads_ref)):
        assert_close(g.double().numpy(), gr.numpy(), **tol, what=f"{what}: gradient {i}")


@pytest.fixture(params=["cpp", "numba"])
def float32_backend(request):
    """float32 runs on the current CPU backend: each of cpp and numba set as the default in turn."""
    be = load_backend(request.param)
    backends.set_backend(be)
    yield be
    backends.set_backend(None)


@pytest.mark.parametrize("name", NAMES)
def test_float64_reference_matches_functional(name):
    op, args, fn, diff = _cases(torch.float64)[name]
    _compare(_run(op, args, diff), _expected(fn, args, diff), F64_TOL, name)


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_functional(name, float32_backend):
    op, args, fn, diff = _cases(torch.float32)[name]
    _compare(_run(op, args, diff), _expected(fn, args, diff), F32_TOL, f"{name} on {float32_backend.name}")


def test_max_pool_indices_are_torchs():
    op, args, _, _ = _cases(torch.float64)["max_pool2d"]
    _, argmax = op(*args)
    _, indices = F.max_pool2d(args[0], 3, 2, 1, 1, True, return_indices=True)
    assert torch.equal(argmax, indices)


@pytest.mark.parametrize("name", NAMES)
def test_opcheck(name):
    """Schema, fake tensors, autograd registration and AOT dispatch (which runs the backward ops too)."""
    op, args, _, diff = _cases(torch.float64)[name]
    torch.library.opcheck(op, _with_grad(args, diff))


def test_opcheck_float32_and_backward_ops():
    op, args, _, diff = _cases(torch.float32)["conv2d_act_maxpool"]
    torch.library.opcheck(op, _with_grad(args, diff))
    x, w, b = args[:3]
    y, argmax = op(*args)
    conv = list(args[3:9])
    checks = [
        (
            OPS.conv2d_backward,
            (
                torch.ones(2, 6, 7, 7),
                x,
                w,
                torch.ones(2, 6, 7, 7),
                [1, 1],
                [1, 1],
                [1, 1],
                2,
                None,
                0.01,
                True,
                False,
                True,
            ),
        ),
        (OPS.conv2d_act_maxpool_backward, (torch.ones_like(y), y, argmax, x, w, *conv, False, True, True)),
        (
            OPS.max_pool2d_backward,
            (
                torch.ones(2, 4, 4, 4),
                OPS.max_pool2d(x, [3, 3], [2, 2], [1, 1], [1, 1], True)[1],
                [2, 4, 7, 7],
            ),
        ),
        (OPS.avg_pool2d_backward, (torch.ones(2, 4, 4, 4), [2, 4, 7, 7], [3, 3], [2, 2], [1, 1], True, True)),
        (
            OPS.linear_backward,
            (
                torch.ones(5, 3),
                torch.ones(5, 7),
                torch.ones(3, 7),
                torch.ones(5, 3),
                "relu",
                0.0,
                False,
                True,
            ),
        ),
        (OPS.activation_backward, (torch.ones(3, 4), torch.rand(3, 4), "sigmoid", 0.01)),
        (OPS.softmax_cross_entropy_backward, (torch.full((2, 3), 1 / 3), torch.tensor([0, 2]))),
        (
            OPS.batch_norm_backward,
            (torch.ones(2, 4, 3, 3), torch.rand(2, 4, 3, 3), None, torch.zeros(4), torch.ones(4), True),
        ),
    ]
    for bop, bargs in checks:
        torch.library.opcheck(bop, bargs)


@pytest.mark.parametrize(
    "name",
    [
        "conv2d_leaky_relu_same_nobias",
        "conv2d_act_maxpool",
        "batch_norm_train",
        "linear_relu",
        "softmax_cross_entropy",
    ],
)
def test_gradients_through_torch_compile(name):
    """AOT autograd traces the autograd formulas (fake tensors, then the real backward ops)."""
    op, args, fn, diff = _cases(torch.float64)[name]
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: op(*a), backend="aot_eager", fullgraph=True)
    _compare(_run(compiled, args, diff), _expected(fn, args, diff), F64_TOL, f"{name} compiled")


def test_non_contiguous_and_channels_last_inputs():
    _, (x, w, b, *conv), fn, _ = _cases(torch.float64)["conv2d"]
    want = fn(x, w, b)
    for xin in (
        x.contiguous(memory_format=torch.channels_last),
        x.transpose(2, 3).contiguous().transpose(2, 3),
        torch.cat([x, x], 3)[..., ::2][..., :7],
    ):
        assert not xin.is_contiguous() or xin is x
        got = CF.conv2d(xin, w, b, (2, 1), 1, (1, 2), 2)
        assert_close(got.numpy(), fn(xin, w, b).numpy(), **F64_TOL, what="conv2d on a strided input")
    assert_close(CF.conv2d(x, w, b, (2, 1), 1, (1, 2), 2).numpy(), want.numpy(), **F64_TOL, what="conv2d")


def test_no_grad_and_inference_mode():
    _, (x, w, b, *_), _, _ = _cases(torch.float64)["conv2d"]
    w = w.requires_grad_()
    want = F.relu(F.conv2d(x, w, b, 1, 1, 1, 2))
    with torch.no_grad():
        y = CF.conv2d(x, w, b, 1, 1, 1, 2, activation="relu")
    assert not y.requires_grad
    with torch.inference_mode():
        y2 = CF.conv2d(x, w, b, 1, 1, 1, 2, activation="relu")
        pooled = CF.max_pool2d(y2, 2)
    assert_close(y2.numpy(), want.detach().numpy(), **F64_TOL, what="conv2d in inference_mode")
    assert pooled.shape == (2, 6, 3, 3)


def test_fused_pool_skips_the_argmax_without_autograd():
    _, args, fn, _ = _cases(torch.float64)["conv2d_act_maxpool"]
    y, argmax = OPS.conv2d_act_maxpool(*args, False)
    assert argmax.numel() == 0
    assert_close(y.numpy(), fn(*args[:3]).numpy(), **F64_TOL, what="conv2d_act_maxpool without argmax")
    torch.library.opcheck(OPS.conv2d_act_maxpool, (*args, False))
    w = args[1].clone().requires_grad_()
    with torch.no_grad():
        assert not CF.conv2d_act_maxpool(args[0], w, pool_size=2, groups=2).requires_grad
    y, _ = OPS.conv2d_act_maxpool(args[0], w, *args[2:], False)
    with pytest.raises(RuntimeError, match="need_argmax=False: it has no gradient"):
        y.sum().backward()


def test_errors_for_unsupported_tensors():
    x = torch.randn(1, 2, 5, 5)
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(TypeError, match="input must be float32 or float64.*float16"):
        CF.conv2d(x.half(), w.half())
    with pytest.raises(TypeError, match="weight must have the dtype of the input"):
        CF.conv2d(x, w.double())
    with pytest.raises(TypeError, match="input must be a dense"):
        CF.relu(x.reshape(2, -1).to_sparse())
    with pytest.raises(ValueError, match="input must be 4-D"):
        CF.max_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="activation must be None or one of"):
        CF.conv2d(x, w, activation="gelu")
    with pytest.raises(ValueError, match="w must have shape"):  # the front door's shape check, through the op
        CF.conv2d(x, torch.randn(3, 4, 3, 3))
    with pytest.raises(TypeError, match="target must hold int64"):
        CF.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1], dtype=torch.int32))
    # a CUDA tensor (a stand-in: this machine may have no GPU) needs the cuda backend, which needs CuPy
    reason = backends.probe("cuda")
    if reason is not None:
        cuda = mock.MagicMock(spec=torch.Tensor, layout=torch.strided, device=torch.device("cuda", 0))
        cuda.dtype = torch.float32
        with pytest.raises(
            RuntimeError, match="input is a CUDA tensor, and cnnkern's cuda backend is unavailable"
        ):
            CF.relu(cuda)
    xpu = mock.MagicMock(spec=torch.Tensor, layout=torch.strided, device=torch.device("xpu", 0))
    with pytest.raises(
        NotImplementedError, match="input is on device xpu:0: cnnkern.torch runs CPU and CUDA"
    ):
        CF.relu(xpu)


def test_float64_runs_on_the_reference_backend(monkeypatch):
    """float64 always goes to the reference backend, whatever the default; float32 to the default."""
    from cnnkern.torch._bridge import cpu_backend

    assert cpu_backend(torch.float64).name == "reference"
    assert cpu_backend(torch.float32) is backends.current()
    assert np.dtype("float64").name in backends.get("reference").dtypes
    assert cnnkern.torch.functional is CF


def test_without_torch_the_import_says_how_to_install():
    code = (
        "import sys\nsys.modules['torch'] = None  # makes `import torch` raise ImportError\n"
        "try:\n    import cnnkern.torch\nexcept ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True)
    assert out.stdout.strip() == 'cnnkern.torch needs PyTorch: pip install "cnnkern[torch]"', out.stderr
