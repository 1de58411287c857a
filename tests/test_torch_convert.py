"""cnnkern.torch.convert on whole models: the classic CNN (fused, trained 20 steps on the bundled
Fashion-MNIST subset beside the unconverted model), a model with a layer cnnkern lacks (nn.Upsample), the
report, the state_dict, and torch.compile without graph breaks."""

import copy

import numpy as np
import pytest

from cnnkern import torch_ref
from cnnkern.bench.shapes import CLASSIC_PARAM_SHAPES
from cnnkern.datasets import fashion_mnist

from .compare import assert_close

torch = pytest.importorskip(
    "torch", reason="torch is not installed: pip install cnnkern[torch] (torch==2.13.0, CPU)"
)
import cnnkern.torch as ct  # noqa: E402  (needs torch)

nn = torch.nn
F = nn.functional


def _classic():
    rng = np.random.default_rng(0)
    weights = []
    for shape in CLASSIC_PARAM_SHAPES:  # He-scaled weights, zero biases (as the model layer initialises)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        weights.append(rng.standard_normal(shape) * np.sqrt(2 / fan_in) if fan_in else np.zeros(shape))
    return torch_ref.classic_cnn([w.astype(np.float32) for w in weights])


def _batches(n_steps, batch):
    (x, y), _ = fashion_mnist.load_data(subset=True)
    x = torch.from_numpy(x[: n_steps * batch].astype(np.float32) / 255).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y[: n_steps * batch].astype(np.int64))
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n_steps * batch, batch)]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: the CI machine has two cores, and these tests time nothing."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(model, batches, optimizer=torch.optim.Adam, **settings):
    opt = optimizer(model.parameters(), **(settings or dict(lr=1e-3)))
    losses = []
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_classic_cnn_converts_fused():
    ref = _classic()
    model, report = ct.convert(copy.deepcopy(ref))
    assert [paths for paths, _ in report.fused] == [("0", "1", "2"), ("3", "4", "5"), ("6", "7"), ("9", "10")]
    assert [what for _, what in report.fused][:2] == ["ConvActPool2d", "ConvActPool2d"]
    assert report.replaced == [("11", "Linear", "cnnkern.torch.Linear")]
    assert report.kept == [("8", "Flatten", "no cnnkern kernel: runs in torch")]
    assert isinstance(model[0], ct.ConvActPool2d) and isinstance(model[1], nn.Identity)
    assert list(model.state_dict()) == list(ref.state_dict())
    assert "fused    0 + 1 + 2 -> ConvActPool2d" in str(report)


def test_convert_shares_parameters_in_place():
    model = _classic()
    params = list(model.parameters())
    converted, _ = ct.convert(model)
    assert converted is model and all(p is q for p, q in zip(params, converted.parameters()))


@pytest.mark.parametrize(
    "optimizer", [torch.optim.SGD, ct.optim.SGD], ids=["torch.optim", "cnnkern.torch.optim"]
)
def test_classic_cnn_trains_like_the_unconverted_model(optimizer):
    """20 SGD steps (momentum 0.9), batch 32, float32: the loss trajectories agree to ~100 float32 ulps, with
    torch.optim.SGD on the converted model and with cnnkern.torch.optim.SGD (the unconverted model: torch's).

    SGD, not Adam: Adam's step g/(sqrt(v)+eps) turns a rounding difference in a near-zero gradient into a
    full-size step, so two correct float32 runs (torch's own float32 run against its float64 one included)
    part within a few steps; the float64 comparison below (Adam) shows the arithmetic is the same."""
    batches = _batches(20, 32)
    ref = _classic()
    model, _ = ct.convert(copy.deepcopy(ref))
    sgd = dict(lr=0.01, momentum=0.9)
    losses_ref = _train(ref, batches, optimizer=torch.optim.SGD, **sgd)
    losses = _train(model, batches, optimizer=optimizer, **sgd)
    assert losses_ref[-5:].mean() < losses_ref[:5].mean() - 0.3  # it learns: the comparison means something
    assert_close(losses, losses_ref, atol=1e-5, rtol=1e-5, what="loss trajectory")
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert_close(p.detach().numpy(), q.detach().numpy(), atol=1e-5, rtol=1e-4, what=f"weights {name}")


@pytest.mark.parametrize(
    "optimizer", [torch.optim.Adam, ct.optim.Adam], ids=["torch.optim", "cnnkern.torch.optim"]
)
def test_classic_cnn_float64_adam_trajectory_is_torchs(optimizer):
    """float64 on the reference backend: 6 Adam steps (torch.optim's or cnnkern.torch.optim's on the converted
    model) give the unconverted model's losses under torch.optim.Adam to 1e-10."""
    batches = [(x.double(), y) for x, y in _batches(6, 16)]
    ref = _classic().double()
    model, _ = ct.convert(copy.deepcopy(ref))
    losses = _train(model, batches, optimizer=optimizer)
    assert_close(losses, _train(ref, batches), atol=1e-10, rtol=1e-10, what="loss trajectory")


def test_converted_model_compiles_without_graph_breaks():
    model, _ = ct.convert(_classic())
    x, y = _batches(1, 8)[0]
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    loss = F.cross_entropy(compiled(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    loss_eager = F.cross_entropy(model(x), y)
    grads_eager = torch.autograd.grad(loss_eager, list(model.parameters()))
    assert abs(loss.item() - loss_eager.item()) < 1e-6
    for g, ge in zip(grads, grads_eager):
        assert torch.equal(g, ge)  # the same kernels run, compiled or not


class _WithUpsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(4),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def test_model_with_upsample_converts_partially_and_trains():
    torch.manual_seed(0)
    ref = _WithUpsample().double()
    model, report = ct.convert(copy.deepcopy(ref))
    kept = {path: why for path, _, why in report.kept}
    assert kept["features.2"] == "no cnnkern kernel: runs in torch"
    assert "padding_mode='reflect'" in kept["features.3"]
    assert report.fused == [(("features.0", "features.1"), "Conv2d(activation='relu')")]
    assert {path for path, _, _ in report.replaced} == {"features.4", "features.5", "features.6", "head"}
    assert isinstance(model.features[2], nn.Upsample) and type(model.features[3]) is nn.Conv2d
    batches = [(x.double()[:, :, ::2, ::2], y) for x, y in _batches(6, 16)]
    # float64: cnnkern's reference backend and torch agree to rounding, step after step
    assert_close(_train(model, batches), _train(ref, batches), atol=1e-9, rtol=1e-9, what="loss trajectory")
    losses = _train(model, batches * 4, lr=1e-2)  # and it keeps learning
    assert losses[-6:].mean() < losses[:6].mean() - 0.2


def test_convert_a_single_layer_and_refuse_non_modules():
    layer, report = ct.convert(nn.Conv2d(1, 2, 3))
    assert type(layer) is ct.Conv2d and report.replaced == [("", "Conv2d", "cnnkern.torch.Conv2d")]
    kept, report = ct.convert(nn.Upsample(scale_factor=2))
    assert type(kept) is nn.Upsample and report.kept
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ct.convert(lambda x: x)
