"""The CUDA backend, tested as far as each machine allows.

Without a GPU:
* every kernel module, exactly as NVRTC receives it (``loader.source``), compiles with nvcc for sm_80 and
  sm_90 (a missing nvcc skips, or fails when ``CNNKERN_REQUIRE_NVCC=1``, as CI sets it) and with NVRTC
  itself where its library is installed;
* the probe's messages, and that ``import cnnkern`` never imports CuPy;
* the kernels' logic: the whole conformance suite (tests/test_conformance_*.py) and the checks below run on
  :class:`~tests.cuda_emulator.EmulatedCudaBackend`, the real backend with its kernels executed by a CPU
  emulation of CUDA threads, which also checks every launch argument's type against the kernel signature.

With a GPU (``-m gpu``; they skip with the probe's reason elsewhere): the checks below on the device (fused
kernels, the fused Adam, split reductions at training sizes, CUDA-graph replay, bitwise reproducibility);
the conformance suite itself runs on the device through conftest's ``cuda`` target.
"""

import importlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cnnkern.backends import KERNELS
from cnnkern.backends import cuda as cuda_backend
from cnnkern.backends.cuda import loader

from .cases import randint, randn
from .compare import EPS32, assert_close, assert_equal, gemm_tol, scaled
from .conftest import Target, load_backend
from .cuda_emulator import EmulatedCudaBackend, unavailable

ARCHS = ("sm_80", "sm_90")
REQUIRE_NVCC = os.environ.get("CNNKERN_REQUIRE_NVCC") == "1"


def _nvcc():
    found = shutil.which("nvcc")
    if found is None and os.path.exists("/usr/local/cuda/bin/nvcc"):
        found = "/usr/local/cuda/bin/nvcc"
    return found


def _need_tool(reason):
    """Skip with ``reason``, or fail when CI demands the CUDA toolchain (CNNKERN_REQUIRE_NVCC=1)."""
    if REQUIRE_NVCC:
        pytest.fail(f"CNNKERN_REQUIRE_NVCC=1 but {reason}")
    pytest.skip(f"{reason} (set CNNKERN_REQUIRE_NVCC=1 to make this a failure)")


