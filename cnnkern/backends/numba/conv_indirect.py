"""The stride-1 conv2d forward as an indirect GEMM: the GEMM's B rows are read in place from the padded
image instead of being gathered into packed slivers (conv.py's forward), which costs as much as the
multiply when the reduction Cg*R*S is a few hundred taps (measured 2.2x the C++ backend's time on the
mobile zoo model's grouped 3x3 conv, most of it packing).

At stride 1, output (p, q) and tap (cg, r, s) read xp[cg, p + r*dh, q + s*dw], i.e. flat
i + off[t] with i = p*Wp + q the output's "wide" position (q runs to Wp, past Q) and
off[t] = cg*Hp*Wp + r*dh*Wp + s*dw. A tile of NR consecutive wide positions is then, for every tap, NR
consecutive floats of xp: gemm.py's indirect micro-kernel multiplies the packed weight panel by those rows
where they lie. Wide positions with q >= Q are computed and dropped (2 of every 18 on a padded 16x16 map).
The last tile of an image reads up to NR - 1 floats past its planes: the padded copy xp has NR spare
(zeroed) floats at its end.

Each output takes its products in tap order (cg, r, s) from 0 with one fma each, as the packed forward's
tile does: the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import alloc
from .gemm import MR, NR, _fma_tile_indirect

TASKS = 64  # at least this many tasks when there are fewer (image, group) pairs: split their tiles


def padded_with_slack(x: np.ndarray, pt: int, pb: int, pl: int, pr: int) -> tuple[np.ndarray, int, int]:
    """(xf, Hp, Wp): x with its zero border, flat, followed by NR zeros (the last tile's overshoot)."""
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    size = N * C * Hp * Wp
    xf = alloc.empty((size + NR,), x.dtype)
    _pad_flat(np.ascontiguousarray(x), pt, pl, Hp, Wp, xf)
    return xf, Hp, Wp


@njit(parallel=True, cache=True)
def _pad_flat(x, pt, pl, Hp, Wp, xf):
    N, C, H, W = x.shape
    HpWp = Hp * Wp
    xf[N * C * HpWp :] = 0
    for t in prange(N * C):
        plane = xf[t * HpWp : (t + 1) * HpWp]
        if Hp != H or Wp != W:
            plane[:] = 0
        src = x[t // C, t % C]
        for h in range(H):
            row = plane[(h + pt) * Wp + pl : (h + pt) * Wp + pl + W]
            for col in range(W):
                row[col] = src[h, col]


@njit(cache=True)
def _task(xf, wp, offs, b, has_bias, n, g, t0, t1, C, HpWp, Wp, P, Q, K, y):
    """Tiles t0 .. t1 of image n, group g: every weight panel times the tile's rows, stored to y (flat)."""
    groups, mblk = wp.shape[0], wp.shape[1]
    Kg, Cg = K // groups, C // groups
    base = (n * C + g * Cg) * HpWp
    ct = np.empty((MR, NR), xf.dtype)
    where = np.empty(NR, np.int64)  # flat p*Q + q in a y plane of each wide position, -1: dropped
    PQ = P * Q
    for tile in range(t0, t1):
        i0 = tile * NR
        p, q = i0 // Wp, i0 % Wp
        for jj in range(NR):
            where[jj] = p * Q + q if q < Q and p < P else -1
            q += 1
            if q == Wp:
                q = 0
                p += 1
        run = where[0] >= 0 and where[NR - 1] == where[0] + NR - 1  # all NR stored side by side
        for mb in range(mblk):
            ct[:, :] = 0
            _fma_tile_indirect(wp[g, mb], xf, offs, base + i0, ct)
            for i in range(min(MR, Kg - mb * MR)):
                k = g * Kg + mb * MR + i
                bias = b[k] if has_bias else 0
                yk = y[(n * K + k) * PQ : (n * K + k + 1) * PQ]
                if run:
                    dst = yk[where[0] : where[0] + NR]
                    for jj in range(NR):
                        dst[jj] = ct[i, jj] + bias
                else:
                    for jj in range(NR):
                        if where[jj] >= 0:
                            yk[where[jj]] = ct[i, jj] + bias


@njit(parallel=True, cache=True)
def indirect_forward(xf, wp, offs, b, has_bias, C, Hp, Wp, y):
    """y (N, K, P, Q) = the stride-1 conv of xf (padded_with_slack) with the packed weight wp
    (g, ceil(Kg/MR), CgRS, MR) (+ b); offs (CgRS,) are the taps' offsets from a group's first plane.
    Tasks over (image, group, run of tiles), fixed by the shapes: results do not depend on the threads."""
    N, K, P, Q = y.shape
    groups = wp.shape[0]
    HpWp = Hp * Wp
    ntile = ((P - 1) * Wp + Q + NR - 1) // NR
    # every row a tile reads lies inside xf (its NR spare floats take the last tile's overshoot)
    if offs.min() < 0 or (N * C - C // groups) * HpWp + ntile * NR + offs.max() > xf.size:
        raise IndexError("indirect_forward: the padded input is too small for these taps")
    pairs = N * groups
    runs = min(ntile, max(1, (TASKS + pairs - 1) // pairs))  # runs of tiles per (image, group)
    for t in prange(pairs * runs):
        pair, run = t // runs, t % runs
        n, g = pair // groups, pair % groups
        t0, t1 = run * ntile // runs, (run + 1) * ntile // runs
        _task(xf, wp, offs, b, has_bias, n, g, t0, t1, C, HpWp, Wp, P, Q, K, y.reshape(-1))
