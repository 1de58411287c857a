"""Packed, register-blocked GEMM shared by the conv and dense kernels.

C (M, N) = A (M, K) @ B (K, N) in the GotoBLAS/BLIS shape: A is packed into panels of MR rows,
ap (ceil(M/MR), K, MR) with ap[mb, k, i] = A[mb*MR + i, k], and B into slivers of NR columns,
bp (ceil(N/NR), K, NR) with bp[nb, k, j] = B[k, nb*NR + j]; rows and columns past the edge are packed as
zeros, so every tile is a full MR x NR one and the caller stores only its valid part. The conv kernels
pack their slivers straight from the image (conv.py), the dense ones in gemm here.

The micro-kernel fma_tile does ct (MR, NR) += ap[mb]^T @ bp[nb] over the whole K: its MR x NR accumulators
are MR vectors of NR lanes (MR*NR/8 = 12 ymm registers for float32) that stay in registers for the whole k
loop; each k loads one NR-wide row of the sliver and broadcasts MR scalars of the panel,

    acc[i, :] = fma(ap[k, i], bp[k, :], acc[i, :])        for k = 0 .. K-1, i < MR

It is written as LLVM IR (a Numba intrinsic) because Numba's scalar code does not get there: LLVM does not
vectorise scalar accumulators carried around a loop, and array accumulators are stored to memory on every
step. The sum runs in plain k order, each step one fused multiply-add (one rounding instead of two; the
same as fastmath={'contract'}); no reassociation, so IEEE NaN/inf propagation is unchanged.

We do the GEMM ourselves rather than call BLAS: BLAS's own thread pool and Numba's (OpenMP) pool spin
against each other when their calls alternate, as they do in a training step; measured on a 2-core
machine, a 64x288x3872 sgemm went from 1.2 ms to 8.6 ms when interleaved with a Numba parallel loop.
"""

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

MR = 6  # rows per tile (panel width): one B vector feeds MR accumulators
NR = 16  # columns per tile (sliver width): two ymm vectors of float32


def _tile_codegen(indirect: bool = False, rows: bool = False) -> Any:
    """LLVM IR of the micro-kernel: ct (MR, NR) += sum over k of scalars a_k[i] times row k, the NR-wide
    row k being bp[k, :] (packed) or, indirect, xf[base + offs[k] : + NR] (read in place: no packing); the
    MR scalars a_k[i] being ap[k, i] (packed) or, rows, xf[rows[i] + offs[k]] (MR gathered reads)."""

    def codegen(context, builder, sig, args):
        arrays = [
            context.make_array(t)(context, builder, v) for t, v in zip(sig.args, args) if t != types.int64
        ]
        if indirect:
            (a, x, offs, c), base = arrays, args[3]
        elif rows:
            x, rowbase, offs, b, c = arrays
        else:
            a, b, c = arrays
        steps = b if rows else a  # the array with one row per step k
        scalar = context.get_value_type(sig.args[0].dtype)
        vec = ir.VectorType(scalar, NR)
        bits = 32 if sig.args[0].dtype == types.float32 else 64
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{NR}f{bits}"
        )
        i64 = ir.IntType(64)

        def vector_at(base_ptr, index):
            return builder.bitcast(builder.gep(base_ptr, [index]), vec.as_pointer())

        # accumulators in allocas: LLVM's mem2reg turns them into registers (phis of the k loop)
        acc = [cgutils.alloca_once(builder, vec) for _ in range(MR)]
        for i in range(MR):
            builder.store(builder.load(vector_at(c.data, ir.Constant(i64, i * NR)), align=1), acc[i])
        undef = ir.Constant(vec, ir.Undefined)
        lane0 = ir.Constant(ir.IntType(32), 0)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), NR), [0] * NR)
        if rows:  # the MR row bases, loaded once
            bases = [builder.load(builder.gep(rowbase.data, [ir.Constant(i64, i)])) for i in range(MR)]
        with cgutils.for_range(builder, builder.extract_value(steps.shape, 0)) as loop:
            if indirect:
                off = builder.load(builder.gep(offs.data, [loop.index]))
                row = builder.load(vector_at(x.data, builder.add(base, off)), align=1)
            else:
                row = builder.load(vector_at(b.data, builder.mul(loop.index, ir.Constant(i64, NR))), align=1)
            if rows:
                off = builder.load(builder.gep(offs.data, [loop.index]))
            else:
                a0 = builder.mul(loop.index, ir.Constant(i64, MR))
            for i in range(MR):
                if rows:
                    s = builder.load(builder.gep(x.data, [builder.add(bases[i], off)]))
                else:
                    s = builder.load(builder.gep(a.data, [builder.add(a0, ir.Constant(i64, i))]))
                broadcast = builder.shuffle_vector(builder.insert_element(undef, s, lane0), undef, splat)
                builder.store(builder.call(fma, [broadcast, row, builder.load(acc[i])]), acc[i])
        for i in range(MR):
            builder.store(builder.load(acc[i]), vector_at(c.data, ir.Constant(i64, i * NR)), align=1)
        return context.get_dummy_value()

    return codegen