# ---- compilation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stem", loader.MODULES)
def test_nvcc_compiles(stem, arch, tmp_path):
    nvcc = _nvcc()
    if nvcc is None:
        _need_tool("nvcc is not on PATH (nor /usr/local/cuda/bin)")
    src = tmp_path / f"{stem}.cu"
    src.write_text(loader.source(stem))
    cmd = [
        nvcc,
        *loader.OPTIONS,
        f"-arch={arch}",
        "-Werror",
        "all-warnings",
        "-c",
        str(src),
        "-o",
        str(tmp_path / f"{stem}.o"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("arch", ("compute_80", "compute_90"))
@pytest.mark.parametrize("stem", loader.MODULES)
def test_nvrtc_compiles(stem, arch):
    """What CuPy's RawModule does at run time, minus the device: NVRTC to PTX."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:
        pytest.skip(f"NVRTC library not loadable ({type(exc).__name__}: {exc}); nvcc covers the compile")
    prog = nvrtc.createProgram(loader.source(stem), f"{stem}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, [*loader.OPTIONS, f"-arch={arch}"])
    except nvrtc.NVRTCError as exc:
        pytest.fail(f"NVRTC failed on {stem}.cu for {arch}: {exc}\n{nvrtc.getProgramLog(prog)}")
    finally:
        nvrtc.destroyProgram(prog)


def test_loader_source_is_self_contained():
    for stem in loader.MODULES:
        text = loader.source(stem)
        assert not [line for line in text.splitlines() if line.lstrip().startswith("#include")], stem
        assert text.count("// ---- begin common.cuh") == 1, stem
    with pytest.raises(ValueError, match="unknown CUDA module 'nope'"):
        loader.source("nope")


# ---- probe and import hygiene ------------------------------------------------------------------------------


def test_probe_without_cupy(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cupy" else real(name, *a)
    )
    assert cuda_backend.probe() == "cupy not installed: pip install cnnkern[cuda12] (or cnnkern[cuda13])"


def test_probe_reports_a_missing_device():
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("cupy not installed: the no-device message needs cupy to ask the driver")
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if count > 0:
        pytest.skip(f"this machine has {count} CUDA device(s)")
    reason = cuda_backend.probe()
    assert reason is not None and reason.startswith("no CUDA device ("), reason


def test_import_cnnkern_does_not_import_cupy():
    code = (
        "import sys, cnnkern, cnnkern.backends.cuda, cnnkern.backends.cuda.graph\n"
        "assert 'cupy' not in sys.modules, 'cupy was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_backend_defines_every_kernel():
    from cnnkern.backends.base import Backend

    missing = [k for k in KERNELS if getattr(cuda_backend.CudaBackend, k) is getattr(Backend, k)]
    assert not missing, f"CudaBackend lacks {missing}"
    assert cuda_backend.CudaBackend.array_module == "cupy" and cuda_backend.CudaBackend.dtypes == ("float32",)


def test_split_arithmetic():
    """Every split covers a non-empty chunk; the chunks tile the reduction exactly; GEMM chunks are whole
    16-deep k-tiles; the grid stays within CUDA's limits."""
    from cnnkern.backends.cuda import _channel_splits, _gemm_splits

    for depth in (1, 15, 16, 17, 127, 128, 129, 1000, 4096, 692224, 2**31 - 1):
        for tiles in (1, 3, 64, 1024, 5000):
            splits, chunk = _gemm_splits(depth, tiles, 7)
            assert 1 <= splits <= 7 and chunk % 16 == 0, (depth, tiles, splits, chunk)
            assert (splits - 1) * chunk < depth <= splits * chunk, (depth, tiles, splits, chunk)
        for channels in (1, 3, 64, 2000):
            splits, chunk = _channel_splits(depth, channels)
            assert 1 <= splits <= 65535 and (splits - 1) * chunk < depth <= splits * chunk, (depth, channels)


def test_size_limits_are_named():
    from cnnkern.backends.cuda import _check_gemm, _check_grid

    with pytest.raises(ValueError, match=r"conv2d_forward: pixels = 2147483648 exceeds"):
        _check_gemm("conv2d_forward", reduction=9, pixels=2**31)
    with pytest.raises(ValueError, match=r"dense_forward: batch / 64 = 65536 exceeds the CUDA grid limit"):
        _check_grid("dense_forward", "batch / 64", 65536)


# ---- the emulated backend runs the conformance suite -------------------------------------------------------


@pytest.fixture(scope="session")
def emulated_backend(request, tmp_path_factory):
    reason = unavailable()
    if reason is not None:
        _need_tool(reason)
    cache = getattr(request.config, "cache", None)  # keeps the compiled kernels between runs
    build_dir = (
        cache.mkdir("cuda-emulator") if cache is not None else tmp_path_factory.mktemp("cuda-emulator")
    )
    return EmulatedCudaBackend(build_dir)


@pytest.fixture
def target(emulated_backend):
    """Overrides conftest's ``target`` for the conformance tests collected into this module."""
    return Target(emulated_backend, "cuda-emulated")


# every test of every tests/test_conformance_*.py, collected here again as test_emulated_* so that it runs
# with the `target` above
for _path in sorted(pathlib.Path(__file__).parent.glob("test_conformance_*.py")):
    _module = importlib.import_module(f"{__package__}.{_path.stem}")
    for _name in dir(_module):
        if _name.startswith("test_"):
            globals()[f"test_emulated_{_name[len('test_') :]}"] = getattr(_module, _name)


# ---- checks run on the emulator and on a GPU ---------------------------------------------------------------


@pytest.fixture(params=["emulated", pytest.param("gpu", marks=pytest.mark.gpu)])
def cuda_target(request):
    if request.param == "emulated":
        return Target(request.getfixturevalue("emulated_backend"), "cuda-emulated")
    return Target(load_backend("cuda"), "cuda")


def _reference():
    return load_backend("reference")


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "tanh"])
def test_conv2d_bias_act_forward(cuda_target, activation):
    """The fused epilogue equals conv2d_forward followed by activation_forward, bit for bit."""
    t = cuda_target
    x, w, b = (
        t.put(randn((2, 5, 9, 8), 1), "float32"),
        t.put(randn((7, 5, 3, 3), 2), "float32"),
        t.put(randn((7,), 3), "float32"),
    )
    kw = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=1)
    fused = t.backend.conv2d_bias_act_forward(x, w, b, activation=activation, alpha=0.1, **kw)
    plain = t.backend.conv2d_forward(x, w, b, **kw)
    if activation is not None:
        plain = t.backend.activation_forward(plain, activation, alpha=0.1)
    assert_equal(
        t.get(fused), t.get(plain), what=f"{t.id} conv2d_bias_act_forward {activation}", dtype="float32"
    )


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_dense_bias_act_forward(cuda_target, activation):
    t = cuda_target
    x, w = t.put(randn((67, 33), 1), "float32"), t.put(randn((70, 33), 2), "float32")
    for b in (t.put(randn((70,), 3), "float32"), None):
        fused = t.backend.dense_bias_act_forward(x, w, b, activation=activation)
        plain = t.backend.dense_forward(x, w, b)
        if activation is not None:
            plain = t.backend.activation_forward(plain, activation, alpha=0.01)
        assert_equal(
            t.get(fused), t.get(plain), what=f"{t.id} dense_bias_act_forward {activation}", dtype="float32"
        )


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_act_forward(cuda_target, training):
    t = cuda_target
    x = randn((3, 6, 5, 7), 1, scale=2.0, offset=1.0)
    gamma, beta, rm, rv = randn((6,), 2), randn((6,), 3), randn((6,), 4), randn((6,), 5) ** 2 + 0.5
    stats = dict(training=training, momentum=0.1, eps=1e-5)
    rm_f, rv_f = t.put(rm, "float32"), t.put(rv, "float32")
    y, mean, invstd = t.backend.batchnorm2d_act_forward(
        t.put(x, "float32"),
        t.put(gamma, "float32"),
        t.put(beta, "float32"),
        rm_f,
        rv_f,
        activation="relu",
        **stats,
    )
    rm_p, rv_p = t.put(rm, "float32"), t.put(rv, "float32")
    y_plain, mean_p, invstd_p = t.backend.batchnorm2d_forward(
        t.put(x, "float32"), t.put(gamma, "float32"), t.put(beta, "float32"), rm_p, rv_p, **stats
    )
    relu = t.backend.activation_forward(y_plain, "relu", alpha=0.01)
    for name, a, b in (
        ("y", y, relu),
        ("mean", mean, mean_p),
        ("invstd", invstd, invstd_p),
        ("running_mean", rm_f, rm_p),
        ("running_var", rv_f, rv_p),
    ):
        assert_equal(t.get(a), t.get(b), what=f"{t.id} batchnorm2d_act_forward {name}", dtype="float32")


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
@pytest.mark.parametrize("eps_mode", ["torch", "keras"])
def test_adam_update_multi(cuda_target, eps_mode, decoupled):
    """One launch over several tensors (one of them empty) equals adam_update on each, bit for bit."""
    t = cuda_target
    shapes = [(3, 4), (0,), (17,), (2, 3, 5), (1,)]
    kw = dict(step=3, lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-7, weight_decay=0.01, eps_mode=eps_mode)
    kw["decoupled_weight_decay"] = decoupled
    fused = [[t.put(randn(s, 10 * i + j), "float32") for i, s in enumerate(shapes)] for j in range(4)]
    single = [[t.put(randn(s, 10 * i + j), "float32") for i, s in enumerate(shapes)] for j in range(4)]
    for j in range(len(shapes)):
        single[3][j] = t.put(np.abs(t.get(single[3][j])), "float32")  # v >= 0
        fused[3][j] = t.put(np.abs(t.get(fused[3][j])), "float32")
    for _ in range(2):  # the second call reuses the cached pointer table
        t.backend.adam_update_multi(*fused, **kw)
        for p, g, m, v in zip(*single):
            if p.size:
                t.backend.adam_update(p, g, m, v, **kw)
    for j, name in ((0, "param"), (2, "m"), (3, "v")):
        for i in range(len(shapes)):
            assert_equal(t.get(fused[j][i]), t.get(single[j][i]), what=f"{t.id} {name}[{i}]", dtype="float32")


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
@pytest.mark.parametrize("eps_mode", ["torch", "keras"])
def test_adam_update_multi_device_step(cuda_target, eps_mode, decoupled):
    """A step counter in device memory (for CUDA graphs) gives the host-step result at t = 1, 2, 3."""
    t = cuda_target
    kw = dict(lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-7, weight_decay=0.05 * decoupled, eps_mode=eps_mode)
    kw["decoupled_weight_decay"] = decoupled
    host = [t.put(randn((5, 7), j), "float32") for j in range(4)]
    dev = [t.put(randn((5, 7), j), "float32") for j in range(4)]
    host[3] = t.put(np.abs(t.get(host[3])), "float32")
    dev[3] = t.put(np.abs(t.get(dev[3])), "float32")
    counter = t.put(np.array(0), "int64")
    for step in (1, 2, 3):
        counter += 1
        t.backend.adam_update_multi([host[0]], [host[1]], [host[2]], [host[3]], step=step, **kw)
        t.backend.adam_update_multi([dev[0]], [dev[1]], [dev[2]], [dev[3]], step=counter, **kw)
    for j, name in ((0, "param"), (2, "m"), (3, "v")):
        # the device computes the bias corrections with its own pow(): allow a few float32 ulps
        assert_close(
            t.get(dev[j]),
            t.get(host[j]),
            **scaled("float32", 4 * EPS32, 4 * EPS32),
            what=f"{t.id} {name}",
            dtype="float32",
        )
    with pytest.raises(ValueError, match="step as an array must be 0-d int64"):
        t.backend.adam_update_multi(
            [dev[0]], [dev[1]], [dev[2]], [dev[3]], step=t.put(np.ones(2), "int64"), **kw
        )


