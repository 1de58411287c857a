"""int8 post-training quantization of the classic CNN: accuracy and inference time, float32 vs int8, beside
PyTorch's x86 eager-mode static quantization of the same weights with the same calibration images.

A script, not a test: ``python benchmarks/int8_ptq.py MODEL.npz [--threads 2] [--calibrate 1000]`` on a
model trained with ``cnnkern train --save MODEL.npz``, or ``--vgg-epochs N`` to train a VGG-style model with
batch norm (folded before quantization) on the first ``--vgg-train`` images and save it to MODEL.npz.
Times are medians of ``--repeats`` runs (after one warm-up) of ``predict`` over one batch of 128 and of 1
test image(s)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import numpy as np


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def torch_float(model: Any) -> Any:
    """A torch.nn.Sequential equal to the cnnkern model (batch norms folded first; valid padding, ReLU
    activations, max pools, flatten, dense)."""
    import torch

    from cnnkern import layers as L
    from cnnkern.compress import fold_batchnorm

    mods: list[Any] = []
    for layer in fold_batchnorm(model).layers:
        if isinstance(layer, L.Conv2D):
            k = layer.params["kernel"]
            conv = torch.nn.Conv2d(
                k.shape[1], k.shape[0], tuple(layer.kernel_size), stride=tuple(layer.strides)
            )
            if layer.padding == "same":
                conv.padding = (layer.kernel_size[0] // 2, layer.kernel_size[1] // 2)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.asarray(k, np.float32)))
                conv.bias.copy_(torch.from_numpy(np.asarray(layer.params["bias"], np.float32)))
            mods.append(conv)
        elif isinstance(layer, L.Dense):
            k = layer.params["kernel"]
            lin = torch.nn.Linear(k.shape[1], k.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.asarray(k, np.float32)))
                lin.bias.copy_(torch.from_numpy(np.asarray(layer.params["bias"], np.float32)))
            mods.append(lin)
        elif isinstance(layer, L.MaxPooling2D):
            mods.append(torch.nn.MaxPool2d(tuple(layer.pool_size), tuple(layer.strides)))
            continue
        elif isinstance(layer, L.Flatten):
            mods.append(torch.nn.Flatten())
            continue
        elif isinstance(layer, (L.ReLU, L.Activation)) and layer.activation == "relu":
            mods.append(torch.nn.ReLU())
            continue
        elif isinstance(layer, L.Dropout):
            continue
        else:
            raise ValueError(f"no torch counterpart here for {type(layer).__name__}")
        if getattr(layer, "activation", None) == "relu":
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).eval()


def torch_int8(model: Any, calib: np.ndarray) -> Any:
    """PyTorch's x86 eager-mode static int8 model of the cnnkern ``model`` (conv/linear + ReLU fused),
    calibrated on ``calib`` (N, C, H, W)."""
    import torch
    from torch.ao import quantization as tq

    body = list(torch_float(model))
    q = torch.nn.Sequential(tq.QuantStub(), *body, tq.DeQuantStub()).eval()
    pairs = [
        [str(i + 1), str(i + 2)]
        for i, m in enumerate(body[:-1])
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and isinstance(body[i + 1], torch.nn.ReLU)
    ]
    tq.fuse_modules(q, pairs, inplace=True)
    torch.backends.quantized.engine = "x86"
    q.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(q, inplace=True)
    with torch.no_grad():
        for lo in range(0, len(calib), 128):
            q(torch.from_numpy(calib[lo : lo + 128]))
    return tq.convert(q, inplace=False)


def vgg_bn(seed: int = 0) -> Any:
    """A small VGG-style network with batch norm (conv > BN > ReLU twice per stage, two stages)."""
    from cnnkern import layers, models

    m = models.Sequential(seed=seed, backend="cpp")
    m.add(layers.Conv2D(32, 3, padding="same", use_bias=False, input_shape=(28, 28, 1)))
    for filters, pool in ((32, True), (64, False), (64, True)):
        m.add(layers.BatchNormalization())
        m.add(layers.ReLU())
        if pool:
            m.add(layers.MaxPooling2D(2))
        m.add(layers.Conv2D(filters, 3, padding="same", use_bias=False))
    m.add(layers.BatchNormalization())
    m.add(layers.ReLU())
    m.add(layers.MaxPooling2D(2))
    m.add(layers.Flatten())
    m.add(layers.Dense(128, activation="relu"))
    m.add(layers.Dense(10, activation="softmax"))
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibrate", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--vgg-train", type=int, default=20000, help="training images of the VGG model")
    parser.add_argument(
        "--vgg-epochs", type=int, default=0, help="train the VGG-style BN model this long instead of MODEL"
    )
    args = parser.parse_args()
    os.environ["CNNKERN_NUM_THREADS"] = str(args.threads)
    from cnnkern import backends
    from cnnkern.compress import quantize
    from cnnkern.datasets import fashion_mnist
    from cnnkern.models import Sequential, load_model

    backends.get("cpp").set_num_threads(args.threads)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    x_train = (x_train[..., None] / np.float32(255)).astype(np.float32)
    x_test = (x_test[..., None] / np.float32(255)).astype(np.float32)
    if args.vgg_epochs:
        model = vgg_bn()
        start = time.perf_counter()
        n = args.vgg_train
        model.fit(x_train[:n], y_train[:n], batch_size=64, epochs=args.vgg_epochs, verbose=0)
        print(f"VGG-style BN model trained {args.vgg_epochs} epoch(s) in {time.perf_counter() - start:.0f}s")
        model.save(args.model)
    else:
        loaded = load_model(args.model, backend="cpp")
        assert isinstance(loaded, Sequential)
        model = loaded
    if "accuracy" not in (model.metrics or []):
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    q = quantize(model, x_train[: args.calibrate], backend="cpp")
    print(f"quantized with {args.calibrate} calibration images in {time.perf_counter() - start:.1f}s")
    from cnnkern import _cpp

    print(f"cpp SIMD path {_cpp.simd()}, int8 GEMM {_cpp.q8_gemm_path()}, threads {args.threads}")
    acc_f = model.evaluate(x_test, y_test, batch_size=256)[1]  # type: ignore[index]
    acc_q = q.evaluate(x_test, y_test, batch_size=256)[1]  # type: ignore[index]
    rows = [("cnnkern float32", acc_f), ("cnnkern int8", acc_q)]
    timings: dict[str, tuple[float, float]] = {}
    b128, b1 = x_test[:128], x_test[:1]
    timings["cnnkern float32"] = (
        median_ms(lambda: model.predict(b128, batch_size=128), args.repeats),
        median_ms(lambda: model.predict(b1, batch_size=1), args.repeats * 5),
    )
    timings["cnnkern int8"] = (
        median_ms(lambda: q.predict(b128, batch_size=128), args.repeats),
        median_ms(lambda: q.predict(b1, batch_size=1), args.repeats * 5),
    )
    try:
        import torch
    except ImportError:
        print("torch is not installed: no PyTorch column")
    else:
        torch.set_num_threads(args.threads)
        tq = torch_int8(model, x_train[: args.calibrate].transpose(0, 3, 1, 2).copy())
        xt = torch.from_numpy(x_test.transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            pred = np.concatenate([tq(xt[lo : lo + 256]).numpy().argmax(1) for lo in range(0, len(xt), 256)])
            rows.append(("torch int8 (x86)", float((pred == y_test).mean())))
            t128, t1 = xt[:128], xt[:1]
            timings["torch int8 (x86)"] = (
                median_ms(lambda: tq(t128), args.repeats),
                median_ms(lambda: tq(t1), args.repeats * 5),
            )
    print(f"{'':<20}{'test accuracy':>14}{'batch 128 ms':>14}{'batch 1 ms':>12}")
    for name, acc in rows:
        t128, t1 = timings[name]
        print(f"{name:<20}{acc * 100:>13.2f}%{t128:>14.2f}{t1:>12.3f}")


if __name__ == "__main__":
    main()
