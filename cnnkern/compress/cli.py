"""``cnnkern quantize M.npz -o M8.npz [--calibrate N]``: int8 post-training quantization from the command
line (:func:`cnnkern.compress.quantize`), calibrated on the first N Fashion-MNIST training images."""

from __future__ import annotations

import argparse
import os
import time


def add_quantize(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="int8 post-training quantization of a saved model",
        description="Fold batch norms, calibrate activation ranges on the first N training images and save "
        "the int8 model; `cnnkern evaluate`, `predict` and `bench --model` read it like any model.",
    )
    p.add_argument("model", metavar="MODEL", help="a float model saved by `cnnkern train --save`")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the int8 model's .npz file")
    p.add_argument(
        "--calibrate", type=int, default=1000, metavar="N", help="calibration images (default 1000)"
    )
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax", help="range estimate")
    p.add_argument("--percentile", type=float, default=99.99, help="with --method percentile (default 99.99)")
    p.add_argument("--data", default=None, metavar="DIR|bundled", help="as for `cnnkern train`")
    p.set_defaults(run=run_quantize)


def run_quantize(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .. import cli_common as cli
    from ..models import Sequential, load_model
    from . import quantize

    if args.calibrate < 1:
        parser.error(f"--calibrate must be >= 1, got {args.calibrate}")
    if not 50 < args.percentile <= 100:
        parser.error(f"--percentile must be in (50, 100], got {args.percentile}")
    if not os.path.isfile(args.model):
        raise cli.CommandError(f"no model file {args.model}")
    try:
        model = load_model(args.model)
    except ValueError as exc:
        raise cli.CommandError(str(exc)) from None
    if not isinstance(model, Sequential):
        raise cli.CommandError(f"{args.model} is already an int8 model")
    (x_train, _), _, source = cli._data_or_fail(args.data)
    images = cli._images(x_train[: args.calibrate])
    start = time.perf_counter()
    try:
        q = quantize(model, images, method=args.method, percentile=args.percentile)
    except ValueError as exc:
        raise cli.CommandError(f"{args.model}: {exc}") from None
    q.save(args.output)
    print(f"data: {source}")
    print(
        f"quantized {args.model} -> {args.output} ({len(images)} calibration images, {args.method}, "
        f"{time.perf_counter() - start:.1f}s; int8 kernels: {q.backend_name})"
    )
    return 0