def test_adam_update_multi_rejects_bad_lists(cuda_target):
    t = cuda_target
    p, q = t.put(np.zeros(3), "float32"), t.put(np.zeros(4), "float32")
    kw = dict(step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, eps_mode="torch")
    with pytest.raises(ValueError, match=r"grads has 2 arrays but params has 1"):
        t.backend.adam_update_multi([p], [p, p], [p], [p], **kw)
    with pytest.raises(ValueError, match=r"ms\[0\] has 4 elements but params\[0\] has 3"):
        t.backend.adam_update_multi([p], [p], [q], [p], **kw)
    with pytest.raises(TypeError, match=r"vs\[0\] must be float32"):
        t.backend.adam_update_multi([p], [p], [p], [t.put(np.zeros(3), "float64")], **kw)
    with pytest.raises(ValueError, match="eps_mode must be 'torch' or 'keras'"):
        t.backend.adam_update_multi([p], [p], [p], [p], **{**kw, "eps_mode": "tf"})
    with pytest.raises(ValueError, match="step must be an integer >= 1 or a 0-d int64 device array"):
        t.backend.adam_update_multi([p], [p], [p], [p], **{**kw, "step": 0})


def test_fused_activation_name_is_checked(cuda_target):
    t = cuda_target
    x = t.put(np.ones((1, 1, 3, 3)), "float32")
    with pytest.raises(ValueError, match="activation must be None or one of relu"):
        t.backend.conv2d_bias_act_forward(
            x, x, None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, activation="gelu"
        )


