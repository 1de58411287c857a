"""conv2d + bias + activation + max pool as one kernel pair, for the first layer of an image CNN.

forward:  x (N,1,H,W), w (K,1,R,S), b (K,) | None -> y (N,K,P',Q'), argmax (N,K,P',Q') int64 (a flat index
          into the conv output's P*Q plane, P = H-R+1, Q = W-S+1): y = maxpool(act(conv(x, w) + b))
backward: dy, y, argmax (N,K,P',Q'), x, w -> dw (K,1,R,S), db (K,): conv2d_backward's dw and db of
          dz (N,K,P,Q) = maxpool2d_backward(activation_backward(dy, y), argmax)
One input channel, groups 1, stride 1, no padding or dilation (applies()), any R x S, any pool geometry and
activation; the backend runs the base class composition for everything else and for dx (a first layer never
needs it). There conv.py's GEMM has a reduction of only R*S, and the N*K*P*Q conv output (11 MB for the
classic CNN at batch 128) and dz are written to memory and read back by the next kernel. Here they never
leave the cache:

  forward  one task per image; per filter, the conv plane is computed into a buffer of P*W (L1), then
           biased, activated and pooled from there by pool.py's plane scans (the same values, indices, ties
           and NaN rule).
  dw, db   one task per run of positions j = n*P*Q + pq of conv.py's dw (dw_runs: they depend on N*P*Q
           only, so the results do not depend on the thread count). Image by image, dz of the run's
           positions is rebuilt in a buffer of K*P*Q (L2), multiplied with the image's im2col by
           gemm.fma_tile and summed into float64 lanes for db; the runs' partials are added in run order.
Every value is computed in the same order as by the composition of this backend's kernels (conv.py's fma
chains, runs and db lanes, activation.py's formulas), so the two agree bit for bit: a model gives the same
numbers whether Sequential links its Conv2D -> MaxPooling2D pairs or not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit, prange

from . import alloc
from .activation import KIND_CODES, sigmoid32, tanh32
from .conv import dw_runs, sum_runs
from .gemm import MR, NR, fma, fma_tile
from .pool import _maxpool_plane, _maxpool_plane_2x2, _pool_shape

if TYPE_CHECKING:
    from ..base import Backend
    from . import MakeArray, WarmupCalls

NO_ACT = -1  # activation None (the others: activation.KIND_CODES)


def applies(
    x: np.ndarray,
    w: np.ndarray,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> bool:
    """The geometry these kernels handle: one input channel, groups 1, stride 1, no padding or dilation."""
    one = (1, 1)
    return (
        x.shape[1] == 1
        and groups == 1
        and tuple(stride) == one
        and tuple(dilation) == one
        and not any(padding)
    )


@njit(cache=True)
def _conv_taps(xf, wk, W, zw):
    """zw[i] = conv of the image xf (H*W) with one filter wk (R, S) at i = p*W + q, for the "wide" run
    i < (P-1)*W + Q (it includes the S-1 columns past each row's end, never read): each output is conv.py's
    GEMM chain, fma(w[r, s], x, acc) over the taps in (r, s) order from 0. In the wide run a tap reads one
    contiguous slice of x, so the loops over i vectorise: 3x3 in one pass with the nine taps in registers,
    any other R x S in one pass per tap (zw stays in L1)."""
    R, S = wk.shape
    L = zw.size
    if R == 3 and S == 3:
        w0, w1, w2 = wk[0, 0], wk[0, 1], wk[0, 2]
        w3, w4, w5 = wk[1, 0], wk[1, 1], wk[1, 2]
        w6, w7, w8 = wk[2, 0], wk[2, 1], wk[2, 2]
        x0, x1, x2 = xf[0:L], xf[1 : L + 1], xf[2 : L + 2]
        x3, x4, x5 = xf[W : W + L], xf[W + 1 : W + 1 + L], xf[W + 2 : W + 2 + L]
        x6, x7, x8 = xf[2 * W : 2 * W + L], xf[2 * W + 1 : 2 * W + 1 + L], xf[2 * W + 2 : 2 * W + 2 + L]
        for i in range(L):
            acc = fma(w0, x0[i], 0)
            acc = fma(w1, x1[i], acc)
            acc = fma(w2, x2[i], acc)
            acc = fma(w3, x3[i], acc)
            acc = fma(w4, x4[i], acc)
            acc = fma(w5, x5[i], acc)
            acc = fma(w6, x6[i], acc)
            acc = fma(w7, x7[i], acc)
            zw[i] = fma(w8, x8[i], acc)
        return
    zw[:] = 0
    for r in range(R):
        for s in range(S):
            wv = wk[r, s]
            xs = xf[r * W + s : r * W + s + L]
            for i in range(L):
                zw[i] = fma(wv, xs[i], zw[i])


@njit(cache=True)
def _bias_act(zw, W, bias, kind, alpha, z):
    """z (P, Q) = activation(conv + bias) from the wide run zw, activation.py's formulas (row by row: z is
    the plane pool.py scans)."""
    P, Q = z.shape
    for p in range(P):
        src = zw[p * W : p * W + Q]
        row = z[p]
        if kind == 0:
            for q in range(Q):
                v = src[q] + bias
                row[q] = 0 if v < 0 else v
        elif kind == 1:
            for q in range(Q):
                v = src[q] + bias
                row[q] = v if v > 0 else v * alpha
        else:
            for q in range(Q):
                row[q] = src[q] + bias
            # activation.py's formulas: float32 by sigmoid32 / tanh32
            if kind == 2 and row.itemsize == 4:
                for q in range(Q):
                    row[q] = sigmoid32(row[q])
            elif kind == 2:
                for q in range(Q):
                    row[q] = 1 / (1 + math.exp(-row[q]))
            elif kind == 3 and row.itemsize == 4:
                for q in range(Q):
                    row[q] = tanh32(row[q])
            elif kind == 3:
                for q in range(Q):
                    row[q] = math.tanh(row[q])


@njit(cache=True)
def _forward_image(xf, w3, b, kind, alpha, W, P, Q, pool, classic, yn, an):
    """yn, an (K, P', Q') of one image xf (H*W); an is one reused (1, P', Q') plane when no argmax is kept."""
    kh, kw, sh, sw, ph, pw, dh, dw = pool
    zw = np.empty((P - 1) * W + Q, xf.dtype)
    z = np.empty((P, Q), xf.dtype)
    for k in range(w3.shape[0]):
        _conv_taps(xf, w3[k], W, zw)
        _bias_act(zw, W, b[k], kind, alpha, z)
        ak = an[k % an.shape[0]]
        if classic:
            _maxpool_plane_2x2(z, yn[k], ak)
        else:
            _maxpool_plane(z, kh, kw, sh, sw, ph, pw, dh, dw, yn[k], ak)


@njit(parallel=True, cache=True)
def _forward(xf, w3, b, kind, alpha, W, pool, y, argmax):
    """y, argmax (N, K, P', Q') from xf (N, H*W), argmax (0, 0, 0, 0) when not asked for; a task per image."""
    N = xf.shape[0]
    R, S = w3.shape[1], w3.shape[2]
    P, Q = xf.shape[1] // W - R + 1, W - S + 1
    P2, Q2 = y.shape[2], y.shape[3]
    kh, kw, sh, sw, ph, pw, dh, dw = pool
    # the classic 2x2 / stride 2 pool with every window inside the plane takes pool.py's unrolled scan
    classic = kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and dh == 1 and dw == 1
    classic = classic and 2 * P2 <= P and 2 * Q2 <= Q
    keep = argmax.shape[0] == N
    for n in prange(N):
        an = argmax[n] if keep else np.empty((1, P2, Q2), np.int64)
        _forward_image(xf[n], w3, b, kind, alpha, W, P, Q, pool, classic, y[n], an)


@njit(cache=True)
def _plane_grad(dyp, yp, kind, alpha, g):
    """g = activation_backward(dy, y) over one pooled plane (flat), activation.py's formulas; g = dy for no
    activation."""
    if kind == 0:
        for i in range(g.size):
            g[i] = 0 if yp[i] <= 0 else dyp[i]
    elif kind == 1:
        for i in range(g.size):
            g[i] = dyp[i] if yp[i] > 0 else dyp[i] * alpha
    elif kind == 2:
        for i in range(g.size):
            g[i] = dyp[i] * (1 - yp[i]) * yp[i]
    elif kind == 3:
        for i in range(g.size):
            g[i] = dyp[i] * (1 - yp[i] * yp[i])
    else:
        g[:] = dyp


@njit(cache=True)
def _grad_task(xf, dyf, yf, af, kind, alpha, W, R, S, P, Q, j0, j1, need_dw, part, lanes, tails):
    """The run of positions j0 .. j1 of N*P*Q (j = n*PQ + pq), image by image: dz of the run's positions
    is rebuilt as filter slivers dzs (NR-blocks, PQ, NR), then
      dw: part (taps, filters), padded to (MR, NR) tiles, = sum of col[tap, j] dz[k, j], one fma chain per
          element in position order (conv.py's, transposed): per image the im2col col (tap panels, PQ, MR)
          of the run's positions, then one fma_tile per (panel, sliver); both operands are slices, packed
          as they are built.
      db: the float64 sums of conv.py's _channel_runs, for every filter at once: lanes[l, k] takes the
          image's run positions a + 8i + l, tails[k] the rest (the last (e-a) % 8).
    """
    K = dyf.shape[1]
    PQ = P * Q
    mblk, nblk = part.shape[0] // MR, part.shape[1] // NR
    col = np.zeros((mblk, PQ, MR), xf.dtype)  # taps past R*S stay zero
    dzs = np.empty((nblk, PQ, NR), xf.dtype)
    g = np.empty(dyf.shape[2], xf.dtype)
    ct = np.empty((MR, NR), xf.dtype)
    part[:, :] = 0
    lanes[:, :] = 0
    tails[:] = 0
    for n in range(j0 // PQ, (j1 - 1) // PQ + 1):
        a, e = max(j0 - n * PQ, 0), min(j1 - n * PQ, PQ)  # the image's positions in the run
        dzs[:, a:e, :] = 0  # (filters past K stay zero)
        for k in range(K):  # dz plane k: the pooled gradients added at their argmax, in order
            sliver = dzs[k // NR]
            kk = k % NR
            _plane_grad(dyf[n, k], yf[n, k], kind, alpha, g)
            ak = af[n, k]
            for i in range(g.size):
                pos = ak[i]
                if a <= pos < e:
                    sliver[pos, kk] += g[i]
        e8 = a + (e - a) // 8 * 8
        for pq in range(a, e):  # db: a vector of NR filters per sliver and position
            acc = lanes[(pq - a) % 8] if pq < e8 else tails
            for nb in range(nblk):
                row = dzs[nb, pq]
                for kk in range(NR):
                    acc[nb * NR + kk] += row[kk]
        if not need_dw:
            continue
        x = xf[n]
        t = 0
        for r in range(R):  # im2col tap by tap, row by row: contiguous reads, the index math out of the loop
            for s in range(S):
                dst = col[t // MR, :, t % MR]
                for p in range(a // Q, (e - 1) // Q + 1):
                    src = x[(p + r) * W + s : (p + r) * W + s + Q]
                    for q in range(max(a - p * Q, 0), min(e - p * Q, Q)):
                        dst[p * Q + q] = src[q]
                t += 1
        for mb in range(mblk):
            for nb in range(nblk):
                tile = part[mb * MR : (mb + 1) * MR, nb * NR : (nb + 1) * NR]
                ct[:, :] = tile
                fma_tile(col[mb, a:e], dzs[nb, a:e], ct)
                tile[:, :] = ct


@njit(parallel=True, cache=True)
def _grads(xf, dyf, yf, af, kind, alpha, W, R, S, P, Q, bounds, need_dw, part, lanes, tails, dbpart, dw2, db):
    """One task per run (bounds, conv.py's dw_runs); then dw2 (K, R*S) = the sum over runs, in run order, of
    part[run] (conv.py's _sum_partials), and db = conv.py's sum_runs of each run's tails + lanes (in the
    order of _channel_runs)."""
    nrun = part.shape[0]
    for run in prange(nrun):
        _grad_task(
            xf, dyf, yf, af, kind, alpha, W, R, S, P, Q, bounds[run], bounds[run + 1], need_dw,
            part[run], lanes[run], tails[run],
        )  # fmt: skip
    K, RS = dw2.shape
    for k in range(K):
        for t in range(RS):
            s = part[0, t, k]
            for run in range(1, nrun):
                s += part[run, t, k]
            dw2[k, t] = s
        for run in range(nrun):
            s = tails[run, k]
            for l in range(8):
                s += lanes[run, l, k]
            dbpart[run, k] = s
    sum_runs(dbpart, db)


def conv2d_act_maxpool_forward(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    activation: str | None,
    alpha: float,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
    need_argmax: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    shape = _pool_shape((N, K, H - R + 1, W - S + 1), kernel, stride, padding, dilation, ceil_mode)
    y = alloc.empty(shape, x.dtype)
    argmax = alloc.empty(shape, np.int64) if need_argmax else np.empty((0, 0, 0, 0), np.int64)
    bias = b if b is not None else np.zeros(K, x.dtype)  # + 0, as conv.py adds without a bias
    kind = NO_ACT if activation is None else KIND_CODES[activation]
    pool = tuple(int(v) for v in (*kernel, *stride, *padding, *dilation))
    _forward(x.reshape(N, H * W), w.reshape(K, R, S), bias, kind, x.dtype.type(alpha), W, pool, y, argmax)
    return y, (argmax if need_argmax else None)


def conv2d_act_maxpool_backward(
    dy: np.ndarray,
    y: np.ndarray,
    argmax: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
    activation: str | None,
    alpha: float,
    need_dw: bool,
    need_db: bool,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    P, Q = H - R + 1, W - S + 1
    PQ2 = dy.shape[2] * dy.shape[3]
    dyf, yf, af = dy.reshape(N, K, PQ2), y.reshape(N, K, PQ2), argmax.reshape(N, K, PQ2)
    kind = NO_ACT if activation is None else KIND_CODES[activation]
    alpha_x = x.dtype.type(alpha)
    bounds = dw_runs(N * P * Q)
    nrun, kpad = bounds.size - 1, -(-K // NR) * NR
    part = np.empty((nrun, -(-R * S // MR) * MR, kpad), x.dtype)
    lanes, tails, dbpart = np.empty((nrun, 8, kpad)), np.empty((nrun, kpad)), np.empty((nrun, K))
    dw, db = np.empty_like(w), np.empty(K, x.dtype)
    _grads(
        x.reshape(N, H * W), dyf, yf, af, kind, alpha_x, W, R, S, P, Q, bounds, need_dw, part, lanes, tails,
        dbpart, dw.reshape(K, R * S), db,
    )  # fmt: skip
    return (dw if need_dw else None), (db if need_db else None)


def warmup_calls(be: Backend, rand: MakeArray, zeros: MakeArray) -> WarmupCalls:
    """{kernel: closure} calling each kernel of this file once on tiny inputs that reach every compiled
    loop (the package's warmup(); ``rand(*shape)``/``zeros(*shape)`` make arrays of the dtype warmed)."""
    x1, wc, b = rand(2, 1, 6, 6), rand(3, 1, 3, 3), rand(3)  # the one-channel conv this file handles
    conv: dict[str, Any] = dict(
        stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, activation="relu", alpha=0.01
    )
    pool: dict[str, Any] = dict(
        pool_kernel=(2, 2), pool_stride=(2, 2), pool_padding=(0, 0), pool_dilation=(1, 1)
    )
    saved: dict[str, Any] = {}

    def forward() -> None:
        saved["cp"] = be.conv2d_act_maxpool_forward(x1, wc, b, **conv, **pool, pool_ceil_mode=False)

    def backward() -> None:
        y, argmax = saved["cp"]
        # dx: a first layer never asks for it
        need: dict[str, Any] = dict(need_dx=False, need_dw=True, need_db=True)
        be.conv2d_act_maxpool_backward(y, y, argmax, x1, wc, **need, **conv)

    return {"conv2d_act_maxpool_forward": forward, "conv2d_act_maxpool_backward": backward}
