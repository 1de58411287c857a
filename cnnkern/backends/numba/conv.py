"""conv2d forward/backward as packed GEMMs (gemm.py) whose B slivers are gathered straight from the image.

x (N,C,H,W), w (K,C/g,R,S), b (K,) | None -> y (N,K,P,Q), cross-correlation with zero padding
(top, bottom, left, right), stride (sh, sw), dilation (dh, dw), groups g; Kg = K/g, Cg = C/g.

Padding is made real first: xp (N, C, Hp, Wp) is x with its zero border (x itself when there is none), so
every tap reads memory. Output position j = (n, p, q) of J = N*P*Q and weight tap t = (cg, r, s) of CgRS
then read xp at flat offset pos[j] + tap[g, t], with pos[j] = n*C*Hp*Wp + p*sh*Wp + q*sw and
tap[g, t] = (g*Cg + cg)*Hp*Wp + r*dh*Wp + s*dw: the im2col matrix col[g] (CgRS, J) is never stored, each
task gathers only the NR-column slivers it multiplies (a few KiB, in L1/L2). Outputs and the large
buffers come from alloc.py's block cache.

  forward  y (Kg, J) per group = w[g] (Kg, CgRS) @ col[g] (CgRS, J) (+ b): tasks over (g, run of slivers
           of J); the weight panels are packed once per call, each sliver is gathered once and multiplied
           by every panel; the tile is stored to y (n, k, pq). At stride 1 the slivers are not gathered:
           conv_indirect.py's GEMM reads them where they lie (the same bits); this packed form remains for
           strided convs.
  direct   a conv whose reduction is at most DIRECT_MAX_TAPS taps (one-channel first layers, depthwise)
           skips the GEMM: conv_direct.py's plane loops (the forward with the same bits as the GEMM; dx and
           dw too for grouped convs with fewer than MR filters per group, where the GEMM's panels are
           mostly padding).
  dx       dcol[g] (CgRS, J) = w[g]^T (CgRS, Kg) @ dy[g] (Kg, J), never stored either: tasks over (g, run
           of whole samples); a task packs its dy slivers, and each tile is added at once into the padded
           gradient dxp at the same offsets pos[j] + tap[g, t] the forward reads (col2im tile by tile, in
           a fixed order); a task owns its samples' planes, so no two tasks write the same element. dx is
           dxp without its border. A stride-1 conv whose padding fits its kernel's reach on both sides of
           each axis ('same', 1x1) takes dx as conv_indirect.py's forward of dy instead
           (_input_grad_as_forward: faster there, slower on 'valid' convs' small maps).
  dw       dw[g]^T (CgRS, Kg) = col[g] (CgRS, J) @ dy[g]^T (J, Kg), the sum over J cut into even chunks
           of at most JC positions (shorter, down to MIN_CHUNK, to make DW_TASKS of them), dealt in runs
           to at most DW_TASKS tasks: a task packs a chunk's dy^T into slivers, reads col's taps from x in
           place (gemm.fma_tile_rows) and adds the product to its own partial, chunk after chunk; the
           partials are summed in task order.
           The runs depend on J only, so the result does not depend on the number of threads.
  db       db[k] = sum over n, p, q of dy[n, k, p, q] in float64, one task per channel: a sum per run of
           positions of dw (dw_runs), the runs' sums added in run order (conv_pool.py's fused backward
           sums its dz the same way, to give the same bits)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

from ...shapes import conv_out
from . import alloc
from .conv_direct import direct_backward, direct_forward, phase_geometry, phases, tap_table, unphase
from .conv_indirect import indirect_forward, inputs, pad_flat
from .gemm import MR, NR, _fma_tile_rows, fma_tile

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls

JC = 256  # positions per dw chunk: the reduction length of one fma_tile call
MIN_CHUNK = 32  # dw: chunks get as short as this to give DW_TASKS tasks work
DW_TASKS = 8  # dw: the chunks are dealt to at most this many tasks, each summing its own partial dw
SLIVERS_PER_TASK = 8  # forward: at most this many slivers gathered and multiplied per task
# forward: a reduction of at most this many taps (Cg*R*S: one-channel first layers, depthwise,
# 5x5 on 1 channel) takes the direct plane loops; the GEMM's 6-row panels and 16-column slivers are then
# mostly packing and padding (measured 2x to 7x slower than the C++ backend on the zoo's such layers)
DIRECT_MAX_TAPS = 32
# backward: direct for grouped convs (depthwise) with fewer filters per group than the GEMM's panel rows
# (more: the GEMM measured faster); never for groups 1, so that conv_pool.py's fused dw keeps the bits of
# the composition
DIRECT_BACKWARD_MAX_KG = MR


# Each parallel loop only hands out tasks; the task bodies are plain @njit functions, which compile to
# much faster code than the same loops written inside a prange body (measured 7x on a branchy loop nest).


@njit(cache=True)
def _positions(j0, J, C, Hp, Wp, sh, sw, P, Q, K, xpos, ypos):
    """For the output columns j = j0 + jj, jj < len(xpos): xpos[jj] = flat offset in xp of column j's
    top-left tap, ypos[jj] = flat offset of its (n, 0, p, q) in y; columns past J point at 0 (they are
    gathered but never stored). (n, p, q) is stepped, not divided out, per column."""
    PQ = P * Q
    n, pq = j0 // PQ, j0 % PQ
    p, q = pq // Q, pq % Q
    for jj in range(xpos.size):
        if j0 + jj < J:
            xpos[jj] = n * C * Hp * Wp + p * sh * Wp + q * sw
            ypos[jj] = n * K * PQ + p * Q + q
        else:
            xpos[jj] = 0
            ypos[jj] = 0
        q += 1
        if q == Q:
            q = 0
            p += 1
            if p == P:
                p = 0
                n += 1


@njit(cache=True)
def _forward_task(xf, wp, tap, b, has_bias, g, s0, s1, C, Hp, Wp, sh, sw, P, Q, K, yf):
    """Slivers s0 .. s1 of group g: gather them, multiply by every weight panel, store to y."""
    CgRS = wp.shape[2]
    mblk = wp.shape[1]
    Kg = K // wp.shape[0]
    PQ = P * Q
    J = yf.size // K
    ns = s1 - s0
    bp = np.empty((ns, CgRS, NR), xf.dtype)
    xpos = np.empty(NR, np.int64)
    ypos = np.empty((ns, NR), np.int64)
    for s in range(ns):
        _positions((s0 + s) * NR, J, C, Hp, Wp, sh, sw, P, Q, K, xpos, ypos[s])
        for t in range(CgRS):
            o = tap[g, t]
            for jj in range(NR):
                bp[s, t, jj] = xf[xpos[jj] + o]
    ct = np.empty((MR, NR), xf.dtype)
    for mb in range(mblk):  # y is written row by row, a run of ns*NR per channel
        for s in range(ns):
            ct[:, :] = 0
            fma_tile(wp[g, mb], bp[s], ct)
            nr = min(NR, J - (s0 + s) * NR)
            run = ypos[s, nr - 1] - ypos[s, 0] == nr - 1  # the sliver lies in one sample: one run in y
            for i in range(min(MR, Kg - mb * MR)):
                k = g * Kg + mb * MR + i
                bias = b[k] if has_bias else 0
                if run:
                    y0 = ypos[s, 0] + k * PQ
                    for jj in range(nr):
                        yf[y0 + jj] = ct[i, jj] + bias
                else:
                    for jj in range(nr):
                        yf[ypos[s, jj] + k * PQ] = ct[i, jj] + bias


@njit(parallel=True, cache=True)
def _forward(xf, wp, tap, b, has_bias, C, Hp, Wp, sh, sw, P, Q, K, yf):
    """yf (N*K*P*Q) = conv of xf (flat xp) with the packed weight wp (g, ceil(Kg/MR), CgRS, MR)."""
    groups = wp.shape[0]
    nsl = (yf.size // K + NR - 1) // NR
    spt = max(1, min(SLIVERS_PER_TASK, nsl // 16))
    ntask = (nsl + spt - 1) // spt
    for t in prange(groups * ntask):
        g, s0 = t // ntask, (t % ntask) * spt
        _forward_task(xf, wp, tap, b, has_bias, g, s0, min(nsl, s0 + spt), C, Hp, Wp, sh, sw, P, Q, K, yf)


@njit(cache=True)
def _input_grad_task(dyf, wtp, tap, g, n0, n1, C, Hp, Wp, sh, sw, P, Q, K, dxf):
    """Samples n0 .. n1 of group g: dxp[n] += col2im(w[g]^T @ dy[g]), tile by tile, into dxf (flat dxp)."""
    CgRS = tap.shape[1]
    Kg = K // wtp.shape[0]
    PQ = P * Q
    HpWp = Hp * Wp
    Cg = C // wtp.shape[0]
    for n in range(n0, n1):
        dxf[n * C * HpWp + g * Cg * HpWp : n * C * HpWp + (g + 1) * Cg * HpWp] = 0
    j0 = n0 * PQ
    J = n1 * PQ  # columns j0 .. J of this task
    ns = (J - j0 + NR - 1) // NR
    bp = np.empty((ns, Kg, NR), dyf.dtype)
    xpos = np.empty((ns, NR), np.int64)
    ypos = np.empty(NR, np.int64)
    for s in range(ns):
        _positions(j0 + s * NR, J, C, Hp, Wp, sh, sw, P, Q, K, xpos[s], ypos)
        for k in range(Kg):
            for jj in range(NR):
                bp[s, k, jj] = dyf[ypos[jj] + (g * Kg + k) * PQ] if j0 + s * NR + jj < J else 0
    ct = np.empty((MR, NR), dyf.dtype)
    for mb in range(wtp.shape[1]):
        for s in range(ns):
            ct[:, :] = 0
            fma_tile(wtp[g, mb], bp[s], ct)
            nr = min(NR, J - j0 - s * NR)
            for i in range(min(MR, CgRS - mb * MR)):
                o = tap[g, mb * MR + i]
                for jj in range(nr):
                    dxf[xpos[s, jj] + o] += ct[i, jj]


@njit(parallel=True, cache=True)
def _input_grad(dyf, wtp, tap, C, Hp, Wp, sh, sw, P, Q, K, dxf):
    """dxf (flat dxp (N, C, Hp, Wp)) = col2im(w^T @ dy) with the panels wtp (g, ceil(CgRS/MR), Kg, MR) of
    w[g]^T; tasks over (g, run of whole samples), so no two tasks write the same element."""
    groups = wtp.shape[0]
    N = dxf.size // (C * Hp * Wp)
    PQ = P * Q
    spt = max(1, min(N // 8, (SLIVERS_PER_TASK * NR) // PQ))  # samples per task
    ntask = (N + spt - 1) // spt
    for t in prange(groups * ntask):
        g, n0 = t // ntask, (t % ntask) * spt
        _input_grad_task(dyf, wtp, tap, g, n0, min(N, n0 + spt), C, Hp, Wp, sh, sw, P, Q, K, dxf)


@njit(cache=True)
def _weight_chunk(xf, dyf, tap, g, c0, c1, C, Hp, Wp, sh, sw, P, Q, K, bp, xpos, ypos, rows, ct, part):
    """part (ceil(CgRS/MR)*MR taps, ceil(Kg/NR)*NR filters) += col[g] @ dy[g]^T over positions c0 .. c1:
    tiles of MR taps x NR filters whose tap values are read from x in place (fma_tile_rows: MR row bases,
    the positions as offsets), dy packed transposed into filter slivers. Gathering col instead (every tap
    of every position, CgRS values a position against Kg of dy) took most of the time of a 3x3 conv's dw.
    Each (tap, filter) sum is the same chain of fmas, position by position, as col @ dy^T's: same bits."""
    groups, CgRS = tap.shape
    Kg = K // groups
    PQ = P * Q
    kc = c1 - c0
    _positions(c0, c1, C, Hp, Wp, sh, sw, P, Q, K, xpos[:kc], ypos[:kc])
    # dy packed filter by filter with the positions innermost: consecutive positions are (mostly)
    # consecutive in dy, where a position-outer loop read one value per filter PQ floats apart
    for t in range(bp.shape[0] * NR):
        nb, lane = t // NR, t % NR
        if t < Kg:
            dyk = g * Kg * PQ + t * PQ
            for jj in range(kc):
                bp[nb, jj, lane] = dyf[ypos[jj] + dyk]
        else:
            for jj in range(kc):
                bp[nb, jj, lane] = 0
    offs = xpos[:kc]
    for mb in range(part.shape[0] // MR):
        for i in range(MR):  # taps past CgRS read the last one; their rows of part are never summed
            rows[i] = tap[g, min(mb * MR + i, CgRS - 1)]
        for nb in range(bp.shape[0]):
            tile = part[mb * MR : (mb + 1) * MR, nb * NR : (nb + 1) * NR]
            ct[:, :] = tile
            _fma_tile_rows(xf, rows, offs, bp[nb, :kc], ct)
            tile[:, :] = ct


@njit(parallel=True, cache=True)
def _weight_partials(xf, dyf, tap, nchunk, C, Hp, Wp, sh, sw, P, Q, K, part):
    """part[g, task] = the sum of dw[g]^T (taps, filters) over the task's chunks, in chunk order: the J
    positions are cut into nchunk even chunks (at most JC each), dealt in runs to part.shape[1] tasks;
    buffers per task."""
    groups, ntask = part.shape[0], part.shape[1]
    J = dyf.size // K
    nblk = part.shape[3] // NR
    for t in prange(groups * ntask):
        g, task = t // ntask, t % ntask
        bp = np.empty((nblk, JC, NR), xf.dtype)
        xpos = np.empty(JC, np.int64)
        ypos = np.empty(JC, np.int64)
        rows = np.empty(MR, np.int64)
        ct = np.empty((MR, NR), xf.dtype)
        part[g, task] = 0
        for chunk in range(task * nchunk // ntask, (task + 1) * nchunk // ntask):
            c0, c1 = chunk * J // nchunk, (chunk + 1) * J // nchunk
            _weight_chunk(
                xf, dyf, tap, g, c0, c1, C, Hp, Wp, sh, sw, P, Q, K, bp, xpos, ypos, rows, ct, part[g, task]
            )


@njit(parallel=True, cache=True)
def _sum_partials(part, dw3):
    """dw3[g, k, t] = sum over tasks, in task order, of part[g, task, t, k]; one task per (g, k)."""
    groups, Kg, CgRS = dw3.shape
    for gk in prange(groups * Kg):
        g, k = gk // Kg, gk % Kg
        row = dw3[g, k]
        for t in range(CgRS):
            row[t] = part[g, 0, t, k]
        for task in range(1, part.shape[1]):
            for t in range(CgRS):
                row[t] += part[g, task, t, k]


@njit(cache=True)
def _channel_runs(dy3, k, bounds, part):
    """part[run, k] = sum of dy3[n, k, pq] over the positions j = n*PQ + pq in bounds[run] .. bounds[run+1],
    in float64: per image, eight running sums over the run's positions in it mod 8 (independent lanes, so
    the loop vectorises), the last (size % 8) in s, added in a fixed order at the end of the run."""
    PQ = dy3.shape[2]
    lanes = np.empty(8, np.float64)
    for run in range(part.shape[0]):
        j0, j1 = bounds[run], bounds[run + 1]
        lanes[:] = 0
        s = 0.0
        for n in range(j0 // PQ, (j1 - 1) // PQ + 1):
            row = dy3[n, k, max(j0 - n * PQ, 0) : min(j1 - n * PQ, PQ)]  # the image's positions in the run
            m = row.size - row.size % 8
            for i in range(0, m, 8):
                for l in range(8):
                    lanes[l] += row[i + l]
            for i in range(m, row.size):
                s += row[i]
        for l in range(8):
            s += lanes[l]
        part[run, k] = s


@njit(cache=True)
def sum_runs(part, db):
    """db[k] = sum over runs, in run order, of part[run, k] (float64)."""
    for k in range(db.size):
        s = part[0, k]
        for run in range(1, part.shape[0]):
            s += part[run, k]
        db[k] = s


@njit(parallel=True, cache=True)
def _bias_grad(dy3, bounds, part, db):
    """db[k] = sum over n, pq of dy3[n, k, pq] in float64: part[run, k] over the dw's runs of positions
    (bounds), added in run order (conv_pool.py's fused db sums the same way); one task per channel."""
    for k in prange(dy3.shape[1]):
        _channel_runs(dy3, k, bounds, part)
    sum_runs(part, db)


def dw_split(J: int) -> tuple[int, int]:
    """(nchunk, ntask): the J positions of the dw sum cut into nchunk even chunks, dealt in runs to ntask
    tasks (_weight_partials)."""
    nchunk = max((J + JC - 1) // JC, min(DW_TASKS, (J + MIN_CHUNK - 1) // MIN_CHUNK))
    return nchunk, min(DW_TASKS, nchunk)


def dw_runs(J: int) -> np.ndarray:
    """bounds (ntask + 1,) int64: the dw task t sums the positions bounds[t] .. bounds[t+1] (its run of
    chunks); db is summed over the same runs, and so is conv_pool.py's fused backward, to give the same
    bits."""
    nchunk, ntask = dw_split(J)
    return np.array([(t * nchunk // ntask) * J // nchunk for t in range(ntask + 1)], np.int64)


def _geometry(
    x: np.ndarray, w: np.ndarray, stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int, int, int, int, int]:
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw = int(stride[0]), int(stride[1])
    pt, pb, pl, pr = (int(p) for p in padding)
    dh, dw = int(dilation[0]), int(dilation[1])
    P = conv_out(H, R, sh, pt, pb, dh)
    Q = conv_out(W, S, sw, pl, pr, dw)
    return N, C, K, Cg, R, S, sh, sw, pt, pb, pl, pr, dh, dw, P, Q


def _padded(x: np.ndarray, pt: int, pb: int, pl: int, pr: int) -> np.ndarray:
    """x with its zero border made real (x itself, contiguous, when there is none)."""
    if pt == pb == pl == pr == 0:
        return x
    N, C, H, W = x.shape
    xp = alloc.empty((N, C, H + pt + pb, W + pl + pr), x.dtype)
    pad_flat(np.ascontiguousarray(x), pt, pl, H + pt + pb, W + pl + pr, xp.reshape(-1))
    return xp


def _taps(C: int, Hp: int, Wp: int, groups: int, Cg: int, R: int, S: int, dh: int, dw: int) -> np.ndarray:
    """tap (g, Cg*R*S) int64: flat offset in xp of tap (cg, r, s) of group g from an output's top-left."""
    c = np.arange(groups * Cg, dtype=np.int64).reshape(groups, Cg, 1, 1)
    r = np.arange(R, dtype=np.int64).reshape(1, 1, R, 1)
    s = np.arange(S, dtype=np.int64).reshape(1, 1, 1, S)
    return (c * Hp * Wp + r * dh * Wp + s * dw).reshape(groups, Cg * R * S)


def _panels(w3: np.ndarray) -> np.ndarray:
    """w3 (g, Kg, CgRS) -> wp (g, ceil(Kg/MR), CgRS, MR), rows past Kg zero."""
    groups, Kg, CgRS = w3.shape
    mblk = (Kg + MR - 1) // MR
    wpad = np.zeros((groups, mblk * MR, CgRS), w3.dtype)
    wpad[:, :Kg] = w3
    return np.ascontiguousarray(wpad.reshape(groups, mblk, MR, CgRS).transpose(0, 1, 3, 2))


def _conv(
    xp: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    groups: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    P: int,
    Q: int,
) -> np.ndarray:
    """y (N, K, P, Q) = unpadded conv of xp with w (+ b)."""
    N, C, Hp, Wp = xp.shape
    K, Cg, R, S = w.shape
    y = alloc.empty((N, K, P, Q), xp.dtype)
    bias = b if b is not None else np.empty(0, xp.dtype)
    wp = _panels(w.reshape(groups, K // groups, Cg * R * S))
    tap = _taps(C, Hp, Wp, groups, Cg, R, S, dh, dw)
    _forward(xp.reshape(-1), wp, tap, bias, b is not None, C, Hp, Wp, sh, sw, P, Q, K, y.reshape(-1))
    return y


def conv2d_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    N, C, K, Cg, R, S, sh, sw, pt, pb, pl, pr, dh, dw, P, Q = _geometry(x, w, stride, padding, dilation)
    groups = int(groups)
    if Cg * R * S <= DIRECT_MAX_TAPS:
        xq, Wq = phases(x, pt, pb, pl, pr, sh, sw)
        y = alloc.empty((N, K, P, Q), x.dtype)
        bias = b if b is not None else np.empty(0, x.dtype)
        direct_forward(xq, w, bias, b is not None, tap_table(Cg, R, S, sh, sw, dh, dw, Wq), sh * sw, Wq, y)
        return y
    if sh == sw == 1:  # the B rows read in place (conv_indirect.py), the same bits as _conv
        return _in_place_forward(x, w, b, groups, (pt, pb, pl, pr), dh, dw, P, Q)
    return _conv(_padded(x, pt, pb, pl, pr), w, b, groups, sh, sw, dh, dw, P, Q)


def _in_place_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    groups: int,
    padding: tuple[int, int, int, int],
    dh: int,
    dw: int,
    P: int,
    Q: int,
) -> np.ndarray:
    """y (N, K, P, Q) = the stride-1 conv of x with w (+ b) on conv_indirect.py's in-place GEMM."""
    N, C = x.shape[:2]
    K, Cg, R, S = w.shape
    xf, Hp, Wp = inputs(x, *padding, P, Q)
    y = alloc.empty((N, K, P, Q), x.dtype)
    bias = b if b is not None else np.empty(0, x.dtype)
    wp = _panels(w.reshape(groups, K // groups, Cg * R * S))
    offs = _taps(C, Hp, Wp, groups, Cg, R, S, dh, dw)[0]
    indirect_forward(xf, wp, offs, bias, b is not None, C, Hp, Wp, R * S == 1, y)
    return y


def _input_grad_as_forward(
    dy: np.ndarray,
    w: np.ndarray,
    groups: int,
    pt: int,
    pb: int,
    pl: int,
    pr: int,
    dh: int,
    dw: int,
    H: int,
    W: int,
) -> np.ndarray:
    """dx of a stride-1 conv as the stride-1 forward (conv_indirect.py) of dy, padded by the kernel's reach
    less the forward's padding, with the flipped kernel of each group transposed: dx[c, h, w] = sum over
    (k, r, s) of dy[k, h + pt - r*dh, w + pl - s*dw] * w[k, c, r, s]. The caller checks that no padding
    exceeds the kernel's reach (the dy padding would be negative)."""
    K = dy.shape[1]
    _, Cg, R, S = w.shape
    Kg = K // groups
    # wt[g*Cg + cg, kg, r, s] = w[g*Kg + kg, cg, R-1-r, S-1-s]
    wt = w.reshape(groups, Kg, Cg, R, S)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    wt = np.ascontiguousarray(wt).reshape(groups * Cg, Kg, R, S)
    reach_h, reach_w = (R - 1) * dh, (S - 1) * dw
    dy_padding = (reach_h - pt, reach_h - pb, reach_w - pl, reach_w - pr)
    return _in_place_forward(dy, wt, None, groups, dy_padding, dh, dw, H, W)


def conv2d_backward(
    dy: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    N, C, K, Cg, R, S, sh, sw, pt, pb, pl, pr, dh, dw, P, Q = _geometry(x, w, stride, padding, dilation)
    groups = int(groups)
    Kg = K // groups
    CgRS = Cg * R * S
    H, W = x.shape[2], x.shape[3]
    dx = wgrad = db = None  # (dw is the dilation)
    if need_db:
        db = np.empty(K, dy.dtype)
        bounds = dw_runs(N * P * Q)
        _bias_grad(dy.reshape(N, K, P * Q), bounds, np.empty((bounds.size - 1, K)), db)
    if (need_dx or need_dw) and groups > 1 and CgRS <= DIRECT_MAX_TAPS and Kg < DIRECT_BACKWARD_MAX_KG:
        Hq, Wq = phase_geometry(H + pt + pb, W + pl + pr, sh, sw)
        none = np.empty((0, 0, 0), x.dtype)  # for an operand not needed
        xq = phases(x, pt, pb, pl, pr, sh, sw)[0] if need_dw else none
        dq = alloc.empty((N, C * sh * sw, Hq * Wq), x.dtype) if need_dx else none
        wgrad = np.empty_like(w)
        taps = tap_table(Cg, R, S, sh, sw, dh, dw, Wq)
        direct_backward(xq, dy, w, C, sh * sw, taps, Wq, need_dx, need_dw, dq, wgrad)
        if need_dx:
            dx = alloc.empty((N, C, H, W), x.dtype)
            unphase(dq, pt, pl, sh, sw, Wq, dx)
        return dx, (wgrad if need_dw else None), db
    if need_dx or need_dw:
        Hp, Wp = H + pt + pb, W + pl + pr
        tap = _taps(C, Hp, Wp, groups, Cg, R, S, dh, dw)
    reach = ((R - 1) * dh, (S - 1) * dw)
    # dx as a forward where dy needs at most the kernel's reach of padding ('same', 1x1): measured faster
    # there (grouped 3x3 5.2 -> 2.3 ms, pointwise 3.0 -> 0.85 ms), slower on 'valid' convs' small maps
    if (
        need_dx
        and sh == sw == 1
        and max(pt, pb) <= reach[0] <= pt + pb
        and max(pl, pr) <= reach[1] <= pl + pr
    ):
        dx = _input_grad_as_forward(dy, w, groups, pt, pb, pl, pr, dh, dw, H, W)
        need_dx = False
    if need_dx:
        dxp = alloc.empty((N, C, Hp, Wp), x.dtype)
        wtp = _panels(w.reshape(groups, Kg, CgRS).transpose(0, 2, 1))
        _input_grad(dy.reshape(-1), wtp, tap, C, Hp, Wp, sh, sw, P, Q, K, dxp.reshape(-1))
        dx = dxp if Hp * Wp == H * W else np.ascontiguousarray(dxp[:, :, pt : pt + H, pl : pl + W])
    if need_dw:
        xp = _padded(x, pt, pb, pl, pr)
        nchunk, ntask = dw_split(N * P * Q)
        part = alloc.empty((groups, ntask, (CgRS + MR - 1) // MR * MR, (Kg + NR - 1) // NR * NR), x.dtype)
        _weight_partials(xp.reshape(-1), dy.reshape(-1), tap, nchunk, C, Hp, Wp, sh, sw, P, Q, K, part)
        wgrad = np.empty_like(w)
        _sum_partials(part, wgrad.reshape(groups, Kg, CgRS))
    return dx, wgrad, db


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    conv: dict[str, Any] = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    strided: dict[str, Any] = dict(conv, stride=(2, 2))
    pointwise: dict[str, Any] = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    x, w, b, w1, dy = rand(2, 2, 4, 4), rand(3, 2, 3, 3), rand(3), rand(3, 2, 1, 1), rand(2, 3, 4, 4)
    x4, w4 = rand(2, 4, 4, 4), rand(3, 4, 3, 3)
    depthwise: dict[str, Any] = dict(conv, groups=2)  # wd: conv_direct.py's backward
    wd, dyd = rand(2, 1, 3, 3), rand(2, 2, 4, 4)
    dys = rand(2, 3, 2, 2)  # dy of x4 * w4 at stride 2
    return {
        "conv2d_forward": lambda: (
            be.conv2d_forward(x, w, b, **conv),  # w: 18 taps, the direct loops
            be.conv2d_forward(x, w, b, **strided),
            be.conv2d_forward(x4, w4, b, **conv),  # w4: 36 taps, the in-place GEMM (conv_indirect.py)
            be.conv2d_forward(x4, w4, b, **strided),  # strided: the packed GEMM
            be.conv2d_forward(x, w1, None, **pointwise),
        ),
        "conv2d_backward": lambda: (
            be.conv2d_backward(dy, x, w, need_dx=True, need_dw=True, need_db=True, **conv),
            be.conv2d_backward(dy, x, w1, need_dx=True, need_dw=True, need_db=False, **pointwise),
            be.conv2d_backward(dyd, x, wd, need_dx=True, need_dw=True, need_db=True, **depthwise),
            be.conv2d_backward(dys, x4, w4, need_dx=True, need_dw=True, need_db=False, **strided),  # packed
        ),
    }