# Shapes large enough to take the split paths: the weight-gradient GEMM split over N*P*Q (and over the batch
# for dense), and the per-channel sums (bias gradient, batch norm) split into chunks.
_SPLIT_CONV = dict(x=(6, 3, 30, 30), w=(4, 3, 3, 3))
_SPLIT_DENSE = dict(n=300, fan_in=40, fan_out=20)
_SPLIT_BN = (9, 2, 30, 31)


def test_split_reductions(cuda_target):
    from cnnkern.backends.cuda import _channel_splits, _gemm_splits

    t, ref = cuda_target, _reference()
    assert _gemm_splits(6 * 28 * 28, 1, 65535)[0] > 1 and _channel_splits(6 * 28 * 28, 4)[0] > 1
    assert _gemm_splits(300, 1, 65535)[0] > 1 and _channel_splits(9 * 30 * 31, 2)[0] > 1
    kw = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    x, w = randint(_SPLIT_CONV["x"], 1), randint(_SPLIT_CONV["w"], 2)
    dy = randint((6, 4, 28, 28), 3)
    want = ref.conv2d_backward(dy, x, w, need_dx=False, need_dw=True, need_db=True, **kw)
    got = t.backend.conv2d_backward(
        t.put(dy, "float32"),
        t.put(x, "float32"),
        t.put(w, "float32"),
        need_dx=False,
        need_dw=True,
        need_db=True,
        **kw,
    )
    assert got[0] is None
    assert_equal(t.get(got[1]), want[1], what=f"{t.id} split dw", dtype="float32")
    assert_equal(t.get(got[2]), want[2], what=f"{t.id} split db", dtype="float32")
    n, i, o = _SPLIT_DENSE.values()
    x, w, dy = randint((n, i), 4), randint((o, i), 5), randint((n, o), 6)
    want = ref.dense_backward(dy, x, w, need_dx=True, need_db=True)
    got = t.backend.dense_backward(
        t.put(dy, "float32"), t.put(x, "float32"), t.put(w, "float32"), need_dx=True, need_db=True
    )
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        assert_equal(t.get(g), r, what=f"{t.id} split dense {name}", dtype="float32")
    x, w, b = randint((20, 1000), 11), randint((30, 1000), 12), randint((30,), 13)
    assert _gemm_splits(1000, 1, 65535)[0] > 1
    y = t.backend.dense_forward(t.put(x, "float32"), t.put(w, "float32"), t.put(b, "float32"))
    assert_equal(t.get(y), ref.dense_forward(x, w, b), what=f"{t.id} split dense forward", dtype="float32")
    fused = t.backend.dense_bias_act_forward(
        t.put(x, "float32"), t.put(w, "float32"), t.put(b, "float32"), activation="tanh"
    )
    plain = t.backend.activation_forward(y, "tanh", alpha=0.0)
    assert_equal(t.get(fused), t.get(plain), what=f"{t.id} split dense fused tanh", dtype="float32")
    x = randn(_SPLIT_BN, 7, scale=3.0, offset=50.0)
    gamma, beta, rm, rv = randn((2,), 8), randn((2,), 9), np.zeros(2), np.ones(2)
    want = ref.batchnorm2d_forward(
        x, gamma, beta, rm.copy(), rv.copy(), training=True, momentum=0.1, eps=1e-5
    )
    got = t.backend.batchnorm2d_forward(
        t.put(x, "float32"),
        t.put(gamma, "float32"),
        t.put(beta, "float32"),
        t.put(rm, "float32"),
        t.put(rv, "float32"),
        training=True,
        momentum=0.1,
        eps=1e-5,
    )
    count = x.size // 2
    for name, g, r in zip(("y", "mean", "invstd"), got, want):
        assert_close(
            t.get(g), r, **gemm_tol(count, magnitude=50.0), what=f"{t.id} split bn {name}", dtype="float32"
        )
    dy = randn(_SPLIT_BN, 10)
    want = ref.batchnorm2d_backward(dy, x, gamma, want[1], want[2], training=True)
    got = t.backend.batchnorm2d_backward(
        t.put(dy, "float32"), t.put(x, "float32"), t.put(gamma, "float32"), got[1], got[2], training=True
    )
    for name, g, r in zip(("dx", "dgamma", "dbeta"), got, want):
        assert_close(
            t.get(g), r, **gemm_tol(count, magnitude=4.0), what=f"{t.id} split bn {name}", dtype="float32"
        )


