"""Poisson image blending on an irregular masked region (Perez et al. 2003).

The discrete problem (Perez et al., "Poisson Image Editing", SIGGRAPH 2003, Eq. 7) is,
for every pixel ``p`` of the region ``Omega`` with 4-neighbourhood ``N_p``::

    |N_p| f_p - sum_{q in N_p & Omega} f_q = sum_{q in N_p & dOmega} t_q + sum_{q in N_p} v_pq

with Dirichlet values ``t`` (the target) on the pixels next to ``Omega`` and the guidance field
``v`` taken from the source ("normal") or from whichever of source and target has the larger
gradient on each edge ("mixed"). ``|N_p| = 4`` because ``Omega`` may not touch the image border.

Solver
------
The matrix ``A`` (5-point Laplacian on ``Omega``, Dirichlet outside) is symmetric positive
definite. It is solved by conjugate gradients, three channels at a time (one CG recurrence
per channel), preconditioned by one symmetric multigrid V-cycle:

* coarse levels: every other cell in each direction (vertex-centred coarsening; the parity
  class with most cells is kept, so a level never vanishes), bilinear interpolation ``P``
  (coarse cells that do not exist count as zero: the Dirichlet boundary), restriction
  ``P^T`` and the Galerkin coarse matrix ``P^T A P`` (9-point stencils). The Galerkin
  product follows the irregular boundary exactly, so one V-cycle works as well on thin
  cracks as on blobs: the preconditioned matrix has a condition number of about 1.33
  whatever the size or shape, i.e. CG gains about one decimal digit per iteration;
* smoothing: red-black Gauss-Seidel on the 5-point fine level, four-colour Gauss-Seidel
  (colours = coordinate parities) on the 9-point levels; the colours run forwards before and
  backwards after the coarse correction, so the V-cycle is symmetric positive definite;
* coarsest level (at most ``_N_DENSE`` cells): dense Cholesky.

CG stops when the multigrid estimate of the error, ``z = M^-1 r``, is at most ``_TOL`` (data
units, e.g. grey levels) in every cell and channel; ``z`` is then added to the solution. On
0-255 data this takes 4-5 iterations and leaves an error below 4e-4.

Implementation: cells are stored compactly (by colour, raster order within a colour) with
neighbour index tables; a zero "sentinel" row at the end of every level stands for "no cell
there", so the kernels need no branches. The big arrays live in per-thread scratch buffers
reused from call to call (fresh memory costs page faults that would otherwise take about as
long as the solve). After input validation everything runs in numba-compiled functions
(``cache=True``, ``nogil=True``, one thread): ``_setup`` (levels and operators; depends on
the region only), then per block of three channels ``_rhs`` (the only function compiled
once per input dtype), ``_pcg`` and ``_write``.
"""
from __future__ import annotations

import threading

import numba as nb
import numpy as np

__all__ = ["poisson_blend"]

_MODES = ("normal", "mixed")
_N_DENSE = 32  # the coarsest level has at most this many cells (dense Cholesky)
_MAX_LEVELS = 24
_TOL = 1e-3  # stop when max |M^-1 r| (the estimated error, in data units) is below this
_MAX_ITER = 100
_DIRECT_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)  # read without a float64 copy

