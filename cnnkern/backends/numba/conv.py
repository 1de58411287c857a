"""conv2d forward/backward: im2col + the register-tiled GEMM of gemm.py, everything in Numba's thread pool.

x (N,C,H,W), w (K,C/g,R,S), b (K,) | None -> y (N,K,P,Q), cross-correlation with zero padding
(top, bottom, left, right), stride (sh, sw), dilation (dh, dw), groups g; Kg = K/g, Cg = C/g.

Columns: for a chunk of nb samples, col (g, Cg*R*S, nb*P*Q) holds the input value under weight tap
(cg, r, s) at output position (n, p, q): col[g, (cg*R + r)*S + s, (n*P + p)*Q + q] = x[n, g*Cg + cg, ih, iw]
with ih = p*sh - pt + r*dh, iw = q*sw - pl + s*dw, or 0 outside the image. Putting the samples side by
side along the columns gives the GEMMs nb*P*Q columns: long contiguous rows even when P*Q is 9. Batches
are processed in chunks so col stays under COL_BYTES. With J = nb*P*Q:

  forward   y (Kg, J) per group   = w[g] (Kg, CgRS) @ col[g] (CgRS, J)           (+ b), stored as (n, k, pq)
  dx        dcol[g] (CgRS, J)     = w[g]^T (CgRS, Kg) @ dy[g] (Kg, J), then col2im scatters dcol to dx
  dw        dw[g]^T (CgRS, Kg)    = col[g] (CgRS, J) @ dy[g]^T (J, Kg)
  db        db[k]                 = sum over n, p, q of dy[n, k, p, q]
dy is regathered per chunk into the (Kg, J) or (J, Kg) layout the GEMM needs (a copy the size of dy), and
w[g]^T is copied contiguous once per call (it is small).
"""

import numpy as np
from numba import njit, prange

from ...shapes import conv_out
from .gemm import MR, NB, accumulate_tile

COL_BYTES = 32 << 20  # at most this much column buffer per chunk of samples


# Each parallel loop only hands out tasks; the task bodies are plain @njit functions, which compile to
# much faster code than the same loops written inside a prange body (measured 7x on a branchy loop nest).