# ---- GPU only: graph capture, reproducibility, training sizes --------------------------------------------


@pytest.fixture
def gpu():
    return Target(load_backend("cuda"), "cuda")


def _classic_cnn_step(be, params, x, labels):
    """Forward, backward and a fused Adam step of the classic Fashion-MNIST CNN; returns the loss array."""
    w1, b1, w2, b2, w3, b3, w4, b4 = params["p"]
    conv = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    pool = dict(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)
    a1 = be.conv2d_bias_act_forward(x, w1, b1, activation="relu", **conv)
    p1, i1 = be.maxpool2d_forward(a1, **pool)
    a2 = be.conv2d_bias_act_forward(p1, w2, b2, activation="relu", **conv)
    p2, i2 = be.maxpool2d_forward(a2, **pool)
    flat = p2.reshape(p2.shape[0], -1)
    a3 = be.dense_bias_act_forward(flat, w3, b3, activation="relu")
    logits = be.dense_forward(a3, w4, b4)
    loss, probs = be.softmax_cross_entropy_forward(logits, labels)
    d4 = be.softmax_cross_entropy_backward(probs, labels)
    g3, gw4, gb4 = be.dense_backward(d4, a3, w4, need_dx=True, need_db=True)
    g3 = be.activation_backward(g3, a3, "relu", alpha=0.0)
    gf, gw3, gb3 = be.dense_backward(g3, flat, w3, need_dx=True, need_db=True)
    g2 = be.maxpool2d_backward(gf.reshape(p2.shape), i2, a2.shape)
    g2 = be.activation_backward(g2, a2, "relu", alpha=0.0)
    g1, gw2, gb2 = be.conv2d_backward(g2, p1, w2, need_dx=True, need_dw=True, need_db=True, **conv)
    g1 = be.maxpool2d_backward(g1, i1, a1.shape)
    g1 = be.activation_backward(g1, a1, "relu", alpha=0.0)
    _, gw1, gb1 = be.conv2d_backward(g1, x, w1, need_dx=False, need_dw=True, need_db=True, **conv)
    grads = [gw1, gb1, gw2, gb2, gw3, gb3, gw4, gb4]
    params["step"] += 1  # a device counter: under graph capture the increment is captured too
    be.adam_update_multi(params["p"], grads, params["m"], params["v"], step=params["step"])
    return loss


