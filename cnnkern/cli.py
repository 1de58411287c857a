"""The ``cnnkern`` command: ``train``, ``evaluate``, ``predict``, ``info``, ``bench``, ``quantize``.

Exit status: 0 on success; 2 for a command line that cannot be honoured (argparse errors, a bad value, a
backend that is unknown OR unavailable here -- the message carries the backend's own reason --, or
``--plot`` without matplotlib), checked before any work starts; 1 when the work itself fails (data or
model files missing or corrupt).

Adding a subcommand: write ``add_<name>(subparsers)`` (in any module) that creates its parser with
``subparsers.add_parser`` and sets ``run=<function(args, parser) -> int>`` through ``set_defaults``; then
list it in :data:`COMMANDS`. :func:`add_backend_argument` and :func:`check_backend` are there to share.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from . import backends
from .bench import add_bench
from .compress.cli import add_quantize
from .recipe_cli import add_recipe_arguments
from .zoo import classic_cnn

if TYPE_CHECKING:
    from ._typing import PathLike
    from .backends.base import Backend
    from .callbacks import BackupAndRestore, History
    from .compress import QuantizedModel
    from .datasets.loader import Data, Split
    from .distributed import MPIStrategy
    from .models import Model

_Number = TypeVar("_Number", int, float)

# Defaults of `cnnkern train`: on the bundled subset (9000 train images) with the cpp backend (AVX2, 2
# threads) they give 86.3% test accuracy (seed 0; 85.8-86.6% over seeds 0-2) for 42 s of CPU time, i.e. well
# under two minutes on an idle 2-core machine. Four epochs land at 83-85%, too close to the 85% mark.
TRAIN_EPOCHS = 5
TRAIN_BATCH_SIZE = 32
TRAIN_LR = 1e-3
EVAL_BATCH_SIZE = 256
LABEL_SETS = {"fashion-mnist": "fashion_mnist", "mnist": "mnist"}


class CommandError(Exception):
    """A failure while running a command (exit status 1); the message is printed as is."""


# --- shared pieces ----------------------------------------------------------------------------------------
def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=backends.NAMES + ("auto",),
        default=None,
        help="backend to run on (default: CNNKERN_BACKEND, else auto: cuda, cpp, numba, "
        "reference, the first that can run here)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="worker threads of the cpp and numba backends (default: all cores)",
    )


def check_backend(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Backend:
    """Apply --threads and make sure the chosen backend can run here (exit 2 with its reason if not)."""
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        # read by the cpp thread pool and by Numba when the backend first loads
        os.environ["CNNKERN_NUM_THREADS"] = str(args.threads)
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    name = args.backend
    try:
        be = backends.resolve(name)
    except backends.BackendUnavailableError as exc:
        parser.error(str(exc))
    except ValueError as exc:  # a bad CNNKERN_BACKEND
        parser.error(str(exc))
    return be


def _positive(kind: type[_Number]) -> Callable[[str], _Number]:
    def parse(text: str) -> _Number:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _load_fashion(data: str | None) -> tuple[Data, str]:
    """(data arrays, source line) for --data: None (installed data, else the bundled subset), 'bundled',
    or a directory."""
    from .datasets import fashion_mnist

    if data == "bundled":
        return fashion_mnist.load(subset=True)
    return fashion_mnist.load(data)


def _images(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], as the classic script prepares them."""
    return (x.astype(np.float32) / np.float32(255.0)).reshape(x.shape[0], x.shape[1], x.shape[2], 1)


