"""int8 post-training quantization of the classic CNN: accuracy and inference time, float32 vs int8, beside
PyTorch's x86 eager-mode static quantization of the same weights with the same calibration images.

A script, not a test: ``python benchmarks/int8_ptq.py MODEL.npz [--threads 2] [--calibrate 1000]`` on a
model trained with ``cnnkern train --save MODEL.npz``. Times are medians of ``--repeats`` runs (after one
warm-up) of ``predict`` over one batch of 128 and of 1 test image(s)."""

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


def torch_int8(weights: list[np.ndarray], calib: np.ndarray) -> Any:
    """PyTorch's x86 static int8 model of the classic CNN (conv+relu and linear+relu fused), calibrated on
    ``calib`` (N, 1, 28, 28)."""
    import torch
    from torch.ao import quantization as tq

    from cnnkern import torch_ref

    float_model = torch_ref.classic_cnn(weights).eval()
    model = torch.nn.Sequential(tq.QuantStub(), *float_model, tq.DeQuantStub()).eval()
    tq.fuse_modules(model, [["1", "2"], ["4", "5"], ["7", "8"], ["10", "11"]], inplace=True)
    torch.backends.quantized.engine = "x86"
    model.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        for lo in range(0, len(calib), 128):
            model(torch.from_numpy(calib[lo : lo + 128]))
    return tq.convert(model, inplace=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibrate", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    os.environ["CNNKERN_NUM_THREADS"] = str(args.threads)
    from cnnkern import backends
    from cnnkern.compress import quantize
    from cnnkern.datasets import fashion_mnist
    from cnnkern.models import Sequential, load_model

    backends.get("cpp").set_num_threads(args.threads)
    (x_train, _), (x_test, y_test) = fashion_mnist.load_data()
    x_train = (x_train[..., None] / np.float32(255)).astype(np.float32)
    x_test = (x_test[..., None] / np.float32(255)).astype(np.float32)
    model = load_model(args.model, backend="cpp")
    assert isinstance(model, Sequential)
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
        weights = [w for w in model.get_weights()]
        tq = torch_int8(weights, x_train[: args.calibrate].transpose(0, 3, 1, 2).copy())
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