_FINE_NBR = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], np.int64)  # left, right, up, down
# 9-point stencil slot s <-> offset _SLOT[s] = (s // 3 - 1, s % 3 - 1), slot 4 being the cell
# itself; _NBR8 are the 8 neighbour slots (tables: integer // and % are slow in numba loops)
_SLOT = np.array([[s // 3 - 1, s % 3 - 1] for s in range(9)], np.int64)
_NBR8 = np.array([0, 1, 2, 3, 5, 6, 7, 8], np.int64)
_FINE_STENCIL = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])

_jit = nb.njit(cache=True, nogil=True)
_scratch = threading.local()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _check_image(name, arr):
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"`{name}` must have shape (H, W) or (H, W, C), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"`{name}` must have a real integer or floating dtype, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must contain only finite values")
    return arr


def _check_region(region, shape):
    region = np.asarray(region)
    if region.shape != shape:
        raise ValueError(f"`region` must have shape {shape} (target's H, W), got {region.shape}")
    if region.dtype != np.bool_:
        if not np.issubdtype(region.dtype, np.integer):
            raise ValueError(f"`region` must be a bool or 0/1 integer array, got {region.dtype}")
        if ((region != 0) & (region != 1)).any():
            raise ValueError("`region` must be binary: an integer `region` may only hold 0 and 1")
        region = region.astype(bool)
    if not region.any():
        raise ValueError("`region` must contain at least one pixel")
    if region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any():
        raise ValueError("`region` must not touch the 1-pixel border of the image")
    return np.ascontiguousarray(region)


# --------------------------------------------------------------------------------------------
# Levels: which cells exist.
#
# Every level has an index grid (h, w) int32 (-1 where there is no cell) with at least 2 empty
# rows/columns on every side, so 5x5 windows around a cell need no bounds checks. Coarse cell
# (Y, X) is the cell (2 Y + ey, 2 X + ex) of the level below; (ey, ex) is the coarse origin.
# --------------------------------------------------------------------------------------------
@_jit
def _number_cells(mask, four_colours, pad):
    """Number the True cells of ``mask`` (h, w) bool colour by colour, raster order within a
    colour, on a grid padded by ``pad`` on every side. Colours: ``(y + x) % 2`` (red-black,
    5-point level) or ``2 * (y % 2) + x % 2`` (9-point levels), in padded coordinates.

    Returns ``idx`` (h + 2 pad, w + 2 pad) int32 (-1 outside), the padded coordinates ``ys``,
    ``xs`` (n,) int64 and ``starts`` (5,) int64, the first cell of each colour (unused
    colours are empty, ``starts[4] = n``)."""
    h, w = mask.shape
    n_all = 0
    for y in range(h):
        for x in range(w):
            n_all += mask[y, x]
    idx = np.full((h + 2 * pad, w + 2 * pad), -1, np.int32)
    ys = np.empty(n_all, np.int64)
    xs = np.empty(n_all, np.int64)
    starts = np.full(5, n_all, np.int64)
    n = 0
    for col in range(4 if four_colours else 2):
        starts[col] = n
        for y in range(h):
            if four_colours and (y + pad) & 1 != col >> 1:
                continue
            x0 = (col - y - 2 * pad) & 1 if not four_colours else (col - pad) & 1
            for x in range(x0, w, 2):
                if mask[y, x]:
                    idx[y + pad, x + pad] = n
                    ys[n] = y + pad
                    xs[n] = x + pad
                    n += 1
    return idx, ys, xs, starts


@_jit
def _coarse_cells(ys, xs):
    """Coarse cells of a level with cells at ``ys``, ``xs``: those whose coordinate parities
    ``(oy, ox)`` are the most common (so there is always at least one). Returns the coarse
    index grid, ``ys``, ``xs``, colour ``starts`` (as ``_number_cells``) and the origin."""
    count = np.zeros(4, np.int64)
    for i in range(ys.shape[0]):
        count[2 * (ys[i] & 1) + (xs[i] & 1)] += 1
    k = np.argmax(count)
    ey, ex = (k >> 1) - 2, (k & 1) - 2  # cells have coordinates >= 2: coarse ones too
    cmask = np.zeros(((ys.max() - ey) // 2 + 3, (xs.max() - ex) // 2 + 3), np.bool_)
    for i in range(ys.shape[0]):
        if (ys[i] - ey) & 1 == 0 and (xs[i] - ex) & 1 == 0:
            cmask[(ys[i] - ey) >> 1, (xs[i] - ex) >> 1] = True
    cidx, cys, cxs, cstarts = _number_cells(cmask, True, 0)
    return cidx, cys, cxs, cstarts, ey, ex


@_jit
def _levels(region):
    """All levels for ``region`` (H, W) bool: lists of index grids, ``ys``, ``xs``, colour
    ``starts`` and the ``origins`` (L - 1, 2) of each coarse level in the one below. Level 0
    is ``region`` padded by one pixel (its coordinates are those of ``region`` plus 1)."""
    idx, ys, xs, starts = _number_cells(region, False, 1)
    l_idx, l_ys, l_xs, l_starts = [idx], [ys], [xs], [starts]
    origins = np.zeros((_MAX_LEVELS, 2), np.int64)
    while ys.shape[0] > _N_DENSE and len(l_ys) < _MAX_LEVELS:
        idx, ys, xs, starts, ey, ex = _coarse_cells(ys, xs)
        origins[len(l_ys) - 1, 0] = ey
        origins[len(l_ys) - 1, 1] = ex
        l_idx.append(idx)
        l_ys.append(ys)
        l_xs.append(xs)
        l_starts.append(starts)
    return l_idx, l_ys, l_xs, l_starts, origins[:len(l_ys) - 1]


# --------------------------------------------------------------------------------------------
# Operators: the fine 5-point matrix, interpolation and Galerkin coarse matrices. Helpers
# called inside loops take scalars only (numba reference-counts array arguments).
# --------------------------------------------------------------------------------------------
@_jit
def _fine_neighbours(idx, ys, xs, nbr):
    """Fill ``nbr`` (n, 4) uint32, the 5-point neighbours (left, right, up, down) of the fine
    cells, with ``n`` (the sentinel row) where the neighbour is a Dirichlet pixel."""
    n = ys.shape[0]
    for i in range(n):
        for d in range(4):
            j = idx[ys[i] + _FINE_NBR[d, 0], xs[i] + _FINE_NBR[d, 1]]
            nbr[i, d] = j if j >= 0 else n


@_jit
def _interp_1d(c):
    """Linear interpolation along one axis: fine coordinate ``c`` (relative to the coarse
    origin) takes ``count`` coarse coordinates ``c // 2 + k`` (``k < count``), each with
    ``weight``: even ``c`` -> ``(1, 1.0)``, odd ``c`` -> ``(2, 0.5)``."""
    if c & 1 == 0:
        return 1, 1.0
    return 2, 0.5


@_jit
def _interpolation(ys, xs, cidx, nc, ey, ex, pidx, pw):
    """Fill the bilinear prolongation rows of a level, ``(P e)_i = pw[i] * sum_k
    e[pidx[i, k]]``: ``pidx`` (n, 4) uint32 coarse cells, the coarse sentinel ``nc`` where a
    cell is absent (it contributes zero: the Dirichlet boundary), ``pw`` (n,) the weight
    (1, 1/2 or 1/4: it only depends on the parity of the cell)."""
    for i in range(ys.shape[0]):
        cy, cx = ys[i] - ey, xs[i] - ex
        ny, wy = _interp_1d(cy)
        nx, wx = _interp_1d(cx)
        pw[i] = wy * wx
        k = 0
        for ky in range(ny):
            for kx in range(nx):
                j = cidx[(cy >> 1) + ky, (cx >> 1) + kx]
                if j >= 0:
                    pidx[i, k] = j
                    k += 1
        for kk in range(k, 4):
            pidx[i, kk] = nc


@_jit
def _galerkin_interior(stencil):
    """``P^T A P`` stencil (3, 3) on an unbounded grid where every row of ``A`` is the
    constant ``stencil`` (3, 3)."""
    out = np.zeros((3, 3))
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            p = (1.0 if dy == 0 else 0.5) * (1.0 if dx == 0 else 0.5)
            for s in range(9):
                jy, jx = 2 + dy + _SLOT[s, 0], 2 + dx + _SLOT[s, 1]  # coarse cell at (1, 1)
                pa = p * stencil[_SLOT[s, 0] + 1, _SLOT[s, 1] + 1]
                ny, wy = _interp_1d(jy)
                nx, wx = _interp_1d(jx)
                for ky in range(ny):
                    for kx in range(nx):
                        out[(jy >> 1) + ky, (jx >> 1) + kx] += pa * wy * wx
    return out


@_jit
def _coarse_matrix(fidx, fine5, fa, finterior, fstencil, cidx, cys, cxs, ey, ex, ca):
    """Fill ``ca`` (nc, 9) with the Galerkin coarse matrix ``P^T A P`` (9-point coefficients).

    ``fine5``: the fine level is the 5-point level (coefficients 4 / -1); otherwise ``fa``
    (n, 9) holds its 9-point coefficients (0 where there is no cell). A coarse cell whose
    5x5 fine window holds only "interior" fine cells (``finterior`` (h, w) bool: their row
    of ``A`` is the constant ``fstencil`` (3, 3), all neighbours present) gets the constant
    Galerkin stencil; the other rows are gathered from the fine cells around the coarse
    cell. Returns the coarse interior flags (hc, wc) bool and interior stencil (3, 3)."""
    cinterior = np.zeros(cidx.shape, np.bool_)
    cstencil = _galerkin_interior(fstencil)
    for ci in range(cys.shape[0]):
        cy, cx = cys[ci], cxs[ci]
        y, x = 2 * cy + ey, 2 * cx + ex
        for s in range(9):
            ca[ci, s] = 0.0
        inside = True
        for wy in range(y - 2, y + 3):
            for wx in range(x - 2, x + 3):
                inside &= finterior[wy, wx]
        if inside:
            cinterior[cy, cx] = True
            for s in range(9):
                ca[ci, s] = cstencil[_SLOT[s, 0] + 1, _SLOT[s, 1] + 1]
            continue
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                i = fidx[y + dy, x + dx]
                if i < 0:
                    continue
                p = (1.0 if dy == 0 else 0.5) * (1.0 if dx == 0 else 0.5)
                for s in range(9):  # A[i, j] for the cells j around fine cell i
                    if fine5:
                        if s == 4:
                            a = 4.0
                        elif s & 1 and fidx[y + dy + _SLOT[s, 0], x + dx + _SLOT[s, 1]] >= 0:
                            a = -1.0
                        else:
                            continue
                    else:
                        a = fa[i, s]
                        if a == 0.0:
                            continue
                    jy = y + dy + _SLOT[s, 0] - ey  # cell j, relative to the coarse origin
                    jx = x + dx + _SLOT[s, 1] - ex
                    ny, wy = _interp_1d(jy)
                    nx, wx = _interp_1d(jx)
                    for ky in range(ny):
                        for kx in range(nx):
                            ty, tx = (jy >> 1) + ky, (jx >> 1) + kx
                            if cidx[ty, tx] >= 0:
                                ca[ci, (ty - cy + 1) * 3 + (tx - cx + 1)] += p * a * wy * wx
    return cinterior, cstencil


@_jit
def _stencil_tables(idx, ys, xs, ca, nbr, a, inv_d):
    """Split 9-point coefficients ``ca`` (n, 9) into ``nbr`` (n, 8) uint32, the neighbour
    cells of slots ``_NBR8`` (``n``, the sentinel row, where there is none), ``a`` (n, 8)
    their coefficients and ``inv_d`` (n,) the inverse diagonal."""
    n = ys.shape[0]
    for i in range(n):
        inv_d[i] = 1.0 / ca[i, 4]
        for k in range(8):
            s = _NBR8[k]
            j = idx[ys[i] + _SLOT[s, 0], xs[i] + _SLOT[s, 1]]
            nbr[i, k] = j if j >= 0 else n
            a[i, k] = ca[i, s] if j >= 0 else 0.0


@_jit
def _five_point_coefficients(idx, ys, xs):
    """The 5-point matrix as 9-point coefficients (n, 9): 4 at the centre, -1 towards the
    4-neighbours in Omega."""
    ca = np.zeros((ys.shape[0], 9))
    for i in range(ys.shape[0]):
        ca[i, 4] = 4.0
        for s in (1, 3, 5, 7):
            if idx[ys[i] + _SLOT[s, 0], xs[i] + _SLOT[s, 1]] >= 0:
                ca[i, s] = -1.0
    return ca


@_jit
def _cholesky(idx, ys, xs, ca):
    """Dense lower Cholesky factor (n, n) of the 9-point matrix ``ca`` (n, 9) of a level."""
    n = ys.shape[0]
    m = np.zeros((n, n))
    for i in range(n):
        for s in range(9):
            j = idx[ys[i] + _SLOT[s, 0], xs[i] + _SLOT[s, 1]]
            if j >= 0:
                m[i, j] = ca[i, s]
    for j in range(n):
        acc = m[j, j]
        for k in range(j):
            acc -= m[j, k] * m[j, k]
        m[j, j] = np.sqrt(acc)
        for i in range(j + 1, n):
            acc = m[i, j]
            for k in range(j):
                acc -= m[i, k] * m[j, k]
            m[i, j] = acc / m[j, j]
        for i in range(j):
            m[i, j] = 0.0
    return m


# --------------------------------------------------------------------------------------------
# Multigrid kernels. Vectors are (rows, 3) float64: three channels, written out by hand in the
# loops (much faster in numba than an inner channel loop), with a zero sentinel row per level.
# Index tables are uint32: unsigned indices spare numba's negative-index wrap-around code.
# --------------------------------------------------------------------------------------------
@_jit
def _gs5(nbr, b, x, lo, hi):
    """Gauss-Seidel on fine cells ``lo:hi`` of one colour: ``x_i = (b_i + sum_nbr x) / 4``."""
    for i in range(lo, hi):
        j0, j1, j2, j3 = nbr[i, 0], nbr[i, 1], nbr[i, 2], nbr[i, 3]
        x[i, 0] = (b[i, 0] + x[j0, 0] + x[j1, 0] + x[j2, 0] + x[j3, 0]) * 0.25
        x[i, 1] = (b[i, 1] + x[j0, 1] + x[j1, 1] + x[j2, 1] + x[j3, 1]) * 0.25
        x[i, 2] = (b[i, 2] + x[j0, 2] + x[j1, 2] + x[j2, 2] + x[j3, 2]) * 0.25


@_jit
def _gs9(nbr, a, inv_d, b, x, lo, hi):
    """Gauss-Seidel on 9-point cells ``lo:hi`` of one colour:
    ``x_i = (b_i - sum_k a_ik x_nbr[i, k]) * inv_d_i``."""
    for i in range(lo, hi):
        r0, r1, r2 = b[i, 0], b[i, 1], b[i, 2]
        for k in range(8):
            j, w = nbr[i, k], a[i, k]
            r0 -= w * x[j, 0]
            r1 -= w * x[j, 1]
            r2 -= w * x[j, 2]
        x[i, 0], x[i, 1], x[i, 2] = r0 * inv_d[i], r1 * inv_d[i], r2 * inv_d[i]


@_jit
def _restrict5(nbr, b, x, n_red, pidx, pw, bc):
    """``bc = P^T (b - A x)`` on the 5-point level right after a black half sweep (the black
    residual is zero, so only red cells ``0:n_red`` contribute). Overwrites ``bc``."""
    bc[:] = 0.0
    sentinel = bc.shape[0] - 1
    for i in range(n_red):
        j0, j1, j2, j3 = nbr[i, 0], nbr[i, 1], nbr[i, 2], nbr[i, 3]
        w = pw[i]
        r0 = w * (b[i, 0] - 4.0 * x[i, 0] + x[j0, 0] + x[j1, 0] + x[j2, 0] + x[j3, 0])
        r1 = w * (b[i, 1] - 4.0 * x[i, 1] + x[j0, 1] + x[j1, 1] + x[j2, 1] + x[j3, 1])
        r2 = w * (b[i, 2] - 4.0 * x[i, 2] + x[j0, 2] + x[j1, 2] + x[j2, 2] + x[j3, 2])
        for k in range(4):
            p = pidx[i, k]
            if p == sentinel:  # (absent parents are last)
                break
            bc[p, 0] += r0
            bc[p, 1] += r1
            bc[p, 2] += r2


@_jit
def _restrict9(nbr, a, inv_d, b, x, hi, pidx, pw, bc):
    """``bc = P^T (b - A x)`` on a 9-point level, the residual taken on cells ``0:hi`` (the
    others have a zero residual). Overwrites ``bc``."""
    bc[:] = 0.0
    sentinel = bc.shape[0] - 1
    for i in range(hi):
        d = 1.0 / inv_d[i]
        r0, r1, r2 = b[i, 0] - d * x[i, 0], b[i, 1] - d * x[i, 1], b[i, 2] - d * x[i, 2]
        for k in range(8):
            j, w = nbr[i, k], a[i, k]
            r0 -= w * x[j, 0]
            r1 -= w * x[j, 1]
            r2 -= w * x[j, 2]
        w = pw[i]
        for k in range(4):
            p = pidx[i, k]
            if p == sentinel:  # (absent parents are last)
                break
            bc[p, 0] += w * r0
            bc[p, 1] += w * r1
            bc[p, 2] += w * r2


@_jit
def _prolong(pidx, pw, xc, x, hi):
    """``x += P xc`` on cells ``0:hi`` (bilinear interpolation rows ``pidx``, ``pw``)."""
    for i in range(hi):
        p0, p1, p2, p3 = pidx[i, 0], pidx[i, 1], pidx[i, 2], pidx[i, 3]
        w = pw[i]
        x[i, 0] += w * (xc[p0, 0] + xc[p1, 0] + xc[p2, 0] + xc[p3, 0])
        x[i, 1] += w * (xc[p0, 1] + xc[p1, 1] + xc[p2, 1] + xc[p3, 1])
        x[i, 2] += w * (xc[p0, 2] + xc[p1, 2] + xc[p2, 2] + xc[p3, 2])


@_jit
def _dense_solve(chol, b, x):
    """``x = (L L^T)^-1 b`` on the coarsest level; ``b``, ``x`` (m + 1, 3)."""
    m = chol.shape[0]
    for c in range(3):
        for i in range(m):
            acc = b[i, c]
            for k in range(i):
                acc -= chol[i, k] * x[k, c]
            x[i, c] = acc / chol[i, i]
        for i in range(m - 1, -1, -1):
            acc = x[i, c]
            for k in range(i + 1, m):
                acc -= chol[k, i] * x[k, c]
            x[i, c] = acc / chol[i, i]
        x[m, c] = 0.0


@_jit
def _vcycle(mg, r, z, xb, bb):
    """One symmetric V-cycle for ``A z = r`` from ``z = 0``; ``r``, ``z`` (n0 + 1, 3) on the
    fine level, ``xb``, ``bb`` (N, 3) work arrays for all levels (rows of level 0 unused).

    A Gauss-Seidel half sweep overwrites its colour without reading it, so pre-smoothing
    starts from ``x = b / diag`` on the first colour, and the coarse correction is only
    interpolated to the colours that post-smoothing does not overwrite first."""
    off, starts, nbr5, nbr8, a8, inv_d, pidx, pw, chol = mg
    n_lev = off.shape[0] - 1
    if n_lev == 1:
        _dense_solve(chol, r, z)
        return
    n0, n_red, c0 = off[1] - 1, starts[0, 1], off[1]  # nbr8, a8 start at level 1
    for i in range(n_red):
        z[i, 0], z[i, 1], z[i, 2] = r[i, 0] * 0.25, r[i, 1] * 0.25, r[i, 2] * 0.25
    _gs5(nbr5, r, z, n_red, n0)
    _restrict5(nbr5, r, z, n_red, pidx, pw, bb[off[1]:off[2]])
    for lev in range(1, n_lev - 1):
        o, e, st = off[lev], off[lev + 1], starts[lev]
        b, x, d = bb[o:e], xb[o:e], inv_d[o:e]
        for i in range(st[1]):
            x[i, 0], x[i, 1], x[i, 2] = b[i, 0] * d[i], b[i, 1] * d[i], b[i, 2] * d[i]
        x[st[1]:] = 0.0
        for col in range(1, 4):
            _gs9(nbr8[o - c0:e - c0], a8[o - c0:e - c0], d, b, x, st[col], st[col + 1])
        _restrict9(nbr8[o - c0:e - c0], a8[o - c0:e - c0], d, b, x, st[3], pidx[o:e], pw[o:e],
                   bb[e:off[lev + 2]])
    _dense_solve(chol, bb[off[n_lev - 1]:], xb[off[n_lev - 1]:])
    for lev in range(n_lev - 2, 0, -1):
        o, e, st = off[lev], off[lev + 1], starts[lev]
        b, x, d = bb[o:e], xb[o:e], inv_d[o:e]
        _prolong(pidx[o:e], pw[o:e], xb[e:off[lev + 2]], x, st[3])
        for col in range(3, -1, -1):
            _gs9(nbr8[o - c0:e - c0], a8[o - c0:e - c0], d, b, x, st[col], st[col + 1])
    _prolong(pidx, pw, xb[off[1]:off[2]], z, n_red)
    _gs5(nbr5, r, z, n_red, n0)
    _gs5(nbr5, r, z, 0, n_red)


@_jit
def _error_and_dots(r, z, n):
    """``max |z|`` over cells ``0:n`` and the per-channel dots ``r . z`` (3,). Two cells per
    step with separate accumulators (a single running sum is latency-bound)."""
    e0, e1 = 0.0, 0.0
    d = np.zeros(6)
    for i in range(0, n - 1, 2):
        e0 = max(e0, abs(z[i, 0]), abs(z[i, 1]), abs(z[i, 2]))
        e1 = max(e1, abs(z[i + 1, 0]), abs(z[i + 1, 1]), abs(z[i + 1, 2]))
        d[0] += r[i, 0] * z[i, 0]
        d[1] += r[i, 1] * z[i, 1]
        d[2] += r[i, 2] * z[i, 2]
        d[3] += r[i + 1, 0] * z[i + 1, 0]
        d[4] += r[i + 1, 1] * z[i + 1, 1]
        d[5] += r[i + 1, 2] * z[i + 1, 2]
    if n & 1:
        i = n - 1
        e0 = max(e0, abs(z[i, 0]), abs(z[i, 1]), abs(z[i, 2]))
        for c in range(3):
            d[c] += r[i, c] * z[i, c]
    return max(e0, e1), d[:3] + d[3:]


@_jit
def _matvec_dots(nbr, p, q):
    """``q = A p`` on the fine level (``nbr`` (n, 4)) and the per-channel dots ``p . q``."""
    d0, d1, d2 = 0.0, 0.0, 0.0
    for i in range(nbr.shape[0]):
        j0, j1, j2, j3 = nbr[i, 0], nbr[i, 1], nbr[i, 2], nbr[i, 3]
        q0 = 4.0 * p[i, 0] - p[j0, 0] - p[j1, 0] - p[j2, 0] - p[j3, 0]
        q1 = 4.0 * p[i, 1] - p[j0, 1] - p[j1, 1] - p[j2, 1] - p[j3, 1]
        q2 = 4.0 * p[i, 2] - p[j0, 2] - p[j1, 2] - p[j2, 2] - p[j3, 2]
        q[i, 0], q[i, 1], q[i, 2] = q0, q1, q2
        d0 += p[i, 0] * q0
        d1 += p[i, 1] * q1
        d2 += p[i, 2] * q2
    return np.array([d0, d1, d2])


@_jit
def _axpy3(y, a, x, n):
    """``y[i, c] += a[c] * x[i, c]`` for cells ``0:n`` (on the flat arrays: vectorised)."""
    yf, xf = y.ravel(), x.ravel()
    a0, a1, a2 = a[0], a[1], a[2]
    for i in range(n):
        k = 3 * i
        yf[k] += a0 * xf[k]
        yf[k + 1] += a1 * xf[k + 1]
        yf[k + 2] += a2 * xf[k + 2]


@_jit
def _xpay3(y, a, x, n):
    """``y[i, c] = x[i, c] + a[c] * y[i, c]`` for cells ``0:n``."""
    yf, xf = y.ravel(), x.ravel()
    a0, a1, a2 = a[0], a[1], a[2]
    for i in range(n):
        k = 3 * i
        yf[k] = xf[k] + a0 * yf[k]
        yf[k + 1] = xf[k + 1] + a1 * yf[k + 1]
        yf[k + 2] = xf[k + 2] + a2 * yf[k + 2]


@_jit
def _pcg(mg, r, x, z, p, xb, bb, tol, max_iter):
    """Multigrid-preconditioned CG for ``A x = b``, one recurrence per channel.

    ``r`` (n0 + 1, 3) holds ``b`` on entry, ``x`` the initial guess; ``x`` is updated in
    place. ``z``, ``p`` (n0 + 1, 3) and ``xb``, ``bb`` (N, 3) are work arrays; all sentinel
    rows must be zero. Stops when ``max |M^-1 r| <= tol`` (then adds ``M^-1 r``) or after
    ``max_iter`` iterations. Returns the number of CG iterations."""
    off, nbr = mg[0], mg[2]
    n = off[1] - 1
    for i in range(n):
        j0, j1, j2, j3 = nbr[i, 0], nbr[i, 1], nbr[i, 2], nbr[i, 3]
        for c in range(3):
            r[i, c] -= 4.0 * x[i, c] - x[j0, c] - x[j1, c] - x[j2, c] - x[j3, c]
    ones = np.ones(3)
    rz = np.zeros(3)
    beta = np.zeros(3)
    alpha = np.zeros(3)
    it = 0
    while True:
        _vcycle(mg, r, z, xb, bb)
        err, rz_new = _error_and_dots(r, z, n)
        if err <= tol or it >= max_iter:
            _axpy3(x, ones, z, n)
            return it
        for c in range(3):  # 0 on the first iteration or for a zero residual
            beta[c] = rz_new[c] / rz[c] if it > 0 and rz[c] > 0.0 else 0.0
        rz[:] = rz_new
        _xpay3(p, beta, z, n)  # p = z + beta p
        pq = _matvec_dots(nbr, p, z)  # z = A p
        for c in range(3):
            alpha[c] = rz[c] / pq[c] if pq[c] > 0.0 else 0.0
        _axpy3(x, alpha, p, n)
        _axpy3(r, -alpha, z, n)
        it += 1


# --------------------------------------------------------------------------------------------
# Right-hand side and driver
# --------------------------------------------------------------------------------------------
@_jit
def _mixed_guidance(sp, sq, tp, tq):
    """Mixed guidance ``v_pq`` of one edge: the source difference ``sp - sq`` if it is
    larger (in magnitude) than the target difference ``tp - tq``, else the latter."""
    return sp - sq if abs(sp - sq) > abs(tp - tq) else tp - tq


@_jit
def _rhs(target, source, idx, mixed, c0, b, x0):
    """Fill ``b`` (n + 1, 3) with the right-hand side of Eq. 7 and ``x0`` with the initial
    guess for channels ``c0 : c0 + 3`` of ``target``, ``source`` (H, W, C) (zero for channels
    past C); ``idx`` (H + 2, W + 2) is the fine index grid. ``x0`` is the source (normal:
    then ``b - A x0`` is non-zero only next to the boundary) or the target (mixed). Raster
    order, so that the images are read sequentially."""
    b[:] = 0.0
    x0[:] = 0.0
    h, w, n_ch = target.shape
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            i = idx[y + 1, x + 1]
            if i < 0:
                continue
            for k in range(3):
                c = c0 + k
                if c >= n_ch:
                    break
                sp = float(source[y, x, c])
                if mixed:
                    tp = float(target[y, x, c])
                    acc = (_mixed_guidance(sp, float(source[y, x - 1, c]),
                                           tp, float(target[y, x - 1, c]))
                           + _mixed_guidance(sp, float(source[y, x + 1, c]),
                                             tp, float(target[y, x + 1, c]))
                           + _mixed_guidance(sp, float(source[y - 1, x, c]),
                                             tp, float(target[y - 1, x, c]))
                           + _mixed_guidance(sp, float(source[y + 1, x, c]),
                                             tp, float(target[y + 1, x, c])))
                    x0[i, k] = tp
                else:
                    acc = (4.0 * sp - float(source[y, x - 1, c]) - float(source[y, x + 1, c])
                           - float(source[y - 1, x, c]) - float(source[y + 1, x, c]))
                    x0[i, k] = sp
                if idx[y + 1, x] < 0:  # Dirichlet neighbours
                    acc += float(target[y, x - 1, c])
                if idx[y + 1, x + 2] < 0:
                    acc += float(target[y, x + 1, c])
                if idx[y, x + 1] < 0:
                    acc += float(target[y - 1, x, c])
                if idx[y + 2, x + 1] < 0:
                    acc += float(target[y + 1, x, c])
                b[i, k] = acc


@_jit
def _carve(buf, pos, rows, cols):
    """A (rows, cols) view of the flat scratch ``buf`` at ``pos``, and the next position."""
    return buf[pos:pos + rows * cols].reshape((rows, cols)), pos + rows * cols


@_jit
def _scratch_sizes(l_ys):
    """Level offsets ``off`` (L + 1,) (level ``l`` owns rows ``off[l] : off[l + 1]``, the
    last one its sentinel) and the float64 and uint32 scratch sizes that
    ``_setup`` needs for levels with cells ``l_ys``."""
    off = np.zeros(len(l_ys) + 1, np.int64)
    for lev in range(len(l_ys)):
        off[lev + 1] = off[lev] + l_ys[lev].shape[0] + 1
    n0, big, coarse = off[1] - 1, off[-1], off[-1] - off[1]
    return off, 17 * coarse + 8 * big + 12 * (n0 + 1), 4 * n0 + 8 * coarse + 4 * big


@_jit
def _multigrid(l_idx, l_ys, l_xs, l_starts, origins, off, fbuf, ibuf):
    """Operators of all levels (from ``_levels``), in scratch carved from ``fbuf`` (float64)
    and ``ibuf`` (uint32). Returns the tuple ``mg`` used by ``_vcycle`` and ``_pcg``:
    ``(off (L + 1,), starts (L, 5), nbr5 (n0, 4), nbr8 (N - off[1], 8), a8 (N - off[1], 8),
    inv_d (N,), pidx (N, 4), pw (N,), chol (m, m))``: fine neighbours; 9-point neighbours and
    coefficients of the coarse levels (row ``off[l] - off[1] + i`` for cell ``i`` of level
    ``l``); inverse diagonals; prolongation rows of every level but the last; Cholesky factor
    of the coarsest level. The float64 scratch used ends at ``17 (N - off[1]) + 2 N``."""
    n_lev = len(l_ys)
    n0, big, coarse = off[1] - 1, off[-1], off[-1] - off[1]
    nbr5, pos = _carve(ibuf, 0, n0, 4)
    nbr8, pos = _carve(ibuf, pos, coarse, 8)
    pidx, pos = _carve(ibuf, pos, big, 4)
    a8, pos = _carve(fbuf, 0, coarse, 8)
    ca, pos = _carve(fbuf, pos, coarse, 9)
    inv_d, pw = fbuf[pos:pos + big], fbuf[pos + big:pos + 2 * big]
    starts = np.empty((n_lev, 5), np.int64)
    for lev in range(n_lev):
        starts[lev] = l_starts[lev]

    _fine_neighbours(l_idx[0], l_ys[0], l_xs[0], nbr5)
    interior = l_idx[0] >= 0
    stencil = _FINE_STENCIL.copy()
    for lev in range(n_lev - 1):
        o, o1, c1 = off[lev], off[lev + 1], off[lev + 1] - off[1]
        m, mc = l_ys[lev].shape[0], l_ys[lev + 1].shape[0]
        ey, ex = origins[lev, 0], origins[lev, 1]
        _interpolation(l_ys[lev], l_xs[lev], l_idx[lev + 1], mc, ey, ex, pidx[o:o + m],
                       pw[o:o + m])
        fa = ca[o - off[1]:o - off[1] + m] if lev > 0 else ca[:0]
        interior, stencil = _coarse_matrix(l_idx[lev], lev == 0, fa, interior, stencil,
                                           l_idx[lev + 1], l_ys[lev + 1], l_xs[lev + 1], ey, ex,
                                           ca[c1:c1 + mc])
        _stencil_tables(l_idx[lev + 1], l_ys[lev + 1], l_xs[lev + 1], ca[c1:c1 + mc],
                        nbr8[c1:c1 + mc], a8[c1:c1 + mc], inv_d[o1:o1 + mc])
    last = n_lev - 1
    if n_lev == 1:
        cl = _five_point_coefficients(l_idx[0], l_ys[0], l_xs[0])
    else:
        cl = ca[off[last] - off[1]:big - off[1] - 1]
    chol = _cholesky(l_idx[last], l_ys[last], l_xs[last], cl)
    return off, starts, nbr5, nbr8, a8, inv_d, pidx, pw, chol


@_jit
def _setup(region, fbuf, ibuf):
    """Everything that does not depend on the image values, for ``region`` (H, W) bool.

    ``fbuf`` (float64) and ``ibuf`` (uint32) are flat scratch buffers; if they are too small,
    larger ones are allocated (and returned, to be kept for the next call). Returns ``(mg,
    idx, ys, xs, work, fbuf, ibuf)``: the multigrid tuple of ``_multigrid``, the fine index
    grid (H + 2, W + 2) and cell coordinates (n,) (padded by 1), and the work arrays ``(r, x,
    z, p, xb, bb)`` of ``_pcg`` (zeroed)."""
    l_idx, l_ys, l_xs, l_starts, origins = _levels(region)
    off, need_f, need_i = _scratch_sizes(l_ys)
    if fbuf.shape[0] < need_f:
        fbuf = np.empty(need_f + need_f // 4)
    if ibuf.shape[0] < need_i:
        ibuf = np.empty(need_i + need_i // 4, np.uint32)
    mg = _multigrid(l_idx, l_ys, l_xs, l_starts, origins, off, fbuf, ibuf)
    n0, big, coarse = off[1] - 1, off[-1], off[-1] - off[1]
    pos = 17 * coarse + 2 * big
    xb, pos = _carve(fbuf, pos, big, 3)
    bb, pos = _carve(fbuf, pos, big, 3)
    r, pos = _carve(fbuf, pos, n0 + 1, 3)
    x, pos = _carve(fbuf, pos, n0 + 1, 3)
    z, pos = _carve(fbuf, pos, n0 + 1, 3)
    p, pos = _carve(fbuf, pos, n0 + 1, 3)
    xb[:] = 0.0
    z[:] = 0.0
    p[:] = 0.0
    return mg, l_idx[0], l_ys[0], l_xs[0], (r, x, z, p, xb, bb), fbuf, ibuf


@_jit
def _write(x, ys, xs, c0, out):
    """Copy the solution ``x`` (n + 1, 3) of channels ``c0 : c0 + 3`` into ``out`` (H, W, C)
    float32 at the cells ``ys - 1``, ``xs - 1``."""
    for k in range(min(3, out.shape[2] - c0)):
        for i in range(ys.shape[0]):
            out[ys[i] - 1, xs[i] - 1, c0 + k] = x[i, k]


def _blend(target, source, region, mixed, tol=_TOL, max_iter=_MAX_ITER):
    """Solve Eq. 7 for ``target``, ``source`` (H, W, C) and ``region`` (H, W) bool (validated,
    C-contiguous). Returns the float32 result (H, W, C) and the largest number of CG
    iterations over the blocks of three channels."""
    fbuf = getattr(_scratch, "f", None)
    ibuf = getattr(_scratch, "i", None)
    if fbuf is None:
        fbuf, ibuf = np.empty(0), np.empty(0, np.uint32)
    mg, idx, ys, xs, work, _scratch.f, _scratch.i = _setup(region, fbuf, ibuf)
    r, x, z, p, xb, bb = work
    out = target.astype(np.float32)  # a copy, also for float32 input
    iterations = 0
    for c0 in range(0, target.shape[2], 3):
        if c0:
            z[:] = 0.0
            p[:] = 0.0
        _rhs(target, source, idx, mixed, c0, r, x)
        iterations = max(iterations, _pcg(mg, r, x, z, p, xb, bb, tol, max_iter))
        _write(x, ys, xs, c0, out)
    return out, iterations


def poisson_blend(target, source, region, mode="normal"):
    """Seamlessly blend ``source`` into ``target`` on ``region`` by solving Poisson's equation.

    Solves, for every pixel ``p`` of ``region`` (Omega) and every channel, the discrete
    Poisson equation of Perez et al. (2003, Eq. 7)::

        4 f_p - sum_{q in N_p & Omega} f_q = sum_{q in N_p, q not in Omega} t_q
                                             + sum_{q in N_p} v_pq

    with ``N_p`` the 4-neighbours of ``p``, Dirichlet values from ``target`` (``t``) outside
    Omega and the guidance field ``v`` chosen by ``mode``.

    Parameters
    ----------
    target : (H, W) or (H, W, C) ndarray of any real dtype (integer or floating)
        Image to blend into (H, W >= 3, C >= 1); its values outside ``region`` are the
        boundary condition. Any finite value range (typically 0-255).
    source : ndarray of any real dtype, same shape as ``target``
        The pattern, already placed in target coordinates (only its values on ``region``
        and next to it matter).
    region : (H, W) ndarray of bool (or of integers 0 / 1)
        Omega, the pixels solved for. Must be non-empty and must not touch the 1-pixel
        border of the array (so every pixel of Omega has 4 neighbours). May have several
        connected components, holes, 1-pixel-wide parts.
    mode : {"normal", "mixed"}, optional
        ``"normal"``: ``v_pq = s_p - s_q`` (source gradients). ``"mixed"``: per edge and
        channel, ``v_pq = s_p - s_q`` if ``|s_p - s_q| > |t_p - t_q|`` else ``t_p - t_q``.

    Returns
    -------
    out : ndarray of float32, same shape as ``target``
        Exactly ``target.astype(np.float32)`` outside ``region``, the solution inside. Not
        clipped: values may leave the input range (the caller clips).

    Raises
    ------
    ValueError
        If an argument has the wrong shape, dtype or value, naming that argument.

    Notes
    -----
    Multigrid-preconditioned conjugate gradients (see the module docstring), iterated until
    the multigrid estimate of the error is below ``1e-3`` (data units) in every pixel; on
    0-255 data the result then agrees with a direct sparse solve to within 4e-4 (measured).
    Inputs are not modified. Runs on one thread without the GIL, numba-compiled (the
    compiled code is cached on disk; the first call in a fresh environment compiles for
    about 15 s). Each thread keeps scratch buffers of about 300 bytes per pixel of the
    largest region it has blended.

    Examples
    --------
    A source that differs from the target by a constant has the target's gradients, so
    normal blending gives the target back:

    >>> target = np.arange(64, dtype=np.uint8).reshape(8, 8)
    >>> region = np.zeros((8, 8), bool)
    >>> region[2:6, 3:7] = True
    >>> out = poisson_blend(target, target + 50, region)
    >>> out.dtype, bool(np.abs(out - target).max() < 1e-3)
    (dtype('float32'), True)
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}, got {mode!r}")
    target = _check_image("target", target)
    source = _check_image("source", source)
    if source.shape != target.shape:
        raise ValueError(
            f"`source` must have the same shape as `target` {target.shape}, got {source.shape}"
        )
    region = _check_region(region, target.shape[:2])

    shape3 = target.shape[:2] + (-1,)
    if target.dtype != source.dtype or target.dtype not in _DIRECT_DTYPES:
        target, source = target.astype(np.float64), source.astype(np.float64)
    t3 = np.ascontiguousarray(target.reshape(shape3))
    s3 = np.ascontiguousarray(source.reshape(shape3))
    out, _ = _blend(t3, s3, region, mode == "mixed")
    return out.reshape(target.shape)