# --- train -------------------------------------------------------------------------------------------------
def add_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the classic Fashion-MNIST CNN and report test accuracy",
        description="Train Conv2D(32) > MaxPool > Conv2D(64) > MaxPool > Conv2D(64) > "
        "Flatten > Dense(64) > Dense(10, softmax) with Adam on Fashion-MNIST.",
    )
    add_backend_argument(p)
    p.add_argument(
        "--epochs", type=_positive(int), default=None, help=f"default {TRAIN_EPOCHS} (or the recipe's)"
    )
    p.add_argument(
        "--batch-size",
        type=_positive(int),
        default=None,
        help=f"default {TRAIN_BATCH_SIZE} (or the recipe's)",
    )
    p.add_argument(
        "--lr",
        type=_positive(float),
        default=None,
        help=f"Adam (peak) learning rate, default {TRAIN_LR} (or the recipe's)",
    )
    add_recipe_arguments(p)
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR|bundled",
        help="directory of the Fashion-MNIST IDX files, or 'bundled' for the subset shipped with "
        "cnnkern (default: $CNNKERN_DATA or /usr/share/datasets/fashion-mnist, else the subset)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling (default 0)")
    p.add_argument("--save", metavar="PATH", help="save the trained model (one .npz file)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write a training checkpoint (weights, optimizer, progress, generator; docs/checkpoints.md) "
        "to PATH, atomically, every --checkpoint-every; it is kept when training ends",
    )
    p.add_argument(
        "--checkpoint-every",
        type=_save_freq,
        default="epoch",
        metavar="N|epoch",
        help="checkpoint every N steps, or at the end of each epoch (default)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint PATH (same data, seed, lr, batch size) where it "
        "stopped; the final weights are those of an uninterrupted run",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="plot loss and accuracy per epoch (and validation, with --recipe) and against wall time, one "
        "point per step (needs matplotlib)",
    )
    p.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 quiet, 1 progress bar (default), 2 one line per epoch",
    )
    p.set_defaults(run=run_train)


def _save_freq(text: str) -> str | int:
    if text == "epoch":
        return text
    return _positive(int)(text)


