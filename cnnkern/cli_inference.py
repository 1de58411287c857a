"""``cnnkern evaluate``, ``predict`` and ``info`` (registered by :mod:`cnnkern.cli`)."""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, cast

import numpy as np

from . import backends
from .cli_common import (
    EVAL_BATCH_SIZE,
    LABEL_SETS,
    CommandError,
    _data_or_fail,
    _images,
    _positive,
    add_backend_argument,
    check_backend,
)

if TYPE_CHECKING:
    from .backends.base import Backend
    from .compress import QuantizedModel
    from .models import Model


# --- evaluate ----------------------------------------------------------------------------------------------
def add_evaluate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("evaluate", help="test loss and accuracy of a saved model on Fashion-MNIST")
    p.add_argument(
        "model", metavar="MODEL", help="a model saved by `cnnkern train --save` or Sequential.save"
    )
    add_backend_argument(p)
    p.add_argument("--data", default=None, metavar="DIR|bundled", help="as for `cnnkern train`")
    p.add_argument(
        "--batch-size", type=_positive(int), default=EVAL_BATCH_SIZE, help=f"default {EVAL_BATCH_SIZE}"
    )
    p.set_defaults(run=run_evaluate)


def _load_model_or_fail(path: str, backend: Backend, name: str | None) -> Model | QuantizedModel:
    """The model at ``path`` on ``backend``; an int8 file (cnnkern.compress) on the backend ``name`` the
    user asked for (None or 'auto': the fastest with int8 kernels)."""
    from .models import load_model

    if not os.path.isfile(path):
        raise CommandError(f"no model file {path}")
    try:
        from .compress import qfile

        if qfile.is_quantized(path):
            return load_model(path, backend=None if name in (None, "auto") else name)
        return load_model(path, backend=backend)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None


def run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .compress import QuantizedModel

    be = check_backend(args, parser)
    model = _load_model_or_fail(args.model, be, args.backend)
    _, (x_test, y_test), source = _data_or_fail(args.data)
    start = time.perf_counter()
    if isinstance(model, QuantizedModel):
        where = f"{model.backend_name}, int8"
    else:
        where = be.name
        if "accuracy" not in (model.metrics or []):  # a model saved without it still reports accuracy
            model.compile(
                optimizer=model.optimizer if model.compiled else "adam",
                loss=model.loss if model.compiled else "sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    loss, acc = cast("list[float]", model.evaluate(_images(x_test), y_test, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    print(f"data: {source}")
    print(
        f"test accuracy: {acc:.4f}  test loss: {loss:.4f}  ({len(x_test)} images, "
        f"{len(x_test) / seconds:,.0f} "
        f"images/s on {where})"
    )
    return 0


# --- predict -----------------------------------------------------------------------------------------------
def add_predict(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify images with a saved model",
        description="IMAGES: an .npy file of shape (N, 28, 28) or (28, 28) -- uint8 "
        "pixels (divided by 255) or floats already in [0, 1] -- or an IDX "
        "image file (plain or .gz).",
    )
    p.add_argument("model", metavar="MODEL", help="a saved model")
    p.add_argument("images", metavar="IMAGES", help=".npy or IDX file of 28x28 images")
    add_backend_argument(p)
    p.add_argument(
        "--labels",
        choices=tuple(LABEL_SETS) + ("none",),
        default="fashion-mnist",
        help="class names to print (default fashion-mnist)",
    )
    p.add_argument(
        "--limit", type=_positive(int), default=None, metavar="N", help="classify the first N only"
    )
    p.set_defaults(run=run_predict)


def _read_images(path: str) -> np.ndarray:
    from .datasets import IdxFormatError, read_idx

    if not os.path.isfile(path):
        raise CommandError(f"no image file {path}")
    try:
        x = np.load(path, allow_pickle=False) if path.endswith(".npy") else read_idx(path)
    except (ValueError, OSError, IdxFormatError) as exc:
        raise CommandError(f"cannot read images from {path}: {exc}") from None
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise CommandError(f"{path}: expected images of shape (N, 28, 28) or (28, 28), got {x.shape}")
    if x.dtype == np.uint8:
        return _images(x)
    if x.dtype.kind != "f":
        raise CommandError(f"{path}: expected uint8 or floating pixels, got {x.dtype.name}")
    return x.astype(np.float32).reshape(*x.shape, 1)


def run_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    be = check_backend(args, parser)
    model = _load_model_or_fail(args.model, be, args.backend)
    x = _read_images(args.images)
    if args.limit is not None:
        x = x[: args.limit]
    if model.input_shape != (28, 28, 1):
        raise CommandError(f"{args.model} takes inputs of shape {model.input_shape}, not 28x28 images")
    from .errors import NonFiniteInputError

    try:
        probs = model.predict(x, batch_size=EVAL_BATCH_SIZE)
    except NonFiniteInputError as exc:
        raise CommandError(
            f"{args.images}: image {exc.index} holds NaN or Inf values; refusing to classify it ({exc})"
        ) from None
    names = None
    if args.labels != "none":
        import importlib

        names = importlib.import_module(f".datasets.{LABEL_SETS[args.labels]}", __package__).CLASS_NAMES
    for i, p in enumerate(probs):
        c = int(p.argmax())
        name = f" {names[c]}" if names is not None and c < len(names) else ""
        print(f"{i}\t{c}{name}\t{p[c]:.4f}")
    return 0


# --- info --------------------------------------------------------------------------------------------------
def add_info(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("info", help="backends available here, their SIMD paths and threads")
    p.add_argument(
        "--numba",
        action="store_true",
        help="also compile every Numba kernel now and print the compile time of each",
    )
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .info import config_text

    print(config_text())
    if not args.numba:
        return 0
    reason = backends.probe("numba")
    if reason is not None:
        raise CommandError(f"numba backend unavailable: {reason}")
    from .backends import numba as numba_backend

    times = numba_backend.warmup()
    width = max([len("kernel")] + [len(k) for k in times])
    print(f"\nNumba compile times\n{'kernel':<{width}}  seconds")
    for kernel, seconds in times.items():
        print(f"{kernel:<{width}}  {seconds:7.2f}")
    print(f"{'total':<{width}}  {sum(times.values()):7.2f}")
    return 0