def _classic_cnn(t, batch, seed=0):
    shapes = [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 1600), (128,), (10, 128), (10,)]
    p = [t.put(randn(s, seed + i, scale=0.1), "float32") for i, s in enumerate(shapes)]
    zeros = [[t.put(np.zeros(s), "float32") for s in shapes] for _ in range(2)]
    params = {"p": p, "m": zeros[0], "v": zeros[1], "step": t.put(np.array(0), "int64")}
    x = t.put(randn((batch, 1, 28, 28), seed + 50), "float32")
    labels = t.put(np.random.default_rng(seed).integers(0, 10, batch), "int64")
    return params, x, labels


@pytest.mark.gpu
def test_gpu_training_step_is_reproducible(gpu):
    """Two runs of three steps from the same state give bitwise-equal losses and parameters (no atomics)."""
    runs = []
    for _ in range(2):
        params, x, labels = _classic_cnn(gpu, 128)
        losses = [float(_classic_cnn_step(gpu.backend, params, x, labels)) for _ in range(3)]
        runs.append((losses, [gpu.get(p) for p in params["p"]]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        assert np.array_equal(a, b)
    assert runs[0][0][2] < runs[0][0][0], f"loss did not decrease: {runs[0][0]}"


@pytest.mark.gpu
def test_gpu_graph_replay_matches_eager(gpu):
    from cnnkern.backends.cuda.graph import CapturedStep

    eager, x, labels = _classic_cnn(gpu, 32)
    eager_losses = [float(_classic_cnn_step(gpu.backend, eager, x, labels)) for _ in range(5)]
    graphed, gx, glabels = _classic_cnn(gpu, 32)
    # CapturedStep runs the step twice eagerly (warm-up) and once under capture (not executed)
    step = CapturedStep(lambda: _classic_cnn_step(gpu.backend, graphed, gx, glabels), warmup=2)
    losses = [float(gpu.get(step())) for _ in range(3)]
    assert losses == eager_losses[2:5]  # same kernels, same arguments, same order: bitwise equal
    assert int(gpu.get(graphed["step"])) == 5
    for a, b in zip(graphed["p"], eager["p"]):
        assert_equal(gpu.get(a), gpu.get(b), what="graph-replayed parameters", dtype="float32")


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [32, 128])
def test_gpu_classic_cnn_layers_at_training_size(gpu, batch):
    """The CNN's convolutions forward and backward at training batch sizes (split reductions included)."""
    ref = _reference()
    conv = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    for xs, ws in (((batch, 1, 28, 28), (32, 1, 3, 3)), ((batch, 32, 13, 13), (64, 32, 3, 3))):
        x, w, b = randn(xs, 1), randn(ws, 2), randn((ws[0],), 3)
        y = ref.conv2d_forward(x, w, b, **conv)
        dy = randn(y.shape, 4)
        want = ref.conv2d_backward(dy, x, w, need_dx=True, need_dw=True, need_db=True, **conv)
        gy = gpu.backend.conv2d_forward(
            gpu.put(x, "float32"), gpu.put(w, "float32"), gpu.put(b, "float32"), **conv
        )
        assert_close(gpu.get(gy), y, **gemm_tol(ws[1] * 9), what=f"conv {xs} y", dtype="float32")
        got = gpu.backend.conv2d_backward(
            gpu.put(dy, "float32"),
            gpu.put(x, "float32"),
            gpu.put(w, "float32"),
            need_dx=True,
            need_dw=True,
            need_db=True,
            **conv,
        )
        depth = y.shape[0] * y.shape[2] * y.shape[3]
        for name, g, r, k in zip(("dx", "dw", "db"), got, want, (ws[0] * 9, depth, depth)):
            assert_close(gpu.get(g), r, **gemm_tol(k), what=f"conv {xs} {name}", dtype="float32")


@pytest.mark.gpu
def test_gpu_front_door_takes_cupy_arrays(gpu):
    """cnnkern.ops with backend='cuda' on CuPy input, including a non-contiguous view (copied by ops)."""
    from cnnkern import ops

    x = randn((2, 3, 8, 8), 1)
    w = randn((4, 3, 3, 3), 2)
    want = ops.conv2d_forward(x[:, :, ::-1], w, padding=1, backend="reference")
    xd = gpu.put(x, "float32")[:, :, ::-1]
    got = ops.conv2d_forward(xd, gpu.put(w, "float32"), padding=1, backend="cuda")
    assert_close(gpu.get(got), want, **gemm_tol(27), what="ops.conv2d_forward on cupy", dtype="float32")
