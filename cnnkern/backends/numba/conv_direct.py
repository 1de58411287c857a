"""conv2d forward and backward by direct loops over planes, for reductions of a few taps (conv.py's
DIRECT_MAX_TAPS: one-channel first layers, depthwise convs), where the GEMM's 6-row panels and 16-column
slivers are mostly packing and padding. Same layouts as conv.py: xf (N, C, Hp*Wp) is x with its zero border
made real, w (K, Cg, R, S), y / dy (N, K, P, Q); filter k reads channels g*Cg .. (g+1)*Cg, g = k // Kg.

  forward  one task per (n, k) plane: a pass per tap (cg, r, s) over a contiguous slice of xp, which
           vectorises (stride 1: the "wide" run of (P-1)*Wp + Q positions, the columns past each row's end
           computed and never read; strided: every column of each needed row, then every sw-th), the taps
           in the GEMM's order with fma from 0: the same bits as conv.py's GEMM path.
  dx       one task per (n, g): its Cg padded planes of dxp, zeroed, then for each filter k of the group and
           tap in order, dxp row (p*sh + r*dh) += w * dy row (fma), read back without the border by conv.py.
  dw       one task per (k, cg): for every n and p, float64 lanes acc[tap, q] += dy * x (exact products,
           independent lanes, so the loop vectorises), summed over q in order at the end. The order depends
           on the shapes only, never on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .gemm import fma


@njit(cache=True)
def _direct_plane(xf, wk, g, Cg, Hp, Wp, dh, dw, zw):
    """zw[i] = conv of one image's padded planes xf (C, Hp*Wp), channels g*Cg .. (g+1)*Cg, with one filter
    wk (Cg, R, S) at i = p*Wp + q, stride 1, for the "wide" run i < (P-1)*Wp + Q (it includes the columns
    past each row's end, never read): a pass per tap over one contiguous slice of x, which vectorises, in
    the GEMM's tap order (cg, r, s) from 0 with fma: the same bits as the GEMM path."""
    R, S = wk.shape[1], wk.shape[2]
    L = zw.size
    zw[:] = 0
    for cg in range(Cg):
        plane = xf[g * Cg + cg]
        for r in range(R):
            for s in range(S):
                wv = wk[cg, r, s]
                o = r * dh * Wp + s * dw
                xs = plane[o : o + L]
                for i in range(L):
                    zw[i] = fma(wv, xs[i], zw[i])


@njit(cache=True)
def _direct_rows(xf, wk, g, Cg, Wp, sh, sw, dh, dw, zrow, yk):
    """yk (P, Q) = the strided conv of one image's padded planes xf (C, Hp*Wp) with one filter wk, row by
    row: each output row is computed at every column, (Q-1)*sw + 1 of them, into zrow by contiguous passes
    (they vectorise; a pass reading every sw-th x does not, measured 4x slower at stride 2), and every
    sw-th taken. The same fma chains as _direct_plane."""
    R, S = wk.shape[1], wk.shape[2]
    P, Q = yk.shape
    L = zrow.size
    for p in range(P):
        zrow[:] = 0
        for cg in range(Cg):
            plane = xf[g * Cg + cg]
            for r in range(R):
                for s in range(S):
                    wv = wk[cg, r, s]
                    o = (p * sh + r * dh) * Wp + s * dw
                    xs = plane[o : o + L]
                    for i in range(L):
                        zrow[i] = fma(wv, xs[i], zrow[i])
        row = yk[p]
        for q in range(Q):
            row[q] = zrow[q * sw]


@njit(parallel=True, cache=True)
def direct_forward(xf, w, b, has_bias, Wp, sh, sw, dh, dw, y):
    """y (N, K, P, Q) = conv of xf (N, C, Hp*Wp) (x padded) with w (K, Cg, R, S) (+ b), by _direct_plane at
    stride 1, else _direct_rows; one task per (n, k) plane, so the result does not depend on the thread
    count."""
    N, K, P, Q = y.shape
    C, HpWp = xf.shape[1], xf.shape[2]
    Cg = w.shape[1]
    Kg = K // (C // Cg)
    for t in prange(N * K):
        n, k = t // K, t % K
        bias = b[k] if has_bias else 0
        yk = y[n, k]
        if sh == 1 and sw == 1:
            zw = np.empty((P - 1) * Wp + Q, xf.dtype)
            _direct_plane(xf[n], w[k], k // Kg, Cg, HpWp // Wp, Wp, dh, dw, zw)
            for p in range(P):
                src = zw[p * Wp : p * Wp + Q]
                row = yk[p]
                for q in range(Q):
                    row[q] = src[q] + bias
        else:
            zrow = np.empty((Q - 1) * sw + 1, xf.dtype)
            _direct_rows(xf[n], w[k], k // Kg, Cg, Wp, sh, sw, dh, dw, zrow, yk)
            for p in range(P):
                row = yk[p]
                for q in range(Q):
                    row[q] = row[q] + bias


@njit(cache=True)
def _input_grad_group(dyf, w, g, Cg, Wp, sh, sw, dh, dw, dxf):
    """dxf (C, Hp*Wp): its planes g*Cg .. (g+1)*Cg = the transposed conv of dyf (K, P, Q) with the
    group's filters, zeroed first."""
    K, P, Q = dyf.shape
    Kg = K // (dxf.shape[0] // Cg)
    R, S = w.shape[2], w.shape[3]
    for cg in range(Cg):
        dplane = dxf[g * Cg + cg]
        dplane[:] = 0
        for k in range(g * Kg, (g + 1) * Kg):
            for r in range(R):
                for s in range(S):
                    wv = w[k, cg, r, s]
                    for p in range(P):
                        src = dyf[k, p]
                        o = (p * sh + r * dh) * Wp + s * dw
                        if sw == 1:
                            dst = dplane[o : o + Q]
                            for q in range(Q):
                                dst[q] = fma(wv, src[q], dst[q])
                        else:
                            for q in range(Q):
                                dplane[o + q * sw] = fma(wv, src[q], dplane[o + q * sw])


@njit(cache=True)
def _weight_grad_filter(xf, dyf, k, cg, c, Wp, sh, sw, dh, dw, acc, dwk):
    """dwk (R, S) = sum over n, p, q of dy[n, k, p, q] * xp[n, c, p*sh + r*dh, q*sw + s*dw], in float64."""
    N, K, P, Q = dyf.shape
    R, S = dwk.shape
    acc[:, :] = 0
    for n in range(N):
        plane = xf[n, c]
        for p in range(P):
            src = dyf[n, k, p]
            for r in range(R):
                for s in range(S):
                    a = acc[r * S + s]
                    o = (p * sh + r * dh) * Wp + s * dw
                    if sw == 1:
                        xs = plane[o : o + Q]
                        for q in range(Q):
                            a[q] += np.float64(src[q]) * np.float64(xs[q])
                    else:
                        for q in range(Q):
                            a[q] += np.float64(src[q]) * np.float64(plane[o + q * sw])
    for t in range(R * S):
        total = 0.0
        for q in range(Q):
            total += acc[t, q]
        dwk[t // S, t % S] = total


@njit(parallel=True, cache=True)
def direct_backward(xf, dyf, w, C, Wp, sh, sw, dh, dw, need_dx, need_dw, dxf, dwf):
    """dxf (N, C, Hp*Wp) (padded) and dwf (K, Cg, R, S), each when asked for (else they and xf, which
    only dw reads, may be empty)."""
    N, K, P, Q = dyf.shape
    Cg, R, S = w.shape[1], w.shape[2], w.shape[3]
    groups = C // Cg
    Kg = K // groups
    if need_dx:
        for t in prange(N * groups):
            n, g = t // groups, t % groups
            _input_grad_group(dyf[n], w, g, Cg, Wp, sh, sw, dh, dw, dxf[n])
    if need_dw:
        for t in prange(K * Cg):
            k, cg = t // Cg, t % Cg
            acc = np.empty((R * S, Q), np.float64)
            _weight_grad_filter(xf, dyf, k, cg, (k // Kg) * Cg + cg, Wp, sh, sw, dh, dw, acc, dwf[k, cg])
