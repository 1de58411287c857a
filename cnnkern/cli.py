"""The ``cnnkern`` command: ``train``, ``evaluate``, ``predict``, ``info``, ``bench``, ``quantize``.

Exit status: 0 on success; 2 for a command line that cannot be honoured (argparse errors, a bad value, a
backend that is unknown OR unavailable here -- the message carries the backend's own reason --, or
``--plot`` without matplotlib), checked before any work starts; 1 when the work itself fails (data or
model files missing or corrupt).

Adding a subcommand: write ``add_<name>(subparsers)`` (in any module) that creates its parser with
``subparsers.add_parser`` and sets ``run=<function(args, parser) -> int>`` through ``set_defaults``; then
list it in :data:`COMMANDS`. What the commands share (:func:`add_backend_argument`, :func:`check_backend`, the
data loading) is :mod:`cnnkern.cli_common`; ``evaluate``, ``predict`` and ``info`` live in
:mod:`cnnkern.cli_inference`.
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
from typing import TYPE_CHECKING, Any, cast

from .bench import add_bench
from .cli_common import (
    EVAL_BATCH_SIZE,
    TRAIN_BATCH_SIZE,
    TRAIN_EPOCHS,
    TRAIN_LR,
    CommandError,
    _check_plot,
    _data_or_fail,
    _images,
    _positive,
    add_backend_argument,
    check_backend,
)
from .cli_inference import add_evaluate, add_info, add_predict
from .compress.cli import add_quantize
from .recipe_cli import add_recipe_arguments
from .zoo import classic_cnn

if TYPE_CHECKING:
    from ._typing import PathLike
    from .callbacks import BackupAndRestore, History
    from .distributed import MPIStrategy


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
