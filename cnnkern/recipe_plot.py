"""Charts of training runs (matplotlib, optional: ``pip install "cnnkern[plot]"``): a recipe run's curves
per epoch and against wall time (:func:`plot_run`), several runs' time-to-accuracy curves on one chart
(:func:`plot_compare`), and ``cnnkern train``'s per-step curves (:func:`plot_steps`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .callbacks import Callback

if TYPE_CHECKING:
    from ._typing import Logs, PathLike
    from .recipes import Run


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'cnnkern[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: PathLike, dpi: int = 100) -> None:
    """``fig`` to ``path`` atomically, in the format its suffix names (PNG without one), then closed."""
    from ._io import atomic_save

    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    atomic_save(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
    _pyplot().close(fig)


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Running mean over the last ``window`` values (the per-step batch numbers are noisy)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _target(ax: Any, target: float | None) -> None:
    if target is not None:
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")


def plot_run(run: Run, path: PathLike) -> None:
    """Three panels: accuracy per epoch (training batches, validation), loss and accuracy against training
    wall time with one point per step (so even one epoch shows a curve)."""
    plt = _pyplot()
    fig, (ax_epoch, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(15, 4))
    n = len(run.steps)
    per_epoch = n / max(run.evals[-1][1], 1e-9) if run.evals else float(n)
    step_epoch = [(i + 1) / per_epoch for i in range(n)]
    t = [s[0] for s in run.steps]
    window = max(1, n // 50)
    acc = smooth([s[2] for s in run.steps], window)
    loss = smooth([s[1] for s in run.steps], window)
    et, ee, el, ea = (list(c) for c in zip(*run.evals)) if run.evals else ([], [], [], [])
    ax_epoch.plot(step_epoch, acc, label="training batches (running mean)")
    ax_epoch.plot(ee, ea, marker="o", label="validation")
    ax_epoch.set_xlabel("epoch")
    ax_epoch.set_title("accuracy per epoch")
    ax_loss.plot(t, loss, ".-", markersize=2, label="training batches (running mean)")
    ax_loss.plot(et, el, marker="o", label="validation")
    ax_loss.set_xlabel("training wall time (s)")
    ax_loss.set_title("loss against wall time")
    ax_acc.plot(t, acc, ".-", markersize=2, label="training batches (running mean)")
    ax_acc.plot(et, ea, marker="o", label="validation")
    _target(ax_acc, run.target)
    ax_acc.set_xlabel("training wall time (s)")
    ax_acc.set_title("accuracy against wall time")
    for ax in (ax_epoch, ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run.framework}, recipe {run.recipe}: test accuracy {run.test_accuracy:.4f}")
    fig.tight_layout()
    save(fig, path)


def plot_compare(runs: Sequence[Run], path: PathLike) -> None:
    """Validation accuracy against training wall time, every run on one chart."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        ax.plot([e[0] for e in r.evals], [e[3] for e in r.evals], marker="o", label=f"{r.framework}")
    _target(ax, runs[0].target if runs else None)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"time to accuracy, recipe {runs[0].recipe if runs else ''}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path)


def plot_steps(
    epochs: Sequence[int],
    history: dict[str, list[float]],
    steps: Sequence[tuple[float, float, float]],
    path: PathLike,
) -> None:
    """``cnnkern train --plot``: loss and accuracy per epoch (training, and validation when the history has
    it), and the running loss and accuracy against wall time, one point per step."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key in zip(axes[:2], ("loss", "accuracy")):
        ax.plot(epochs, history[key], marker="o", label="train")
        if "val_" + key in history:
            ax.plot(epochs, history["val_" + key], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
    ax = axes[2]
    t = [s[0] for s in steps]
    ax.plot(t, [s[1] for s in steps], ".-", markersize=2, label="loss (epoch's running mean)")
    ax.plot(t, [s[2] for s in steps], ".-", markersize=2, label="accuracy (epoch's running mean)")
    ax.set_xlabel("wall time (s)")
    ax.set_title("per step, against wall time")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


class StepRecorder(Callback):
    """Records, per training step, the wall time since training began and the epoch's running loss and
    accuracy (what ``cnnkern train --plot`` draws against wall time)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float, float]] = []
        self._start = time.perf_counter()

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        t = time.perf_counter() - self._start
        self.points.append((t, float(logs.get("loss", "nan")), float(logs.get("accuracy", "nan"))))