def _float_arrays(ndim: int, *arrs: types.Type) -> bool:
    return all(
        isinstance(a, types.Array) and a.ndim == ndim and a.layout == "C" and a.dtype == arrs[0].dtype
        for a in arrs
    ) and arrs[0].dtype in (types.float32, types.float64)


@intrinsic
def _fma_tile(typingctx, ap, bp, ct):
    """ct (MR, NR) += ap (kc, MR)^T @ bp (kc, NR), all three C-contiguous of one float dtype; the shapes
    are not checked (fma_tile does)."""
    if not _float_arrays(2, ap, bp, ct):
        return None
    return types.void(ap, bp, ct), _tile_codegen(indirect=False)


@intrinsic
def _fma_tile_indirect(typingctx, ap, xf, offs, base, ct):
    """ct (MR, NR) += ap (kc, MR)^T @ rows xf[base + offs[k] : + NR], k < kc; nothing is checked: the
    caller guarantees every row lies inside xf (fma_tile_indirect does)."""
    if not (_float_arrays(2, ap, ct) and _float_arrays(1, xf) and xf.dtype == ap.dtype):
        return None
    if not (
        isinstance(offs, types.Array) and offs.ndim == 1 and offs.layout == "C" and offs.dtype == types.int64
    ):
        return None
    if not isinstance(base, types.Integer):
        return None
    return types.void(ap, xf, offs, types.int64, ct), _tile_codegen(indirect=True)


@intrinsic
def _fma_tile_rows(typingctx, xf, rows, offs, bp, ct):
    """ct (MR, NR) += sum over k of xf[rows[i] + offs[k]] * bp[k, :], i < MR, k < len(offs) (= bp's rows);
    nothing is checked: the caller guarantees every read lies inside xf (fma_tile_rows does)."""
    if not (_float_arrays(2, bp, ct) and _float_arrays(1, xf) and xf.dtype == bp.dtype):
        return None
    for ints in (rows, offs):
        if not (
            isinstance(ints, types.Array)
            and ints.ndim == 1
            and ints.layout == "C"
            and ints.dtype == types.int64
        ):
            return None
    return types.void(xf, rows, offs, bp, ct), _tile_codegen(rows=True)


@intrinsic
def fma(typingctx, a, b, c):
    """a*b + c with one rounding (llvm.fma), in a's float type (b and c are cast to it); scalar, for loops
    LLVM vectorises (conv_pool.py's direct conv: the same rounding as fma_tile's lanes)."""
    if not isinstance(a, types.Float) or not isinstance(b, types.Number) or not isinstance(c, types.Number):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(sig.return_type)
        bits = 32 if sig.return_type == types.float32 else 64
        fn = ir.FunctionType(ty, [ty] * 3)
        return builder.call(cgutils.get_or_insert_function(builder.module, fn, f"llvm.fma.f{bits}"), args)

    return a(a, a, a), codegen


@njit(cache=True)
def fma_tile(ap, bp, ct):
    """ct (MR, NR) += ap (kc, MR)^T @ bp (kc, NR), after checking the shapes the micro-kernel relies on."""
    kc = ap.shape[0]
    if ap.shape[1] != MR or bp.shape[0] != kc or bp.shape[1] != NR or ct.shape[0] != MR or ct.shape[1] != NR:
        raise ValueError("fma_tile: shapes must be ap (kc, MR), bp (kc, NR), ct (MR, NR)")
    _fma_tile(ap, bp, ct)


