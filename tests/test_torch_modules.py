"""cnnkern.torch's modules against their torch.nn twins: the same constructor, parameters and state_dict
(a checkpoint moves both ways), the same forward and gradients (float64, the reference backend, to 1e-10),
batch norm's running statistics in every mode, and the settings cnnkern refuses."""

import pytest

from .compare import assert_close

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
import cnnkern.torch as ct  # noqa: E402  (needs torch)

nn = torch.nn
TOL = dict(atol=1e-10, rtol=1e-10)

PAIRS = {
    "conv": (
        lambda m: m.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
        (2, 4, 9, 8),
    ),
    "conv_same_nobias": (lambda m: m.Conv2d(4, 3, 3, padding="same", bias=False), (2, 4, 6, 6)),
    "maxpool": (lambda m: m.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 7, 7)),
    "avgpool": (lambda m: m.AvgPool2d((2, 3), (2, 1), (1, 1), count_include_pad=False), (2, 3, 7, 7)),
    "batchnorm": (lambda m: m.BatchNorm2d(3), (4, 3, 5, 5)),
    "batchnorm_cumulative": (lambda m: m.BatchNorm2d(3, momentum=None), (4, 3, 5, 5)),
    "batchnorm_no_affine": (lambda m: m.BatchNorm2d(3, affine=False), (4, 3, 5, 5)),
    "batchnorm_untracked": (lambda m: m.BatchNorm2d(3, track_running_stats=False), (4, 3, 5, 5)),
    "linear": (lambda m: m.Linear(7, 5), (3, 2, 7)),
    "relu": (lambda m: m.ReLU(), (2, 3, 4, 4)),
    "leaky_relu": (lambda m: m.LeakyReLU(0.2), (2, 3, 4, 4)),
    "sigmoid": (lambda m: m.Sigmoid(), (2, 3, 4, 4)),
    "tanh": (lambda m: m.Tanh(), (3, 5)),
}


def _pair(name):
    make, shape = PAIRS[name]
    torch.manual_seed(0)
    ref = make(nn).double()
    ours = make(ct).double()
    assert type(ours).__mro__[1] is type(ref), "each cnnkern module subclasses its torch.nn twin"
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    return ref, ours, shape


def _step(m, x):
    x = x.detach().clone().requires_grad_()
    y = m(x)
    weights = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).reshape(y.shape)
    (y * weights).sum().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in m.named_parameters()}


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_module_matches_torch_nn(name, mode):
    ref, ours, shape = _pair(name)
    for m in (ref, ours):
        m.train(mode == "train")
    for step in range(2):  # twice: batch norm's running statistics feed the second step in eval
        x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        (y_ref, dx_ref, dp_ref), (y, dx, dp) = _step(ref, x), _step(ours, x)
        assert_close(y.numpy(), y_ref.numpy(), **TOL, what=f"{name} output")
        assert_close(dx.numpy(), dx_ref.numpy(), **TOL, what=f"{name} input gradient")
        for key in dp_ref:
            assert_close(dp[key].numpy(), dp_ref[key].numpy(), **TOL, what=f"{name} {key} gradient")
        for key, value in ref.state_dict().items():  # running statistics and num_batches_tracked
            assert_close(ours.state_dict()[key].double().numpy(), value.double().numpy(), **TOL, what=key)


def test_checkpoint_moves_both_ways(tmp_path):
    def model(m):
        return nn.Sequential(
            m.Conv2d(1, 4, 3), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2), nn.Flatten(), m.Linear(36, 3)
        )

    torch.manual_seed(1)
    ref = model(nn)
    ref.train()(torch.randn(4, 1, 8, 8))  # running statistics away from their initial values
    torch.save(ref.state_dict(), tmp_path / "torch.pt")
    ours = model(ct)
    ours.load_state_dict(torch.load(tmp_path / "torch.pt"))
    x = torch.randn(2, 1, 8, 8)
    assert_close(
        ours.eval()(x).detach().numpy(), ref.eval()(x).detach().numpy(), atol=1e-5, rtol=1e-5, what="eval"
    )
    ours.train()(torch.randn(4, 1, 8, 8))
    torch.save(ours.state_dict(), tmp_path / "cnnkern.pt")
    back = model(nn)
    back.load_state_dict(torch.load(tmp_path / "cnnkern.pt"))
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_conv_act_pool_module_equals_its_parts():
    torch.manual_seed(2)
    conv, pool = nn.Conv2d(3, 5, 3, padding=1).double(), nn.MaxPool2d(2)
    fused = ct.ConvActPool2d(conv, pool, "leaky_relu", 0.1)
    assert fused.weight is conv.weight and list(fused.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    (y, dx, dp), (y_ref, dx_ref, dp_ref) = (
        _step(fused, x),
        _step(nn.Sequential(conv, nn.LeakyReLU(0.1), pool), x),
    )
    assert_close(y.numpy(), y_ref.numpy(), **TOL, what="fused output")
    assert_close(dx.numpy(), dx_ref.numpy(), **TOL, what="fused input gradient")
    assert_close(dp["weight"].numpy(), dp_ref["0.weight"].numpy(), **TOL, what="fused weight gradient")


def test_fused_activation_in_conv_and_linear():
    torch.manual_seed(3)
    conv = ct.Conv2d(2, 3, 3, activation="tanh").double()
    lin = ct.Linear(4, 2, activation="relu").double()
    x, z = torch.randn(1, 2, 5, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    want = torch.tanh(nn.functional.conv2d(x, conv.weight, conv.bias))
    assert_close(conv(x).detach().numpy(), want.detach().numpy(), **TOL, what="conv + tanh")
    want = torch.relu(nn.functional.linear(z, lin.weight, lin.bias))
    assert_close(lin(z).detach().numpy(), want.detach().numpy(), **TOL, what="linear + relu")
    assert "activation='tanh'" in repr(conv)


def test_cross_entropy_loss_module():
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 3, 1, 1, 2])
    loss, want = ct.CrossEntropyLoss()(logits, target), nn.CrossEntropyLoss()(logits, target)
    assert abs(loss.item() - want.item()) < 1e-12
    with pytest.raises(ValueError, match="reduction='mean'"):
        ct.CrossEntropyLoss(reduction="sum")


def test_settings_cnnkern_refuses():
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        ct.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="negative_slope >= 0"):
        ct.LeakyReLU(-0.1)
    with pytest.raises(ValueError, match="divisor_override"):
        ct.AvgPool2d(2, divisor_override=3)
    with pytest.raises(TypeError, match="input must be float32 or float64"):
        ct.Conv2d(1, 1, 3)(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16))
