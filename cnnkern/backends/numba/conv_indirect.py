"""The stride-1 conv2d forward as an indirect GEMM: the GEMM's B rows are read in place from the padded
image instead of being gathered into packed slivers (conv.py's forward), which costs as much as the
multiply when the reduction Cg*R*S is a few hundred taps (measured 2.2x the C++ backend's time on the
mobile zoo model's grouped 3x3 conv, most of it packing).

At stride 1, output (p, q) and tap (cg, r, s) read xp[cg, p + r*dh, q + s*dw], i.e. flat
i + off[t] with i = p*Wp + q the output's "wide" position (q runs to Wp, past Q) and
off[t] = cg*Hp*Wp + r*dh*Wp + s*dw. A tile of NR consecutive wide positions is then, for every tap, NR
consecutive floats of xp: gemm.py's indirect micro-kernel multiplies the packed weight panel by those rows
where they lie. Wide positions with q >= Q are computed and dropped (2 of every 18 on a padded 16x16 map).
An image's last tile is moved back to end at its last wide position (it recomputes a few outputs of the
tile before, with the same bits), so no tile reads past the image's planes and an unpadded x is used as it
is; only a map of fewer than NR wide positions needs NR spare floats after the input (inputs()).

Each output takes its products in tap order (cg, r, s) from 0 with one fma each, as the packed forward's
tile does: the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import alloc
from .gemm import MR, NR, _fma_tile_indirect

RUN_TILES = 8  # tiles whose rows are copied together (_task's copy_rows)
TASKS = 64  # at least this many tasks when there are fewer (image, group) pairs: split their tiles


def inputs(x: np.ndarray, pt: int, pb: int, pl: int, pr: int, P: int, Q: int) -> tuple[np.ndarray, int, int]:
    """(xf, Hp, Wp): x flat with its zero border made real, x itself when it has none and no tile can
    read past it, else a padded copy with NR spare zeros at the end."""
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    if pt == pb == pl == pr == 0 and (P - 1) * Wp + Q >= NR:
        return np.ascontiguousarray(x).reshape(-1), Hp, Wp
    xf = alloc.empty((N * C * Hp * Wp + NR,), x.dtype)
    pad_flat(np.ascontiguousarray(x), pt, pl, Hp, Wp, xf)
    return xf, Hp, Wp


@njit(parallel=True, cache=True)
def pad_flat(x, pt, pl, Hp, Wp, xf):
    """xf (flat, at least N*C*Hp*Wp) = x placed at (pt, pl) in (Hp, Wp) planes of zeros, anything after the
    planes zeroed too; one task per plane (conv.py's padded copies use it as well)."""
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
def _outputs_of_tile(i0, Wp, P, Q, where):
    """where[jj] = p*Q + q, the flat output in a y plane of wide position i0 + jj (-1: q >= Q or p >= P,
    dropped); True if all NR are outputs side by side."""
    p, q = i0 // Wp, i0 % Wp
    for jj in range(NR):
        where[jj] = p * Q + q if q < Q and p < P else -1
        q += 1
        if q == Wp:
            q = 0
            p += 1
    return where[0] >= 0 and where[NR - 1] == where[0] + NR - 1


@njit(cache=True)
def _store_tile(ct, mr, k0, n, K, PQ, where, run, b, has_bias, y):
    """y (flat (N, K, P, Q)) at image n, channels k0 .. k0+mr, outputs where: ct's rows (+ b)."""
    for i in range(mr):
        k = k0 + i
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


@njit(cache=True)
def _tile(wp, g, src, src_offs, src_base, i0, Wp, P, Q, K, n, b, has_bias, where, ct, y):
    """The outputs at wide positions i0 .. i0+NR of image n, group g, every weight panel in turn; the tile's
    rows are src[src_base + src_offs[t] : + NR] (x in place, or the copied rows of _task)."""
    run = _outputs_of_tile(i0, Wp, P, Q, where)
    Kg = K // wp.shape[0]
    for mb in range(wp.shape[1]):
        ct[:, :] = 0
        _fma_tile_indirect(wp[g, mb], src, src_offs, src_base, ct)
        _store_tile(ct, min(MR, Kg - mb * MR), g * Kg + mb * MR, n, K, P * Q, where, run, b, has_bias, y)


@njit(cache=True)
def _task(xf, wp, offs, b, has_bias, n, g, t0, t1, C, HpWp, Wp, P, Q, K, copy_rows, y):
    """Tiles t0 .. t1 of image n, group g, stored to y (flat). copy_rows: each run of RUN_TILES tiles' rows
    copied first, each tap's row once, in order: for 1x1 convs, whose rows lie a whole plane apart (4 KiB on
    a 32x32 map, so every tile's rows miss L1 in place); measured 1.3-1.5x faster there, slower on 3x3
    convs, whose rows are neighbours."""
    base = (n * C + g * (C // wp.shape[0])) * HpWp
    ct = np.empty((MR, NR), xf.dtype)
    where = np.empty(NR, np.int64)  # flat p*Q + q in a y plane of each wide position, -1: dropped
    L = (P - 1) * Wp + Q  # wide positions of the map
    kc = offs.shape[0]
    span = RUN_TILES * NR
    rows = np.empty(kc * span if copy_rows else 0, xf.dtype)
    row_offs = np.arange(kc) * span  # the rows' offsets in `rows`
    for r0 in range(t0, t1, RUN_TILES):
        r1 = min(t1, r0 + RUN_TILES)
        first = min(r0 * NR, L - NR) if L >= NR else 0
        if copy_rows:
            n_pos = (min((r1 - 1) * NR, L - NR) if L >= NR else 0) + NR - first
            for t in range(kc):
                src = xf[base + first + offs[t] : base + first + offs[t] + n_pos]
                dst = rows[t * span : t * span + n_pos]
                for jj in range(n_pos):
                    dst[jj] = src[jj]
        for tile in range(r0, r1):
            i0 = min(tile * NR, L - NR) if L >= NR else 0  # the last tile ends at L - 1 (module docstring)
            if copy_rows:
                _tile(wp, g, rows, row_offs, i0 - first, i0, Wp, P, Q, K, n, b, has_bias, where, ct, y)
            else:
                _tile(wp, g, xf, offs, base + i0, i0, Wp, P, Q, K, n, b, has_bias, where, ct, y)


@njit(parallel=True, cache=True)
def indirect_forward(xf, wp, offs, b, has_bias, C, Hp, Wp, pack_rows, y):
    """y (N, K, P, Q) = the stride-1 conv of xf (inputs()) with the packed weight wp
    (g, ceil(Kg/MR), CgRS, MR) (+ b); offs (CgRS,) are the taps' offsets from a group's first plane.
    Tasks over (image, group, run of tiles), fixed by the shapes: results do not depend on the threads."""
    N, K, P, Q = y.shape
    groups = wp.shape[0]
    HpWp = Hp * Wp
    L = (P - 1) * Wp + Q
    ntile = (L + NR - 1) // NR
    # every row a tile reads lies inside xf (the last one ends at L - 1; a map shorter than NR overshoots
    # into xf's NR spare floats)
    if offs.min() < 0 or (N * C - C // groups) * HpWp + max(L, NR) + offs.max() > xf.size:
        raise IndexError("indirect_forward: the padded input is too small for these taps")
    pairs = N * groups
    runs = min(ntile, max(1, (TASKS + pairs - 1) // pairs))  # runs of tiles per (image, group)
    for t in prange(pairs * runs):
        pair, run = t // runs, t % runs
        n, g = pair // groups, pair % groups
        t0, t1 = run * ntile // runs, (run + 1) * ntile // runs
        _task(xf, wp, offs, b, has_bias, n, g, t0, t1, C, HpWp, Wp, P, Q, K, pack_rows, y.reshape(-1))
