"""conv2d forward and backward by direct loops over planes, for reductions of a few taps (conv.py's
DIRECT_MAX_TAPS: one-channel first layers, depthwise convs), where the GEMM's 6-row panels and 16-column
slivers are mostly packing and padding. w (K, Cg, R, S), y / dy (N, K, P, Q); filter k reads channels
g*Cg .. (g+1)*Cg, g = k // Kg.

Strides are taken out first, by phases: the padded x is split into sh*sw phase planes per channel, phase
(a, b) holding its rows a, a+sh, ... and columns b, b+sw, ... (xq (N, C*sh*sw, Hq*Wq), Hq = ceil(Hp/sh),
Wq = ceil(Wp/sw), zero past the end). Output (p, q) then reads tap (cg, r, s) at phase
((r*dh) % sh, (s*dw) % sw), position (p + (r*dh)//sh, q + (s*dw)//sw): a stride-1 read, so every pass over
a row or a plane is contiguous and vectorises (a pass reading every sw-th x does not: measured 4x slower;
computing every column and keeping every sw-th, as before, did sw x the work). At stride 1 the phases are
the padded planes themselves. Each output or gradient element takes its products in the same order as
before, so the bits do not change.

  forward  one task per (n, k) plane: a pass per tap (cg, r, s) over the "wide" run of (P-1)*Wq + Q
           positions (the columns past each row's end computed and never read), taps in the GEMM's order
           with fma from 0: the same bits as conv.py's GEMM path.
  dx       one task per (n, g): its Cg*sh*sw phase planes, zeroed, then for each filter k of the group, tap
           and output row p, in that order, a phase row += w * dy row (fma); read back without the border
           and out of phase by unphase.
  dw       one task per (k, cg): for every n and p, float64 lanes acc[tap, q] += dy * x (exact products,
           independent lanes, so the loop vectorises), summed over q in order at the end. The order depends
           on the shapes only, never on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

from . import alloc
from .gemm import fma


def phase_geometry(Hp: int, Wp: int, sh: int, sw: int) -> tuple[int, int]:
    """(Hq, Wq): the size of one phase plane of a padded (Hp, Wp) plane at stride (sh, sw)."""
    return -(-Hp // sh), -(-Wp // sw)


def tap_table(Cg: int, R: int, S: int, sh: int, sw: int, dh: int, dw: int, Wq: int) -> np.ndarray:
    """(Cg*R*S, 2) int64, in the GEMM's tap order (cg, r, s): the phase plane of the tap relative to the
    group's first (cg*sh*sw + phase) and its offset in that plane from an output's (p, q)."""
    cg = np.arange(Cg).reshape(Cg, 1, 1)
    r = np.arange(R).reshape(1, R, 1) * dh
    s = np.arange(S).reshape(1, 1, S) * dw
    plane = cg * sh * sw + (r % sh) * sw + s % sw
    offset = (r // sh) * Wq + s // sw
    return np.stack(np.broadcast_arrays(plane, offset), axis=-1).reshape(Cg * R * S, 2).astype(np.int64)


@njit(cache=True)
def _valid_columns(b, sw, pl, W, Wq):
    """(j0, j1): the phase columns j of column phase b whose x column j*sw + b - pl lies in 0 .. W-1."""
    j0 = max(0, (pl - b + sw - 1) // sw)
    j1 = min(Wq, (W - 1 + pl - b) // sw + 1)
    return j0, max(j0, j1)


@njit(parallel=True, cache=True)
def _phases_into(xf, N, C, H, W, pt, pl, sh, sw, Wq, xqf):
    """xqf (flat (N, C*sh*sw, Hq*Wq)) = the phases of xf (flat (N, C, H, W)) padded by pt rows on top and pl
    columns on the left: each channel's phase planes zeroed as one block, then x's rows copied in, column
    phase by column phase (a plain copy at stride 1). Unsigned flat indices and no division in the row loop:
    4 MB of x took 1.3 ms, a tenth of that now."""
    ss = sh * sw
    plane = xqf.size // (N * C * ss)
    cols = np.empty((sw, 2), np.int64)  # per column phase b: its valid phase columns j0 .. j1
    for b in range(sw):
        cols[b, 0], cols[b, 1] = _valid_columns(b, sw, pl, W, Wq)
    i_top, a_top = pt // sh, pt % sh
    usw = uint64(sw)
    for t in prange(N * C):
        base = t * ss * plane
        xqf[base : base + ss * plane] = 0
        xbase = t * H * W
        i, a = i_top, a_top  # (h + pt) // sh and % sh, counted
        for h in range(H):
            for b in range(sw):
                j0, n = cols[b, 0], cols[b, 1] - cols[b, 0]
                # unsigned indices: Numba checks signed ones for wraparound, which kept this loop scalar
                dst = uint64(base + (a * sw + b) * plane + i * Wq + j0)
                src = uint64(xbase + h * W + j0 * sw + b - pl)
                for j in range(uint64(n)):
                    xqf[dst + j] = xf[src + j * usw]
            a += 1
            if a == sh:
                a, i = 0, i + 1


def phases(x: np.ndarray, pt: int, pb: int, pl: int, pr: int, sh: int, sw: int) -> tuple[np.ndarray, int]:
    """(xq, Wq): x's phase planes (N, C*sh*sw, Hq*Wq) for padding (pt, pb, pl, pr) and stride (sh, sw); x
    itself, reshaped, when there is neither."""
    N, C, H, W = x.shape
    Hq, Wq = phase_geometry(H + pt + pb, W + pl + pr, sh, sw)
    if sh == sw == 1 and pt == pb == pl == pr == 0:
        return np.ascontiguousarray(x).reshape(N, C, H * W), W
    xq = alloc.empty((N, C * sh * sw, Hq * Wq), x.dtype)
    _phases_into(np.ascontiguousarray(x).reshape(-1), N, C, H, W, pt, pl, sh, sw, Wq, xq.reshape(-1))
    return xq, Wq


@njit(parallel=True, cache=True)
def unphase(dq, pt, pl, sh, sw, Wq, dx):
    """dx (N, C, H, W) = the phase planes dq (N, C*sh*sw, Hq*Wq) put back in place, without the border (flat
    indices, as in _phases_into)."""
    N, C, H, W = dx.shape
    ss = sh * sw
    Hq = dq.shape[2] // Wq
    dqf, dxf = dq.reshape(-1), dx.reshape(-1)
    usw = uint64(sw)
    for t in prange(N * C):
        for a in range(sh):
            for b in range(sw):
                pbase = (t * ss + a * sw + b) * Hq * Wq
                j0, j1 = _valid_columns(b, sw, pl, W, Wq)
                for i in range(Hq):
                    h = i * sh + a - pt
                    if h < 0 or h >= H:
                        continue
                    src = uint64(pbase + i * Wq + j0)
                    dst = uint64((t * H + h) * W + j0 * sw + b - pl)  # (unsigned: see _phases_into)
                    for j in range(uint64(j1 - j0)):
                        dxf[dst + j * usw] = dqf[src + j]


@njit(cache=True)
def _direct_plane(xq, wk, base, taps, Wq, zw):
    """zw[i] = conv of one image's phase planes xq with one filter wk (Cg, R, S) at i = p*Wq + q, for the
    "wide" run i < (P-1)*Wq + Q (it includes the columns past each row's end, never read): a pass per tap
    over one contiguous slice, which vectorises, in the GEMM's tap order from 0 with fma."""
    wflat = wk.ravel()
    L = zw.size
    zw[:] = 0
    for t in range(taps.shape[0]):
        wv = wflat[t]
        plane = xq[base + taps[t, 0]]
        o = taps[t, 1]
        xs = plane[o : o + L]
        for i in range(L):
            zw[i] = fma(wv, xs[i], zw[i])


@njit(parallel=True, cache=True)
def direct_forward(xq, w, b, has_bias, taps, ss, Wq, y):
    """y (N, K, P, Q) = conv of the phase planes xq (N, C*ss, Hq*Wq) with w (K, Cg, R, S) (+ b); one task
    per (n, k) plane, so the result does not depend on the thread count."""
    N, K, P, Q = y.shape
    Cg = w.shape[1]
    C = xq.shape[1] // ss
    Kg = K // (C // Cg)
    for t in prange(N * K):
        n, k = t // K, t % K
        bias = b[k] if has_bias else 0
        yk = y[n, k]
        zw = np.empty((P - 1) * Wq + Q, xq.dtype)
        _direct_plane(xq[n], w[k], (k // Kg) * Cg * ss, taps, Wq, zw)
        for p in range(P):
            src = zw[p * Wq : p * Wq + Q]
            row = yk[p]
            for q in range(Q):
                row[q] = src[q] + bias


@njit(cache=True)
def _input_grad_group(dyf, w, g, Cg, ss, taps, Wq, dq):
    """dq (C*ss, Hq*Wq): the phase planes of channels g*Cg .. (g+1)*Cg = the transposed conv of dyf
    (K, P, Q) with the group's filters, zeroed first."""
    K, P, Q = dyf.shape
    Kg = K // (dq.shape[0] // (Cg * ss))
    base = g * Cg * ss
    for i in range(Cg * ss):
        dq[base + i] = 0
    for k in range(g * Kg, (g + 1) * Kg):
        wflat = w[k].ravel()
        for t in range(taps.shape[0]):
            wv = wflat[t]
            dplane = dq[base + taps[t, 0]]
            for p in range(P):
                src = dyf[k, p]
                dst = dplane[taps[t, 1] + p * Wq : taps[t, 1] + p * Wq + Q]
                for q in range(Q):
                    dst[q] = fma(wv, src[q], dst[q])


@njit(cache=True)
def _weight_grad_filter(xq, dyf, k, base, taps, Wq, acc, dwk):
    """dwk (Cg', R, S) for one input channel: sum over n, p, q of dy[n, k, p, q] times the tap's x, in
    float64; taps are that channel's R*S rows of the tap table."""
    N, K, P, Q = dyf.shape
    RS = taps.shape[0]
    acc[:, :] = 0
    for n in range(N):
        xn = xq[n]
        for p in range(P):
            src = dyf[n, k, p]
            for t in range(RS):
                a = acc[t]
                o = taps[t, 1] + p * Wq
                xs = xn[base + taps[t, 0], o : o + Q]
                for q in range(Q):
                    a[q] += np.float64(src[q]) * np.float64(xs[q])
    flat = dwk.ravel()
    for t in range(RS):
        total = 0.0
        for q in range(Q):
            total += acc[t, q]
        flat[t] = total


@njit(parallel=True, cache=True)
def direct_backward(xq, dyf, w, C, ss, taps, Wq, need_dx, need_dw, dq, dwf):
    """dq (N, C*ss, Hq*Wq) (dx in phases: unphase it) and dwf (K, Cg, R, S), each when asked for (else they
    and xq, which only dw reads, may be empty)."""
    N, K, P, Q = dyf.shape
    Cg, R, S = w.shape[1], w.shape[2], w.shape[3]
    groups = C // Cg
    Kg = K // groups
    RS = R * S
    if need_dx:
        for t in prange(N * groups):
            n, g = t // groups, t % groups
            _input_grad_group(dyf[n], w, g, Cg, ss, taps, Wq, dq[n])
    if need_dw:
        for t in prange(K * Cg):
            k, cg = t // Cg, t % Cg
            acc = np.empty((RS, Q), np.float64)
            ctaps = taps[cg * RS : (cg + 1) * RS]
            _weight_grad_filter(xq, dyf, k, (k // Kg) * Cg * ss, ctaps, Wq, acc, dwf[k, cg])