@njit(cache=True)
def fma_tile_indirect(ap, xf, offs, base, ct):
    """ct (MR, NR) += ap (kc, MR)^T @ the rows xf[base + offs[k] : + NR] (an indirect GEMM's B, read in
    place), after checking the shapes and that every row lies inside xf."""
    kc = ap.shape[0]
    if ap.shape[1] != MR or offs.shape[0] != kc or ct.shape[0] != MR or ct.shape[1] != NR:
        raise ValueError("fma_tile_indirect: shapes must be ap (kc, MR), offs (kc,), ct (MR, NR)")
    if kc > 0 and (base + offs.min() < 0 or base + offs.max() + NR > xf.size):
        raise IndexError("fma_tile_indirect: a row lies outside xf")
    _fma_tile_indirect(ap, xf, offs, np.int64(base), ct)


@njit(cache=True)
def fma_tile_rows(xf, rows, offs, bp, ct):
    """ct (MR, NR) += sum over k of xf[rows[i] + offs[k]] * bp[k, :] (a GEMM whose MR scalars per step are
    gathered from MR row bases at one offset: conv.py's dw reads x in place this way), after checking the
    shapes and that every read lies inside xf."""
    kc = bp.shape[0]
    if (
        rows.shape[0] != MR
        or offs.shape[0] != kc
        or bp.shape[1] != NR
        or ct.shape[0] != MR
        or ct.shape[1] != NR
    ):
        raise ValueError("fma_tile_rows: shapes must be rows (MR,), offs (kc,), bp (kc, NR), ct (MR, NR)")
    if kc > 0 and (rows.min() + offs.min() < 0 or rows.max() + offs.max() >= xf.size):
        raise IndexError("fma_tile_rows: a read lies outside xf")
    _fma_tile_rows(xf, rows, offs, bp, ct)


@njit(cache=True)
def _pack_panel(a, mb, ap):
    """ap[mb] (K, MR) <- rows mb*MR .. of a (M, K) in any layout, rows past M as zeros."""
    M, K = a.shape
    for k in range(K):
        for i in range(MR):
            m = mb * MR + i
            ap[mb, k, i] = a[m, k] if m < M else 0


@njit(cache=True)
def _pack_sliver(b, nb, bp):
    """bp[nb] (K, NR) <- columns nb*NR .. of b (K, N) in any layout, columns past N as zeros."""
    K, N = b.shape
    for k in range(K):
        for j in range(NR):
            n = nb * NR + j
            bp[nb, k, j] = b[k, n] if n < N else 0


@njit(cache=True)
def _tile_row(ap, bp, bias, has_bias, mb, c, ct):
    """c[mb*MR : +MR, :] (+ bias) from panel mb times every sliver."""
    M, N = c.shape
    mr = min(MR, M - mb * MR)
    for nb in range(bp.shape[0]):
        ct[:, :] = 0
        fma_tile(ap[mb], bp[nb], ct)
        nr = min(NR, N - nb * NR)
        for i in range(mr):
            crow = c[mb * MR + i]
            for j in range(nr):
                crow[nb * NR + j] = ct[i, j] + bias[nb * NR + j] if has_bias else ct[i, j]


@njit(parallel=True, cache=True)
def gemm(a, b, bias, has_bias, c):
    """c (M, N) = a (M, K) @ b (K, N) (+ bias (N,) on every row if has_bias); a, b in any layout.
    Two parallel loops: one task per panel or sliver to pack, then one per panel of MR rows of c."""
    M, K = a.shape
    N = b.shape[1]
    mblk = (M + MR - 1) // MR
    nblk = (N + NR - 1) // NR
    ap = np.empty((mblk, K, MR), c.dtype)
    bp = np.empty((nblk, K, NR), c.dtype)
    for t in prange(mblk + nblk):
        if t < mblk:
            _pack_panel(a, t, ap)
        else:
            _pack_sliver(b, t - mblk, bp)
    for mb in prange(mblk):
        _tile_row(ap, bp, bias, has_bias, mb, c, np.empty((MR, NR), c.dtype))
