"""Reference dense: x (N,in), w (out,in), b (out,) -> y (N,out)."""

from __future__ import annotations

import numpy as np


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    if b is not None:
        y += b
    return y


def dense_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, *, need_dx: bool, need_db: bool
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    dx = dy @ w if need_dx else None
    dw = dy.T @ x
    db = dy.sum(axis=0) if need_db else None
    return dx, dw, db
