"""Tests of ``cai.engine.poisson.poisson_blend`` against a brute-force sparse solve of Eq. 7."""
from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cai.engine.poisson import poisson_blend

NEIGHBOURS = ((0, -1), (0, 1), (-1, 0), (1, 0))


# --------------------------------------------------------------------------------------------
# Reference: Eq. 7 of Perez et al. (2003) assembled from its definition, solved by spsolve
# --------------------------------------------------------------------------------------------
def reference(target, source, region, mode):
    t = np.asarray(target, np.float64)
    s = np.asarray(source, np.float64)
    flat = t.ndim == 2
    if flat:
        t, s = t[..., None], s[..., None]
    ys, xs = np.nonzero(region)
    n = len(ys)
    index = np.full(region.shape, -1)
    index[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    b = np.zeros((n, t.shape[2]))
    for i, (y, x) in enumerate(zip(ys, xs)):
        rows.append(i)
        cols.append(i)
        vals.append(float(len(NEIGHBOURS)))  # |N_p|
        for dy, dx in NEIGHBOURS:
            qy, qx = y + dy, x + dx
            ds, dt = s[y, x] - s[qy, qx], t[y, x] - t[qy, qx]
            b[i] += ds if mode == "normal" else np.where(np.abs(ds) > np.abs(dt), ds, dt)
            if region[qy, qx]:
                rows.append(i)
                cols.append(index[qy, qx])
                vals.append(-1.0)
            else:  # q on the boundary: Dirichlet value from the target
                b[i] += t[qy, qx]
    a = sp.csc_matrix((vals, (rows, cols)), shape=(n, n))
    f = np.column_stack([spla.spsolve(a, b[:, c]) for c in range(b.shape[1])])
    out = t.copy()
    out[ys, xs] = f
    return out[..., 0] if flat else out


# --------------------------------------------------------------------------------------------
# Random problems
# --------------------------------------------------------------------------------------------
def blobs(rng, shape=(48, 56), count=3):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    region = np.zeros(shape, bool)
    for _ in range(count):
        cy, cx = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8)
        ry, rx = rng.uniform(3, 14, 2)
        region |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return _clear_border(region)


def thin_lines(rng, shape=(50, 60)):
    region = np.zeros(shape, bool)
    region[13, 5:50] = True  # 1 px wide, odd row
    region[20:45, 31] = True  # vertical, odd column
    t = np.linspace(0, 1, 200)
    y0, x0, y1, x1 = rng.integers(3, 47), 4, rng.integers(3, 47), 55
    line_y, line_x = np.round(y0 + t * (y1 - y0)), np.round(x0 + t * (x1 - x0))
    region[line_y.astype(int), line_x.astype(int)] = True  # a diagonal line
    return _clear_border(region)


def components(rng, shape=(40, 40)):
    region = np.zeros(shape, bool)
    region[3:9, 4:12] = True
    region[20:33, 25:37] = True
    region[30, 5] = region[35, 35] = region[15, 20] = True  # isolated pixels
    region[10:14, 30] = True
    return region


def single_pixel(rng, shape=(7, 9)):
    region = np.zeros(shape, bool)
    region[3, 4] = True
    return region


def _clear_border(region):
    region[[0, -1]] = False
    region[:, [0, -1]] = False
    return region


REGIONS = {"blobs": blobs, "thin_lines": thin_lines, "components": components,
           "single_pixel": single_pixel}


def images(rng, shape, channels, dtype):
    full = shape + (channels,) if channels else shape
    if np.issubdtype(dtype, np.integer):
        return (rng.integers(0, 256, full).astype(dtype), rng.integers(0, 256, full).astype(dtype))
    return rng.uniform(0, 255, full).astype(dtype), rng.uniform(0, 255, full).astype(dtype)


def laplacian(f):
    """4 f_p - sum of the 4 neighbours, on the interior of the array (H - 2, W - 2, ...)."""
    return (4 * f[1:-1, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:] - f[:-2, 1:-1] - f[2:, 1:-1])


def full_interior(region):
    """Pixels of ``region`` whose 4 neighbours are all in ``region`` (interior coordinates)."""
    r = region
    return r[1:-1, 1:-1] & r[1:-1, :-2] & r[1:-1, 2:] & r[:-2, 1:-1] & r[2:, 1:-1]


