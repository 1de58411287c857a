"""int8 post-training quantization of the classic CNN: accuracy and inference time, float32 vs int8, beside
PyTorch's x86 eager-mode static quantization of the same weights with the same calibration images.

A script, not a test: ``python benchmarks/int8_ptq.py MODEL.npz [--threads 2] [--calibrate 1000]`` on a
model trained with ``cnnkern train --save MODEL.npz``, or ``--vgg-epochs N`` to train the VGG-style model
with batch norm (:func:`cnnkern.zoo.vgg_bn`, folded before quantization) on the first ``--vgg-train`` images
and save it to MODEL.npz. Times are medians of ``--repeats`` runs (after one warm-up) of ``predict`` over
one batch of 128 and of 1 test image(s). The PyTorch int8 model is :func:`cnnkern.bench.int8.torch_int8`'s,
as in ``cnnkern bench --int8`` (which times untrained models side by side, interleaved)."""

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
    parser.add_argument(
        "--onnx",
        metavar="DIR",
        help="also export the float and int8 models to DIR and compare onnxruntime's outputs on the test set",
    )
    args = parser.parse_args()
    os.environ["CNNKERN_NUM_THREADS"] = str(args.threads)
    from cnnkern import backends
    from cnnkern.bench.int8 import torch_int8
    from cnnkern.compress import quantize
    from cnnkern.datasets import fashion_mnist
    from cnnkern.models import Sequential, load_model
    from cnnkern.zoo import vgg_bn

    backends.get("cpp").set_num_threads(args.threads)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    x_train = (x_train[..., None] / np.float32(255)).astype(np.float32)
    x_test = (x_test[..., None] / np.float32(255)).astype(np.float32)
    if args.vgg_epochs:
        model = vgg_bn(seed=0, backend="cpp")
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

    gemm = getattr(_cpp, "q8_gemm_path", None)
    print(f"cpp SIMD path {_cpp.simd()}, int8 GEMM {gemm() if gemm else '?'}, threads {args.threads}")
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
    if args.onnx:
        compare_onnx(model, q, x_test, y_test, args.onnx, args.threads)


def compare_onnx(model: Any, q: Any, x: np.ndarray, y: np.ndarray, folder: str, threads: int) -> None:
    """onnxruntime on the exported float and int8 (QLinearConv and exact) models against cnnkern's outputs:
    the largest difference, the images whose top class changes, and the test accuracy."""
    import copy

    import onnxruntime as ort

    from cnnkern.compress import QuantizedModel

    os.makedirs(folder, exist_ok=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    config = copy.deepcopy(q.config)
    config["stages"][-1]["activation"] = "linear"  # compare the logits
    logits = QuantizedModel(config, q.arrays)
    for label, m, kw in (
        ("float32", model, {}),
        ("int8 QLinearConv", logits, {}),
        ("int8 exact", logits, {"exact": True}),
    ):
        path = os.path.join(folder, label.replace(" ", "_") + ".onnx")
        m.export_onnx(path, **kw)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        got = np.concatenate(
            [session.run(None, {"input": x[lo : lo + 500]})[0] for lo in range(0, len(x), 500)]
        )
        want = m.predict(x, batch_size=500)
        diff = np.abs(got - want).max(axis=1)
        changed = float(np.mean(got.argmax(1) != want.argmax(1)))
        step = (want.max() - want.min()) / 255
        print(
            f"onnx {label:<17} max |diff| {diff.max():.3g} ({np.mean(diff > 0):.2%} of images differ; logit "
            f"8-bit step {step:.3g}), class changed {changed:.3%}, accuracy {np.mean(got.argmax(1) == y):.2%}"
        )


if __name__ == "__main__":
    main()
