"""Reference conv2d: x (N,C,H,W), w (K,C/g,R,S), b (K,) -> y (N,K,P,Q).

y[n,k,p,q] = b[k] + Σ_{c∈group(k), r, s} w[k,c,r,s] · xpad[n, c, p·sh + r·dh, q·sw + s·dw]

Written for clarity: one tensordot per kernel tap (r, s) and group, over strided views of the zero-padded
input, in the input's dtype (float64 when used as the specification).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import shapes


def _taps(
    xpad: np.ndarray, r: int, s: int, stride: Sequence[int], dilation: Sequence[int], p: int, q: int
) -> np.ndarray:
    """The view xpad[:, :, r·dh + sh·i, s·dw + sw·j] for i < p, j < q."""
    h0, w0 = r * dilation[0], s * dilation[1]
    return xpad[
        :, :, h0 : h0 + stride[0] * (p - 1) + 1 : stride[0], w0 : w0 + stride[1] * (q - 1) + 1 : stride[1]
    ]


def _pad(x: np.ndarray, padding: Sequence[int]) -> np.ndarray:
    t, b, l, r = padding
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    n, c, h, wd = x.shape
    k, cg, r_, s_ = w.shape
    p = shapes.conv_out(h, r_, stride[0], padding[0], padding[1], dilation[0])
    q = shapes.conv_out(wd, s_, stride[1], padding[2], padding[3], dilation[1])
    xpad = _pad(x, padding)
    kg = k // groups
    y = np.zeros((n, k, p, q), dtype=x.dtype)
    for g in range(groups):
        xg = xpad[:, g * cg : (g + 1) * cg]
        wg = w[g * kg : (g + 1) * kg]
        for r in range(r_):
            for s in range(s_):
                tap = _taps(xg, r, s, stride, dilation, p, q)  # (N, Cg, P, Q)
                y[:, g * kg : (g + 1) * kg] += np.einsum("ncpq,kc->nkpq", tap, wg[:, :, r, s])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """dw[k,c,r,s] = Σ_{n,p,q} dy[n,k,p,q]·xpad[n,c,tap]; dxpad[n,c,tap] += Σ_k w[k,c,r,s]·dy[n,k,p,q]."""
    n, c, h, wd = x.shape
    k, cg, r_, s_ = w.shape
    p, q = dy.shape[2], dy.shape[3]
    kg = k // groups
    xpad = _pad(x, padding)
    dxpad = np.zeros_like(xpad) if need_dx else None
    dw = np.zeros_like(w) if need_dw else None
    for g in range(groups):
        dyg = dy[:, g * kg : (g + 1) * kg]
        for r in range(r_):
            for s in range(s_):
                if dw is not None:
                    tap = _taps(xpad[:, g * cg : (g + 1) * cg], r, s, stride, dilation, p, q)
                    dw[g * kg : (g + 1) * kg, :, r, s] = np.einsum("nkpq,ncpq->kc", dyg, tap)
                if dxpad is not None:
                    view = _taps(dxpad[:, g * cg : (g + 1) * cg], r, s, stride, dilation, p, q)
                    view += np.einsum("nkpq,kc->ncpq", dyg, w[g * kg : (g + 1) * kg, :, r, s])
    dx = None
    if dxpad is not None:
        t, l = padding[0], padding[2]
        dx = np.ascontiguousarray(dxpad[:, :, t : t + h, l : l + wd])
    db = dy.sum(axis=(0, 2, 3)) if need_db else None
    return dx, dw, db