# --------------------------------------------------------------------------------------------
# Accuracy
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("channels", [0, 1, 3])
@pytest.mark.parametrize("mode", ["normal", "mixed"])
@pytest.mark.parametrize("kind", list(REGIONS))
def test_matches_sparse_direct_solve(kind, mode, channels, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{kind}-{mode}-{channels}-{np.dtype(dtype)}".encode()))
    region = REGIONS[kind](rng)
    target, source = images(rng, region.shape, channels, dtype)
    out = poisson_blend(target, source, region, mode)
    assert out.dtype == np.float32 and out.shape == target.shape
    assert np.abs(out - reference(target, source, region, mode)).max() <= 1e-3


@pytest.mark.parametrize("channels", [2, 4, 7])  # channel blocks of three, padded
def test_other_channel_counts(channels):
    rng = np.random.default_rng(channels)
    region = blobs(rng)
    target, source = images(rng, region.shape, channels, np.float64)
    out = poisson_blend(target, source, region, "mixed")
    assert np.abs(out - reference(target, source, region, "mixed")).max() <= 1e-3


def test_outside_region_is_exactly_the_target():
    rng = np.random.default_rng(1)
    region = blobs(rng)
    for dtype in (np.uint8, np.float64):
        target, source = images(rng, region.shape, 3, dtype)
        out = poisson_blend(target, source, region)
        assert np.array_equal(out[~region], target.astype(np.float32)[~region])
        assert not np.array_equal(out[region], target.astype(np.float32)[region])


def test_normal_mode_has_the_source_laplacian_inside():
    rng = np.random.default_rng(2)
    region = blobs(rng, count=4)
    target, source = images(rng, region.shape, 3, np.float64)
    out = poisson_blend(target, source, region, "normal").astype(np.float64)
    inside = full_interior(region)
    assert inside.sum() > 100
    diff = laplacian(out)[inside] - laplacian(source)[inside]
    assert np.abs(diff).max() <= 1e-2
    # the target's Laplacian is a different field: the check can fail
    assert np.abs(laplacian(target)[inside] - laplacian(source)[inside]).max() > 10


def test_mixed_mode_has_the_divergence_of_the_mixed_field_inside():
    rng = np.random.default_rng(3)
    region = blobs(rng, count=4)
    target, source = images(rng, region.shape, 3, np.float64)
    out = poisson_blend(target, source, region, "mixed").astype(np.float64)
    div = np.zeros_like(laplacian(source))
    c = (slice(1, -1), slice(1, -1))
    for nb in ((slice(1, -1), slice(None, -2)), (slice(1, -1), slice(2, None)),
               (slice(None, -2), slice(1, -1)), (slice(2, None), slice(1, -1))):
        ds, dt = source[c] - source[nb], target[c] - target[nb]
        div += np.where(np.abs(ds) > np.abs(dt), ds, dt)
    inside = full_interior(region)
    assert np.abs(laplacian(out)[inside] - div[inside]).max() <= 1e-2
    assert np.abs(laplacian(source)[inside] - div[inside]).max() > 10


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_constant_shift_of_the_source_returns_the_target(dtype):
    rng = np.random.default_rng(4)
    region = blobs(rng)
    target = rng.integers(0, 200, region.shape + (3,)).astype(dtype)
    source = (target + 37).astype(dtype)
    out = poisson_blend(target, source, region, "normal")
    assert np.abs(out - target).max() <= 1e-3


def test_single_pixel_closed_form():
    target = np.arange(25, dtype=np.float64).reshape(5, 5) ** 1.5
    source = np.cos(np.arange(25.0)).reshape(5, 5) * 50
    region = np.zeros((5, 5), bool)
    region[2, 2] = True
    for mode in ("normal", "mixed"):
        acc = 0.0
        for dy, dx in NEIGHBOURS:
            ds = source[2, 2] - source[2 + dy, 2 + dx]
            dt = target[2, 2] - target[2 + dy, 2 + dx]
            acc += target[2 + dy, 2 + dx] + (ds if mode == "normal" or abs(ds) > abs(dt) else dt)
        assert poisson_blend(target, source, region, mode)[2, 2] == pytest.approx(acc / 4, abs=1e-4)


def test_result_is_not_clipped():
    target = np.full((20, 20), 250.0)
    source = np.zeros((20, 20))
    source[10, 10] = 400.0  # a peak in the guidance field
    region = np.zeros((20, 20), bool)
    region[5:15, 5:15] = True
    out = poisson_blend(target, source, region)
    assert out.max() > 255


# --------------------------------------------------------------------------------------------
# API contract
# --------------------------------------------------------------------------------------------
def test_integer_zero_one_region_is_accepted():
    rng = np.random.default_rng(5)
    region = blobs(rng)
    target, source = images(rng, region.shape, 3, np.uint8)
    expected = poisson_blend(target, source, region)
    for dtype in (np.uint8, np.int64):
        assert np.array_equal(poisson_blend(target, source, region.astype(dtype)), expected)


def _valid():
    target = np.zeros((10, 12, 3), np.uint8)
    region = np.zeros((10, 12), bool)
    region[3:6, 4:8] = True
    return target, target.copy(), region


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_region_touching_the_border_is_rejected(side):
    target, source, region = _valid()
    index = {"top": (0, 5), "bottom": (-1, 5), "left": (5, 0), "right": (5, -1)}[side]
    region[index] = True
    with pytest.raises(ValueError, match="region"):
        poisson_blend(target, source, region)


@pytest.mark.parametrize("bad, name", [
    (lambda t, s, r: (t, s, np.zeros_like(r)), "region"),  # empty
    (lambda t, s, r: (t, s, r.astype(np.int64) * 2), "region"),  # not 0/1
    (lambda t, s, r: (t, s, r.astype(np.float64)), "region"),  # float region
    (lambda t, s, r: (t, s, r[:-1]), "region"),  # shape
    (lambda t, s, r: (t, s[:, :-1], r), "source"),  # shape mismatch
    (lambda t, s, r: (t, s[..., :2], r), "source"),  # channel mismatch
    (lambda t, s, r: (t[..., None], s[..., None], r), "target"),  # 4-D
    (lambda t, s, r: (t.astype(bool), s.astype(bool), r), "target"),  # bool image
    (lambda t, s, r: (t.astype(np.complex128), s, r), "target"),  # complex image
    (lambda t, s, r: (t, np.where(r[..., None], np.nan, s.astype(float)), r), "source"),  # NaN
])
def test_invalid_arguments_are_rejected(bad, name):
    args = bad(*_valid())
    with pytest.raises(ValueError, match=name):
        poisson_blend(*args)


@pytest.mark.parametrize("mode", ["Normal", "seamless", "", None, 1])
def test_unknown_mode_is_rejected(mode):
    with pytest.raises(ValueError, match="mode"):
        poisson_blend(*_valid(), mode=mode)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(6)
    region = blobs(rng)
    for dtype in (np.uint8, np.float32):
        target, source = images(rng, region.shape, 3, dtype)
        copies = target.copy(), source.copy(), region.copy()
        poisson_blend(target, source, region, "mixed")
        for before, after in zip(copies, (target, source, region)):
            assert np.array_equal(before, after)


def test_output_is_deterministic_and_independent_of_earlier_calls():
    rng = np.random.default_rng(7)
    small = blobs(rng)
    t1, s1 = images(rng, small.shape, 3, np.uint8)
    first = poisson_blend(t1, s1, small).tobytes()
    big = blobs(rng, shape=(90, 110), count=6)  # grows and dirties the scratch buffer
    t2, s2 = images(rng, big.shape, 3, np.uint8)
    poisson_blend(t2, s2, big, "mixed")
    assert poisson_blend(t1, s1, small).tobytes() == first
    assert poisson_blend(t1, s1, small).tobytes() == first


def test_threads_give_the_same_results():
    rng = np.random.default_rng(8)
    problems = []
    for k in range(4):
        region = blobs(rng, shape=(40 + 10 * k, 50), count=2 + k)
        problems.append((*images(rng, region.shape, 3, np.float32), region))
    expected = [poisson_blend(*p) for p in problems]
    results = [None] * len(problems)

    def work(k):
        for _ in range(5):
            results[k] = poisson_blend(*problems[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(problems))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got, want in zip(results, expected):
        assert np.array_equal(got, want)


# --------------------------------------------------------------------------------------------
# Real data (optional)
# --------------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_real_crack_mask_matches_sparse_direct_solve(shared_data):
    cv2 = pytest.importorskip("cv2")
    crack = shared_data / "sources" / "cracks_mixed" / "ds"
    mask = cv2.imread(str(crack / "masks_machine" / "001.png"))[..., 0] > 0
    photo = cv2.imread(str(crack / "img" / "001.jpg"))
    ys, xs = np.nonzero(mask)
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    scale = 120 / max(mask[crop].shape)
    size = (round(mask[crop].shape[1] * scale), round(mask[crop].shape[0] * scale))
    region = cv2.resize(mask[crop].astype(np.uint8) * 255, size) > 127
    region = np.pad(cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0, 3)
    source = cv2.resize(photo[crop], size)
    source = np.pad(source, ((3, 3), (3, 3), (0, 0)), mode="edge")
    ramp = np.arange(source.shape[1], dtype=np.uint8)[None, :, None] // 4
    target = np.full_like(source, 128) + ramp
    for mode in ("normal", "mixed"):
        out = poisson_blend(target, source, region, mode)
        assert np.abs(out - reference(target, source, region, mode)).max() <= 1e-3
