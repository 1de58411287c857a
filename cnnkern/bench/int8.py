"""``cnnkern bench --int8``: inference of the classic CNN and the VGG-style model with batch norm
(:func:`cnnkern.zoo.vgg_bn`, Fashion-MNIST's 28x28x1, not the 32x32x3 model of ``--zoo``), float32 vs
cnnkern int8 (:func:`cnnkern.compress.quantize`) vs PyTorch's x86 eager-mode static int8 model of the
same weights with the same calibration images, in one process, interleaved (:mod:`.timing`); ratios
compare medians from this run only.

The models keep their seeded initial weights (the times do not depend on the values), calibrated on the
first images of the bundled Fashion-MNIST subset; the times are of ``predict`` (cnnkern) and of the module
call under ``torch.inference_mode`` (PyTorch) on one batch of test images. Before timing, the int8 model's
outputs on a few images are checked equal to the reference backend's (the specification).
``benchmarks/int8_ptq.py`` uses the same PyTorch models for its accuracy comparison of trained models."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from . import timing

if TYPE_CHECKING:
    from ..models import Sequential

MODELS = ("classic", "vgg_bn")
COLUMNS = ("float32", "int8", "torch int8")
CALIBRATION = 256  # images


def torch_float(model: Sequential) -> Any:
    """A float ``torch.nn.Sequential`` (eval mode) equal to the cnnkern ``model`` with its batch norms folded
    (:func:`cnnkern.compress.fold_batchnorm`): conv ('valid', or 'same' with odd kernels at stride 1), dense
    (ReLU / linear / a final softmax left out: logits), max pool, flatten, ReLU, dropout."""
    from .. import layers as L
    from ..compress import fold_batchnorm
    from ..layers import to_numpy
    from ..torch_ref import require_torch

    torch = require_torch()
    mods: list[Any] = []
    for layer in fold_batchnorm(model).layers:
        name = f"{layer.name} ({type(layer).__name__})"
        if isinstance(layer, (L.Conv2D, L.Dense)):
            k = np.asarray(to_numpy(layer.params["kernel"]), np.float32)
            if isinstance(layer, L.Conv2D):
                pad = (0, 0)
                if layer.padding == "same":
                    if any(s != 1 or r % 2 == 0 for r, s in zip(layer.kernel_size, layer.strides)):
                        raise ValueError(f"{name}: only odd 'same' kernels at stride 1 are translated")
                    pad = (layer.kernel_size[0] // 2, layer.kernel_size[1] // 2)
                if layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1):
                    raise ValueError(f"{name}: grouped or dilated convolutions are not translated")
                mod = torch.nn.Conv2d(k.shape[1], k.shape[0], k.shape[2:], tuple(layer.strides), pad)
            else:
                mod = torch.nn.Linear(k.shape[1], k.shape[0])
            bias = to_numpy(layer.params["bias"]) if "bias" in layer.params else np.zeros(k.shape[0])
            with torch.no_grad():
                mod.weight.copy_(torch.from_numpy(k))
                mod.bias.copy_(torch.from_numpy(np.asarray(bias, np.float32)))
            mods.append(mod)
            if layer.activation == "relu":
                mods.append(torch.nn.ReLU())
            elif layer.activation not in ("linear", "softmax"):
                raise ValueError(f"{name}: activation {layer.activation!r} is not translated")
        elif isinstance(layer, L.MaxPooling2D) and layer.padding == "valid":
            mods.append(torch.nn.MaxPool2d(tuple(layer.pool_size), tuple(layer.strides)))
        elif isinstance(layer, L.Flatten):
            mods.append(torch.nn.Flatten())
        elif isinstance(layer, (L.ReLU, L.Activation)) and layer.activation == "relu":
            mods.append(torch.nn.ReLU())
        elif not isinstance(layer, L.Dropout):
            raise ValueError(f"{name}: no PyTorch int8 counterpart here")
    return torch.nn.Sequential(*mods).eval()


def torch_int8(model: Sequential, calibration_nchw: np.ndarray) -> Any:
    """PyTorch's x86 eager-mode static int8 model of the cnnkern ``model`` (conv / linear + ReLU fused),
    calibrated on ``calibration_nchw`` (N, C, H, W) float32."""
    from torch.ao import quantization as tq

    from ..torch_ref import require_torch

    torch = require_torch()
    body = list(torch_float(model))
    q = torch.nn.Sequential(tq.QuantStub(), *body, tq.DeQuantStub()).eval()
    pairs = [
        [str(i + 1), str(i + 2)]
        for i, m in enumerate(body[:-1])
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and isinstance(body[i + 1], torch.nn.ReLU)
    ]
    with warnings.catch_warnings():
        # torch 2.13 deprecates eager-mode quantization (to move to torchao) but still runs it
        for text in ("torch.ao.quantization is deprecated", ".*reduce_range", ".*quantize_per"):
            warnings.filterwarnings("ignore", message=text)
        tq.fuse_modules(q, pairs, inplace=True)
        torch.backends.quantized.engine = "x86"
        q.qconfig = tq.get_default_qconfig("x86")
        tq.prepare(q, inplace=True)
        with torch.no_grad():
            for lo in range(0, len(calibration_nchw), 128):
                q(torch.from_numpy(np.ascontiguousarray(calibration_nchw[lo : lo + 128], np.float32)))
        return tq.convert(q, inplace=False)


def build(name: str, backend: str, seed: int = 0) -> Sequential:
    """Model ``name`` of :data:`MODELS`, built with its seeded initial weights."""
    from .. import zoo

    if name not in MODELS:
        raise ValueError(f"unknown int8 bench model {name!r}; choose from {', '.join(MODELS)}")
    model = zoo.classic_cnn(seed=seed, backend=backend) if name == "classic" else zoo.vgg_bn(seed, backend)
    model.build()
    return model


def _candidates(model: Sequential, q: Any, tq: Any, x: np.ndarray) -> list[timing.Candidate]:
    """float32 and int8 ``predict`` of the batch ``x`` in one call, and PyTorch's int8 module (``tq``, if
    any) under ``inference_mode``."""
    b = len(x)
    cands = [
        timing.Candidate("float32", lambda: model.predict(x, batch_size=b)),
        timing.Candidate("int8", lambda: q.predict(x, batch_size=b)),
    ]
    if tq is not None:
        import torch

        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

        def call() -> Any:
            with torch.inference_mode():
                return tq(xt)

        cands.append(timing.Candidate("torch int8", call))
    return cands


def run_int8(
    names: list[str],
    batches: list[int],
    *,
    backend: str,
    with_torch: bool,
    repeat: int,
    target_s: float,
    settle_s: float,
    log: Any = print,
) -> list[dict[str, Any]]:
    """Time every model at every batch size; one record per (model, batch): the candidates' raw samples,
    their summaries and the ratios int8 / float32 and int8 / torch int8."""
    from ..compress import quantize
    from ..datasets import fashion_mnist

    (x_train, _), (x_test, _) = fashion_mnist.load_data(subset=True)
    calib = x_train[:CALIBRATION, ..., None] * np.float32(1 / 255)
    images = x_test[..., None] * np.float32(1 / 255)
    records: list[dict[str, Any]] = []
    for name in names:
        model = build(name, backend)
        q = quantize(model, calib, backend=backend)
        want = quantize(model, calib, backend="reference").predict(images[:4])
        if not np.array_equal(q.predict(images[:4]), want):
            raise RuntimeError(f"{name}: the {backend} int8 kernels disagree with the reference")
        tq = torch_int8(model, np.ascontiguousarray(calib.transpose(0, 3, 1, 2))) if with_torch else None
        for b in batches:
            reps = -(-b // len(images))
            x = np.concatenate([images] * reps)[:b] if reps > 1 else images[:b]
            cands = _candidates(model, q, tq, x)
            log(f"timing {name} inference at batch {b}: {', '.join(c.name for c in cands)}")
            timing.measure(cands, repeat=repeat, target_s=target_s, settle_s=settle_s)
            medians = {c.name: timing.summary(c.samples)["median_s"] for c in cands}
            ratios = {"int8/float32": medians["int8"] / medians["float32"]}
            if "torch int8" in medians:
                ratios["int8/torch int8"] = medians["int8"] / medians["torch int8"]
            records.append(
                {
                    "model": name,
                    "batch": b,
                    "candidates": {
                        c.name: {"samples_s": c.samples, **timing.summary(c.samples)} for c in cands
                    },
                    "ratios": ratios,
                }
            )
    return records


def table(records: list[dict[str, Any]], torch_reason: str | None) -> str:
    """The side-by-side table: median ms per column, then the ratios."""
    head = f"{'model':<8}{'batch':>6}" + "".join(f"{c + ' ms':>15}" for c in COLUMNS)
    head += f"{'int8/float32':>14}{'int8/torch':>12}"
    lines = [head]
    for r in records:
        cells = [
            f"{r['candidates'][c]['median_s'] * 1e3:>15.3f}" if c in r["candidates"] else f"{'-':>15}"
            for c in COLUMNS
        ]
        vs_torch = r["ratios"].get("int8/torch int8")
        lines.append(
            f"{r['model']:<8}{r['batch']:>6}{''.join(cells)}{r['ratios']['int8/float32']:>14.2f}"
            + (f"{vs_torch:>12.2f}" if vs_torch is not None else f"{'-':>12}")
        )
    if torch_reason:
        lines.append(f"no torch int8 column: {torch_reason}")
    return "\n".join(lines)