def _backup(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BackupAndRestore | None:
    """The BackupAndRestore callback that --checkpoint / --resume ask for (None without --checkpoint)."""
    from .callbacks import BackupAndRestore

    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint PATH (the checkpoint to continue from)")
    if not args.checkpoint:
        return None
    path = os.path.abspath(args.checkpoint)
    if os.path.isdir(path):
        parser.error(f"--checkpoint {args.checkpoint}: is a directory; give a file path")
    exists = os.path.exists(path)
    if args.resume and not exists:
        parser.error(f"--resume: no checkpoint at {args.checkpoint}")
    if exists and not args.resume:
        parser.error(
            f"--checkpoint {args.checkpoint} exists: pass --resume to continue from it, or remove it first"
        )
    return BackupAndRestore(
        os.path.dirname(path),
        save_freq=args.checkpoint_every,
        delete_checkpoint=False,
        filename=os.path.basename(path),
    )


def run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Under ``mpirun`` with several ranks: data-parallel (cnnkern.distributed); only rank 0 prints, saves."""
    from .distributed import DistributedError, from_environment

    try:
        dist = from_environment()
        quiet = dist is not None and not dist.is_chief
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            return _train(args, parser, dist)
    except (ImportError, DistributedError) as exc:
        raise CommandError(str(exc)) from None


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser, dist: MPIStrategy | None) -> int:
    if args.recipe == "list":
        from .recipes import listing

        print(listing())
        return 0
    _check_plot(args, parser)
    if args.recipe is not None:
        if dist is not None or args.checkpoint or args.resume or args.save:
            parser.error(
                "--recipe runs in one process; it does not combine with --checkpoint, --resume, --save"
            )
        from .recipe_cli import train_recipe

        return train_recipe(args, parser, check_backend(args, parser))
    if args.target is not None or args.steps is not None:
        parser.error("--target and --steps apply to --recipe runs")
    backup = _backup(args, parser)
    be = check_backend(args, parser)
    args.epochs = args.epochs or TRAIN_EPOCHS
    args.batch_size = args.batch_size or TRAIN_BATCH_SIZE
    args.lr = args.lr or TRAIN_LR
    (x_train, y_train), (x_test, y_test), source = _data_or_fail(args.data)
    print(f"data: {source}: {len(x_train)} train, {len(x_test)} test images")
    print(
        f"backend: {be.name}  epochs {args.epochs}  batch size {args.batch_size}  lr {args.lr}  "
        f"seed {args.seed}"
    )
    start = time.perf_counter()
    model = classic_cnn(seed=args.seed, backend=be, lr=args.lr)
    from .errors import CheckpointError, NonFiniteLossError

    steps = None
    if args.plot:
        from .recipe_plot import StepRecorder

        steps = StepRecorder()
    try:
        history = model.fit(
            _images(x_train),
            y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            verbose=args.verbose,
            callbacks=[cb for cb in (backup, steps) if cb is not None] or None,
            distributed=dist,
        )
    except (CheckpointError, NonFiniteLossError) as exc:
        raise CommandError(str(exc)) from None
    if backup is not None and backup.restored_from is not None:
        e, s = backup.restored_from
        print(f"resumed from {args.checkpoint} at epoch {e + 1}, step {s} of it done")
    train_seconds = sum(history.epoch_seconds)
    # [loss, accuracy]: classic_cnn is compiled with the accuracy metric
    evaluate = model.evaluate if dist is None else partial(dist.evaluate, model)
    loss, acc = cast("list[float]", evaluate(_images(x_test), y_test, batch_size=EVAL_BATCH_SIZE))
    wall = time.perf_counter() - start
    n_seen = len(x_train) * len(history.epoch)
    print(f"test accuracy: {acc:.4f}  test loss: {loss:.4f}  ({len(x_test)} images)")
    rate = f"{n_seen / train_seconds:,.0f} images/s" if train_seconds > 0 else "nothing left to train"
    print(f"training: {n_seen} images in {train_seconds:.1f} s = {rate}; wall time {wall:.1f} s")
    if args.save and (dist is None or dist.is_chief):
        model.save(args.save)
        print(f"saved model to {args.save}")
    if args.plot and (dist is None or dist.is_chief):
        from .recipe_plot import plot_steps

        assert steps is not None
        plot_steps([e + 1 for e in history.epoch], history.history, steps.points, args.plot)
        print(f"saved plot to {args.plot}")
    return 0


def _check_plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, which is not installed: pip install 'cnnkern[plot]'")


def _data_or_fail(data: str | None) -> tuple[Split, Split, str]:
    """Like :func:`_load_fashion`, with a missing or corrupt file turned into a :class:`CommandError`."""
    from .datasets import IdxFormatError

    try:
        ((x_train, y_train), (x_test, y_test)), source = _load_fashion(data)
    except (FileNotFoundError, IdxFormatError) as exc:
        raise CommandError(f"cannot load Fashion-MNIST: {exc}") from None
    return (x_train, y_train), (x_test, y_test), source


def _plot(history: History, path: PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e + 1 for e in history.epoch]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, history.history[key], marker="o", label="train")
        if "val_" + key in history.history:
            ax.plot(epochs, history.history["val_" + key], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, path, dpi=100)
    plt.close(fig)


def _save_figure(fig: Any, path: PathLike, dpi: int) -> None:
    """``fig`` to ``path`` atomically, in the format its suffix names (PNG without one)."""
    from ._io import atomic_save

    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    atomic_save(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


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


# --- entry point -------------------------------------------------------------------------------------------
COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_train,
    add_evaluate,
    add_predict,
    add_info,
    add_bench,
    add_quantize,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnkern",
        description="Hand-written CNN kernels: train, evaluate and inspect.",
        epilog="Exit status: 0 success; 2 bad command line or a backend unavailable here; 1 failure while "
        "running (missing or corrupt data or model file).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"cnnkern {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    parser.set_defaults(command_parsers=sub.choices)  # main hands each command its own parser for errors
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args, args.command_parsers[args.command])
    except CommandError as exc:
        print(f"cnnkern {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