@njit(cache=True)
def _im2col_channel(plane, colg, cg, n, R, S, sh, sw, pt, pl, dh, dw, P, Q):
    """Rows (cg, r, s) of colg (CgRS, J), columns of sample n, from one input plane (H, W)."""
    H, W = plane.shape
    for r in range(R):
        for s in range(S):
            row = colg[(cg * R + r) * S + s]
            off = s * dw - pl
            # output columns q whose input column q*sw + off lies in [0, W)
            qlo = min(Q, max(0, -(off // sw)))
            qhi = max(qlo, min(Q, (W - 1 - off) // sw + 1))
            for p in range(P):
                ih = p * sh - pt + r * dh
                base = (n * P + p) * Q
                if ih < 0 or ih >= H:
                    row[base : base + Q] = 0
                    continue
                src = plane[ih]
                row[base : base + qlo] = 0
                if sw == 1:  # contiguous run: a straight vectorised copy
                    row[base + qlo : base + qhi] = src[qlo + off : qhi + off]
                else:
                    for q in range(qlo, qhi):
                        row[base + q] = src[q * sw + off]
                row[base + qhi : base + Q] = 0


@njit(cache=True)
def _col2im_channel(dcolg, cg, n, R, S, sh, sw, pt, pl, dh, dw, P, Q, dplane):
    """dplane (H, W) = sum of the entries of rows (cg, r, s), sample n, of dcolg at the inputs they read."""
    H, W = dplane.shape
    dplane[:, :] = 0
    for r in range(R):
        for s in range(S):
            row = dcolg[(cg * R + r) * S + s]
            off = s * dw - pl
            qlo = min(Q, max(0, -(off // sw)))
            qhi = max(qlo, min(Q, (W - 1 - off) // sw + 1))
            for p in range(P):
                ih = p * sh - pt + r * dh
                if ih < 0 or ih >= H:
                    continue
                dst = dplane[ih]
                base = (n * P + p) * Q
                if sw == 1:
                    for q in range(qlo, qhi):
                        dst[q + off] += row[base + q]
                else:
                    for q in range(qlo, qhi):
                        dst[q * sw + off] += row[base + q]


@njit(cache=True)
def _forward_tile(wg, colg, b, has_bias, k0, m0, mr, j0, nc, n0, y3):
    """One output tile: rows k0+m0 .. (+mr) of y, columns j0 .. j0+nc of J = nb*PQ, stored as (n, k, pq)."""
    PQ = y3.shape[2]
    acc = np.zeros((MR, NB), y3.dtype)
    accumulate_tile(wg, colg, m0, mr, j0, nc, acc)
    for i in range(mr):
        k = k0 + m0 + i
        if has_bias:
            acc[i, :nc] += b[k]
        # the tile's columns cross sample boundaries: store one run per sample
        j = 0
        while j < nc:
            n = (j0 + j) // PQ
            pq = j0 + j - n * PQ
            run = min(nc - j, PQ - pq)
            y3[n0 + n, k, pq : pq + run] = acc[i, j : j + run]
            j += run


@njit(cache=True)
def _product_tile(a, b, m0, mr, j0, nc, out):
    """out[m0:m0+mr, j0:j0+nc] = (a @ b) on that tile."""
    acc = np.zeros((MR, NB), out.dtype)
    accumulate_tile(a, b, m0, mr, j0, nc, acc)
    for i in range(mr):
        out[m0 + i, j0 : j0 + nc] = acc[i, :nc]


@njit(cache=True)
def _weight_tile(colg, dyTg, m0, mr, j0, nc, accumulate, dwg):
    """dwg[j0:j0+nc, m0:m0+mr] (+)= (colg @ dyTg)^T on that tile."""
    acc = np.zeros((MR, NB), dwg.dtype)
    accumulate_tile(colg, dyTg, m0, mr, j0, nc, acc)
    for i in range(mr):
        if accumulate:
            for j in range(nc):
                dwg[j0 + j, m0 + i] += acc[i, j]
        else:
            for j in range(nc):
                dwg[j0 + j, m0 + i] = acc[i, j]


@njit(cache=True)
def _channel_sum(dy3, k):
    """sum over n, pq of dy3[n, k, pq] in float64."""
    s = 0.0
    for n in range(dy3.shape[0]):
        row = dy3[n, k]
        for pq in range(row.size):
            s += row[pq]
    return s


@njit(cache=True)
def _transpose_into(src, dst):
    """dst (B, A) = src (A, B)^T."""
    for a in range(src.shape[0]):
        for b in range(src.shape[1]):
            dst[b, a] = src[a, b]


@njit(parallel=True, cache=True)
def _im2col(x, n0, R, S, sh, sw, pt, pl, dh, dw, P, Q, col):
    """col (g, CgRS, nb*PQ) <- x[n0:n0+nb]; one task per (sample, channel)."""
    C = x.shape[1]
    groups = col.shape[0]
    nb = col.shape[2] // (P * Q)
    Cg = C // groups
    for t in prange(nb * C):
        n, c = t // C, t % C
        _im2col_channel(x[n0 + n, c], col[c // Cg], c % Cg, n, R, S, sh, sw, pt, pl, dh, dw, P, Q)


@njit(parallel=True, cache=True)
def _col2im(dcol, n0, R, S, sh, sw, pt, pl, dh, dw, P, Q, dx):
    """dx[n0:n0+nb] = scatter-add of dcol (g, CgRS, nb*PQ); one task per (sample, channel) plane, so no
    two tasks write the same element."""
    C = dx.shape[1]
    groups = dcol.shape[0]
    nb = dcol.shape[2] // (P * Q)
    Cg = C // groups
    for t in prange(nb * C):
        n, c = t // C, t % C
        _col2im_channel(dcol[c // Cg], c % Cg, n, R, S, sh, sw, pt, pl, dh, dw, P, Q, dx[n0 + n, c])


@njit(parallel=True, cache=True)
def _forward_gemm(w3, col, b, has_bias, n0, y3):
    """y3[n0+n, g*Kg + i, pq] = (w3[g] (Kg, CgRS) @ col[g] (CgRS, J))[i, n*PQ + pq] (+ b); tasks over
    (g, tile)."""
    groups, Kg = w3.shape[0], w3.shape[1]
    J = col.shape[2]
    mblk = (Kg + MR - 1) // MR
    jblk = (J + NB - 1) // NB
    for t in prange(groups * mblk * jblk):
        g, m0, j0 = t // (jblk * mblk), ((t // jblk) % mblk) * MR, (t % jblk) * NB
        _forward_tile(w3[g], col[g], b, has_bias, g * Kg, m0, min(MR, Kg - m0), j0, min(NB, J - j0), n0, y3)


@njit(parallel=True, cache=True)
def _dy_by_channel(dy3, n0, dyB):
    """dyB[g, i, n*PQ + pq] = dy3[n0+n, g*Kg + i, pq]: dy (Kg, J) per group, for the dx GEMM."""
    groups, Kg, J = dyB.shape
    PQ = dy3.shape[2]
    nb = J // PQ
    for t in prange(groups * nb):
        g, n = t // nb, t % nb
        dyB[g, :, n * PQ : (n + 1) * PQ] = dy3[n0 + n, g * Kg : (g + 1) * Kg]


@njit(parallel=True, cache=True)
def _dy_by_position(dy3, n0, dyT):
    """dyT[g, n*PQ + pq, i] = dy3[n0+n, g*Kg + i, pq]: dy^T (J, Kg) per group, for the dw GEMM."""
    groups, J, Kg = dyT.shape
    PQ = dy3.shape[2]
    nb = J // PQ
    for t in prange(groups * nb):
        g, n = t // nb, t % nb
        _transpose_into(dy3[n0 + n, g * Kg : (g + 1) * Kg], dyT[g, n * PQ : (n + 1) * PQ])


@njit(parallel=True, cache=True)
def _col_grad(wT3, dyB, dcol):
    """dcol[g] (CgRS, J) = wT3[g] (CgRS, Kg) @ dyB[g] (Kg, J), wT3[g] = w[g]^T; tasks over (g, tile)."""
    groups, CgRS, J = dcol.shape
    mblk = (CgRS + MR - 1) // MR
    jblk = (J + NB - 1) // NB
    for t in prange(groups * mblk * jblk):
        g, m0, j0 = t // (jblk * mblk), ((t // jblk) % mblk) * MR, (t % jblk) * NB
        _product_tile(wT3[g], dyB[g], m0, min(MR, CgRS - m0), j0, min(NB, J - j0), dcol[g])


@njit(parallel=True, cache=True)
def _weight_grad(col, dyT, accumulate, dw3):
    """dw3[g]^T (CgRS, Kg) (+)= col[g] (CgRS, J) @ dyT[g] (J, Kg); tasks over (g, tile), so no two tasks
    write the same dw element; `accumulate` adds to the previous chunks' sum."""
    groups, CgRS = col.shape[0], col.shape[1]
    Kg = dyT.shape[2]
    mblk = (CgRS + MR - 1) // MR
    jblk = (Kg + NB - 1) // NB
    for t in prange(groups * mblk * jblk):
        g, m0, j0 = t // (jblk * mblk), ((t // jblk) % mblk) * MR, (t % jblk) * NB
        _weight_tile(col[g], dyT[g], m0, min(MR, CgRS - m0), j0, min(NB, Kg - j0), accumulate, dw3[g])


@njit(parallel=True, cache=True)
def _bias_grad(dy3, db):
    """db[k] = sum over n, pq of dy3[n, k, pq], accumulated in float64; one task per channel."""
    for k in prange(dy3.shape[1]):
        db[k] = _channel_sum(dy3, k)


def _geometry(x, w, stride, padding, dilation):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    sh, sw = int(stride[0]), int(stride[1])
    pt, pb, pl, pr = (int(p) for p in padding)
    dh, dw = int(dilation[0]), int(dilation[1])
    P = conv_out(H, R, sh, pt, pb, dh)
    Q = conv_out(W, S, sw, pl, pr, dw)
    return N, C, K, Cg, R, S, sh, sw, pt, pl, dh, dw, P, Q


def _chunks(N, bytes_per_sample):
    nb = max(1, min(N, COL_BYTES // max(1, bytes_per_sample)))
    return [(n0, min(nb, N - n0)) for n0 in range(0, N, nb)]


def conv2d_forward(x, w, b, stride, padding, dilation, groups):
    N, C, K, Cg, R, S, sh, sw, pt, pl, dh, dw, P, Q = _geometry(x, w, stride, padding, dilation)
    groups = int(groups)
    CgRS = Cg * R * S
    y = np.empty((N, K, P, Q), x.dtype)
    w3 = w.reshape(groups, K // groups, CgRS)
    bias = b if b is not None else np.empty(0, x.dtype)
    for n0, nb in _chunks(N, C * R * S * P * Q * x.itemsize):
        col = np.empty((groups, CgRS, nb * P * Q), x.dtype)
        _im2col(x, n0, R, S, sh, sw, pt, pl, dh, dw, P, Q, col)
        _forward_gemm(w3, col, bias, b is not None, n0, y.reshape(N, K, P * Q))
    return y


def conv2d_backward(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw, need_db):
    N, C, K, Cg, R, S, sh, sw, pt, pl, dh, dw, P, Q = _geometry(x, w, stride, padding, dilation)
    groups = int(groups)
    Kg = K // groups
    CgRS = Cg * R * S
    dy3 = dy.reshape(N, K, P * Q)
    dx = np.empty_like(x) if need_dx else None
    wgrad = np.empty_like(w) if need_dw else None  # (dw is the dilation)
    db = None
    if need_db:
        db = np.empty(K, dy.dtype)
        _bias_grad(dy3, db)
    if need_dx:
        wT3 = np.ascontiguousarray(w.reshape(groups, Kg, CgRS).transpose(0, 2, 1))
    for n0, nb in _chunks(N, C * R * S * P * Q * x.itemsize):
        J = nb * P * Q
        if need_dw:
            col = np.empty((groups, CgRS, J), x.dtype)
            _im2col(x, n0, R, S, sh, sw, pt, pl, dh, dw, P, Q, col)
            dyT = np.empty((groups, J, Kg), dy.dtype)
            _dy_by_position(dy3, n0, dyT)
            _weight_grad(col, dyT, n0 > 0, wgrad.reshape(groups, Kg, CgRS))
        if need_dx:
            dyB = np.empty((groups, Kg, J), dy.dtype)
            _dy_by_channel(dy3, n0, dyB)
            dcol = np.empty((groups, CgRS, J), x.dtype)
            _col_grad(wT3, dyB, dcol)
            _col2im(dcol, n0, R, S, sh, sw, pt, pl, dh, dw, P, Q, dx)
    return dx, wgrad, db
