"""cnnkern.torch on the cuda backend's kernels: a converted model's forward and gradients (and an optimizer
step) against the unconverted PyTorch model.

On the CPU emulator (tests/cuda_emulator.py), always: the emulated backend takes NumPy arrays, so the
tensors are CPU tensors routed to it as the default backend; this checks the CUDA kernels through
cnnkern.torch's ops, autograd formulas and fusions. On a GPU (``-m gpu``; benchmarks/gpu_check.sh): CUDA
tensors, which adds the DLPack exchange with CuPy (``_bridge.arr_in`` / ``t_out``), the device and
PyTorch's current stream (``_bridge.device_scope``) and ``torch.library.opcheck`` on CUDA."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='PyTorch not installed: pip install "cnnkern[torch]"')

import cnnkern.torch as ct  # noqa: E402
from cnnkern import backends  # noqa: E402

from .conftest import load_backend  # noqa: E402
from .test_cuda import emulated_backend  # noqa: E402,F401  (the session fixture: the emulator's build)

nn = torch.nn


def small_model() -> nn.Sequential:
    """Every kind of layer convert() replaces or fuses, at shapes the emulator runs in seconds."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),  # fused: conv + act + pool
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 8),
        nn.Tanh(),
        nn.Linear(8, 3),
    )


def test_converted_model_on_emulated_cuda_kernels(emulated_backend):  # noqa: F811
    ref = small_model()
    model, report = ct.convert(copy.deepcopy(ref))
    assert any("ConvActPool2d" in str(f) for f in report.fused), report
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 1, 10, 10), dtype=np.float32))
    y = torch.tensor([0, 2, 1])
    backends.set_backend(emulated_backend)  # conftest's autouse fixture puts the default back
    assert ct._bridge.backend_for(x) is emulated_backend
    losses = []
    for m in (ref, model):
        loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    for k in ("4.running_mean", "4.running_var"):
        torch.testing.assert_close(model.state_dict()[k], ref.state_dict()[k], rtol=1e-5, atol=1e-6, msg=k)
    # one Adam step each: torch.optim's on the reference, cnnkern.torch.optim's kernel on the emulator
    torch.optim.Adam(ref.parameters(), lr=1e-2).step()
    ct.optim.Adam(model.parameters(), lr=1e-2).step()
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.gpu
def test_converted_model_on_cuda_tensors():
    load_backend("cuda")
    if not torch.cuda.is_available():
        pytest.skip(f"this PyTorch ({torch.__version__}) has no CUDA device")
    dev = torch.device("cuda", 0)
    ref = small_model().to(dev)
    model, report = ct.convert(copy.deepcopy(ref))
    assert any("ConvActPool2d" in str(f) for f in report.fused), report
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((3, 1, 10, 10), dtype=np.float32)).to(dev)
    y = torch.tensor([0, 2, 1], device=dev)
    torch.backends.cudnn.allow_tf32 = False
    losses = []
    for m in (ref, model):
        out = m(x)
        assert out.device == dev
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        assert q.grad is not None and q.grad.device == dev
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    w = torch.randn(5, 1, 3, 3, device=dev, requires_grad=True)
    args = (x.detach().clone().requires_grad_(), w, None, [1, 1], [1, 1], [1, 1], 1, "relu", 0.0)
    torch.library.opcheck(torch.ops.cnnkern.conv2d, args)
