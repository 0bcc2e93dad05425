"""Differential tests: pyconv against ``torch.nn.functional`` (the semantics it follows).

Each family draws ~200 random configurations from a seeded generator -- one test per
seed, so a failure names a reproducible configuration -- within PyTorch's own
constraints (e.g. pooling padding <= kernel/2, 'same' only with stride 1), in float32
and float64. Pooling values and indices must agree exactly (NaN included); sums agree
to per-dtype tolerances scaled by the magnitude of the terms summed.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as TF  # noqa: E402

import inspect  # noqa: E402

import pyconv  # noqa: E402
import pyconv.functional as F  # noqa: E402

N_CONFIGS = 200
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
ATOL = {np.float32: 1e-5, np.float64: 1e-10}   # times the scale of the terms summed

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")



def _algorithms(op):
    """Keyword sets selecting each explicit algorithm ``op`` offers (where it has an
    ``algorithm=`` argument), so that every kernel is compared with PyTorch, not only
    the one 'auto' picks for these small shapes."""
    if "algorithm" not in inspect.signature(op).parameters:
        return [{}]
    names = getattr(F, "ALGORITHMS", ("auto",))
    # Winograd has its own accuracy contract and shape limits: tests/test_winograd.py.
    return [{"algorithm": a} for a in names if a not in ("auto", "winograd", "winograd2x2")] or [{}]


def _t(a):
    return None if a is None else torch.from_numpy(a.copy(order="C"))


def _assert_close(actual, expected, dtype, scale):
    """|actual - expected| <= rtol*|expected| + atol*scale, elementwise; dtypes equal."""
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.dtype == expected.dtype == np.dtype(dtype)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=ATOL[dtype] * scale)


def _assert_exact(actual, expected):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)  # NaN equals NaN here


def _scale(torch_op, x, w, **kwargs):
    """max over outputs of sum |w|*|x| -- what rounding errors are relative to."""
    return max(1.0, float(torch_op(_t(np.abs(x)), _t(np.abs(w)), **kwargs).abs().max()) if x.size else 1.0)


def _rng(family, seed):
    """A generator per (family, seed): configurations do not change when another family does."""
    return np.random.default_rng([sum(map(ord, family)), seed])


def _dtype(rng):
    return [np.float32, np.float64][rng.integers(2)]


def _randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------
# Correlation (and true convolution) with zero padding
# ---------------------------------------------------------------------------------------

def _conv_config(seed):
    rng = _rng("conv", seed)
    nd = int(rng.integers(1, 3))
    dtype = _dtype(rng)
    kind = rng.choice(["plain", "grouped", "depthwise"])
    if kind == "plain":
        groups, c_in, c_out = 1, int(rng.integers(1, 5)), int(rng.integers(1, 5))
    elif kind == "grouped":
        groups = int(rng.integers(2, 4))
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    else:
        c_in = groups = int(rng.integers(1, 6))
        c_out = c_in * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    d = tuple(int(v) for v in rng.integers(1, 4, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    span = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    choice = rng.integers(5)
    if choice == 0:
        padding = int(rng.integers(0, 4))
    elif choice == 1:
        padding = tuple(int(v) for v in rng.integers(0, 4, nd))
    elif choice == 2:
        padding = "valid"
    else:  # 'same' (torch: stride 1 only)
        padding, s = "same", (1,) * nd
    pads = [padding] * nd if isinstance(padding, int) else (
        padding if isinstance(padding, tuple) else [0] * nd)
    if padding == "same":
        pads = [0] * nd
    sizes = tuple(max(1, sp - 2 * p) + int(rng.integers(0, 9)) for sp, p in zip(span, pads))
    batch = int(rng.integers(0, 4))  # 0: unbatched input
    x = _randn(rng, ((batch,) if batch else ()) + (c_in,) + sizes, dtype)
    w = _randn(rng, (c_out, c_in // groups) + k, dtype)
    b = _randn(rng, (c_out,), dtype) if rng.integers(2) else None
    flip = bool(rng.integers(4) == 0)
    return dict(nd=nd, x=x, w=w, b=b, stride=s, padding=padding, dilation=d, groups=groups,
                flip=flip, dtype=dtype)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_conv_matches_torch(seed):
    c = _conv_config(seed)
    nd, x, w, b = c["nd"], c["x"], c["w"], c["b"]
    kwargs = dict(stride=c["stride"], padding=c["padding"], dilation=c["dilation"], groups=c["groups"])
    torch_op = TF.conv1d if nd == 1 else TF.conv2d
    if c["flip"]:  # true convolution = correlation with the flipped kernel
        op = F.convolve1d if nd == 1 else F.convolve2d
        w_torch = np.flip(w, axis=tuple(range(2, nd + 2)))
    else:
        op, w_torch = (F.conv1d if nd == 1 else F.conv2d), w
    expected = torch_op(_t(x), _t(w_torch), _t(b), **kwargs)
    scale = _scale(torch_op, x, w_torch, **kwargs)
    for algorithm in _algorithms(op):
        _assert_close(op(x, w, b, **kwargs, **algorithm), expected, c["dtype"], scale)


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("k", [2, 4, 6])
@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("size", [1, 2, 5, 8])
def test_same_padding_with_even_kernels_matches_torch(nd, k, dilation, size):
    rng = np.random.default_rng([nd, k, dilation, size])
    x = rng.standard_normal((2, 3) + (size, size + 1)[:nd])
    w = rng.standard_normal((4, 3) + (k, k - 1 if k > 2 else k)[:nd])
    ours = (F.conv1d if nd == 1 else F.conv2d)(x, w, padding="same", dilation=dilation)
    expected = (TF.conv1d if nd == 1 else TF.conv2d)(_t(x), _t(w), padding="same", dilation=dilation)
    assert ours.shape == x.shape[:1] + (4,) + x.shape[2:]
    _assert_close(ours, expected, np.float64, 10.0)


# ---------------------------------------------------------------------------------------
# Padding modes, against torch.nn.ConvNd(padding_mode=...) with copied weights
# ---------------------------------------------------------------------------------------

def _padding_mode_config(seed):
    rng = _rng("padding_mode", seed)
    nd = int(rng.integers(1, 3))
    dtype = _dtype(rng)
    mode = str(rng.choice(["reflect", "replicate", "circular"]))
    groups = int(rng.choice([1, 1, 2]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    s = tuple(int(v) for v in rng.integers(1, 3, nd))
    sizes = tuple(int(v) for v in rng.integers(2, 9, nd))
    limit = [n if mode == "circular" else n - 1 for n in sizes]  # reflect: pad < size
    if rng.integers(4) == 0:
        padding, s = "same", (1,) * nd
        pads = [((di * (ki - 1)) // 2, di * (ki - 1) - (di * (ki - 1)) // 2) for ki, di in zip(k, d)]
        if any(max(p) > lim for p, lim in zip(pads, limit)):
            padding, s = tuple(0 for _ in range(nd)), s
    else:
        padding = tuple(int(rng.integers(0, min(lim, 4) + 1)) for lim in limit)
    pads = [0] * nd if padding == "same" else list(padding)
    span = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    # Grow the input until the kernel fits in the padded input (keeping the pad legal).
    sizes = tuple(max(n, sp - 2 * p) for n, sp, p in zip(sizes, span, pads))
    batch = int(rng.integers(1, 3))
    x = _randn(rng, (batch, c_in) + sizes, dtype)
    w = _randn(rng, (c_out, c_in // groups) + k, dtype)
    b = _randn(rng, (c_out,), dtype) if rng.integers(2) else None
    return dict(nd=nd, x=x, w=w, b=b, stride=s, padding=padding, dilation=d, groups=groups,
                mode=mode, dtype=dtype)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_padding_mode_matches_torch_module(seed):
    c = _padding_mode_config(seed)
    nd, x, w, b = c["nd"], c["x"], c["w"], c["b"]
    module_type = torch.nn.Conv1d if nd == 1 else torch.nn.Conv2d
    module = module_type(x.shape[1], w.shape[0], w.shape[2:], stride=c["stride"], padding=c["padding"],
                         dilation=c["dilation"], groups=c["groups"], bias=b is not None,
                         padding_mode=c["mode"], dtype=torch.float32 if c["dtype"] == np.float32 else torch.float64)
    with torch.no_grad():
        module.weight.copy_(_t(w))
        if b is not None:
            module.bias.copy_(_t(b))
        expected = module(_t(x))
    ours = (F.conv1d if nd == 1 else F.conv2d)(x, w, b, stride=c["stride"], padding=c["padding"],
                                               dilation=c["dilation"], groups=c["groups"],
                                               padding_mode=c["mode"])
    _assert_close(ours, expected, c["dtype"], float(np.abs(w).sum(axis=tuple(range(1, w.ndim))).max()
                                                    * np.abs(x).max() + 1))


@pytest.mark.parametrize("nd", [1, 2])
@pytest.mark.parametrize("padding", [3, 4, 6])
def test_replicate_padding_as_large_as_torch_allows(nd, padding):
    """torch.nn.ConvNd(padding_mode='replicate') takes any padding, even >= the input
    size (the edge value repeats); so must pyconv (PyTorch wins ties)."""
    rng = np.random.default_rng(padding)
    x = rng.standard_normal((1, 2) + (4, 3)[:nd])
    w = rng.standard_normal((3, 2) + (3,) * nd)
    module = (torch.nn.Conv1d if nd == 1 else torch.nn.Conv2d)(
        2, 3, 3, padding=padding, padding_mode="replicate", bias=False, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(_t(w))
        expected = module(_t(x))
    ours = (F.conv1d if nd == 1 else F.conv2d)(x, w, padding=padding, padding_mode="replicate")
    _assert_close(ours, expected, np.float64, 10.0)


# ---------------------------------------------------------------------------------------
# Transposed convolution
# ---------------------------------------------------------------------------------------

def _conv_transpose_config(seed):
    rng = _rng("conv_transpose", seed)
    nd = int(rng.integers(1, 3))
    dtype = _dtype(rng)
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in, c_out_g = groups * int(rng.integers(1, 3)), int(rng.integers(1, 4))
    if rng.integers(5) == 0:  # depthwise
        c_in, c_out_g = groups, 1
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 4, nd))
    op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
    sizes = tuple(int(v) for v in rng.integers(1, 8, nd))
    full = [(n - 1) * si + di * (ki - 1) + o + 1 for n, si, di, ki, o in zip(sizes, s, d, k, op)]
    padding = tuple(int(rng.integers(0, (f - 1) // 2 + 1)) for f in full)  # output >= 1
    if rng.integers(3) == 0:
        padding = min(padding)
    batch = int(rng.integers(0, 3))
    x = _randn(rng, ((batch,) if batch else ()) + (c_in,) + sizes, dtype)
    w = _randn(rng, (c_in, c_out_g) + k, dtype)
    b = _randn(rng, (c_out_g * groups,), dtype) if rng.integers(2) else None
    return dict(nd=nd, x=x, w=w, b=b, stride=s, padding=padding, output_padding=op, groups=groups,
                dilation=d, dtype=dtype)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_conv_transpose_matches_torch(seed):
    c = _conv_transpose_config(seed)
    nd, x, w, b = c["nd"], c["x"], c["w"], c["b"]
    kwargs = dict(stride=c["stride"], padding=c["padding"], output_padding=c["output_padding"],
                  groups=c["groups"], dilation=c["dilation"])
    torch_op = TF.conv_transpose1d if nd == 1 else TF.conv_transpose2d
    op = F.conv_transpose1d if nd == 1 else F.conv_transpose2d
    expected = torch_op(_t(x), _t(w), _t(b), **kwargs)
    scale = _scale(torch_op, x, w, **kwargs)
    for algorithm in _algorithms(op):
        ours = op(x, w, b, **kwargs, **algorithm)
        _assert_close(ours, expected, c["dtype"], scale)
    assert ours.shape[-nd:] == pyconv.conv_transpose_output_size(
        x.shape[-nd:], w.shape[2:], c["stride"], c["padding"], c["output_padding"], c["dilation"])


# ---------------------------------------------------------------------------------------
# Max and average pooling
# ---------------------------------------------------------------------------------------

def _pool_config(family, seed, dilation=True):
    rng = _rng(family, seed)
    nd = int(rng.integers(1, 3))
    dtype = _dtype(rng)
    k = tuple(int(v) for v in rng.integers(1, 5, nd))
    s = None if rng.integers(4) == 0 else tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 4, nd)) if dilation else (1,) * nd
    p = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)  # torch: pad <= kernel/2
    span = [di * (ki - 1) + 1 for ki, di in zip(k, d)]
    sizes = tuple(max(1, sp - 2 * pi) + int(rng.integers(0, 9)) for sp, pi in zip(span, p))
    batch = int(rng.integers(0, 3))
    shape = ((batch,) if batch else ()) + (int(rng.integers(1, 4)),) + sizes
    if rng.integers(3) == 0:  # small integers: many ties, where the first maximum must win
        x = rng.integers(-2, 3, shape).astype(dtype)
    else:
        x = _randn(rng, shape, dtype)
    as_int = bool(rng.integers(2))
    unwrap = (lambda t: t[0]) if nd == 1 and as_int else (lambda t: t)
    return dict(nd=nd, x=x, kernel_size=unwrap(k), stride=None if s is None else unwrap(s),
                padding=unwrap(p), dilation=unwrap(d), ceil_mode=bool(rng.integers(2)), dtype=dtype,
                rng=rng)


def _padding_only_windows(torch_op, shape, kwargs):
    """Mask of the output windows that hold no input element (possible within PyTorch's
    constraints once dilation > 1): max-pooling ones gives -inf exactly there. What such
    a window yields is checked on its own, in test_max_pool_window_of_padding_only."""
    return (torch_op(torch.ones(shape, dtype=torch.float64), **kwargs) == -np.inf).numpy()


def _compare_max_pool(nd, x, kwargs):
    torch_op = TF.max_pool1d if nd == 1 else TF.max_pool2d
    ours, idx = (F.max_pool1d if nd == 1 else F.max_pool2d)(x, return_indices=True, **kwargs)
    expected, expected_idx = (t.numpy() for t in torch_op(_t(x), return_indices=True, **kwargs))
    keep = ~_padding_only_windows(torch_op, x.shape, kwargs)
    assert ours.shape == expected.shape and ours.dtype == expected.dtype and idx.dtype == np.int64
    _assert_exact(ours[keep], expected[keep])
    _assert_exact(idx[keep], expected_idx[keep])
    # Without indices: the same values.
    _assert_exact((F.max_pool1d if nd == 1 else F.max_pool2d)(x, **kwargs)[keep], expected[keep])


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_max_pool_matches_torch(seed):
    c = _pool_config("max_pool", seed)
    kwargs = dict(kernel_size=c["kernel_size"], stride=c["stride"], padding=c["padding"],
                  dilation=c["dilation"], ceil_mode=c["ceil_mode"])
    _compare_max_pool(c["nd"], c["x"], kwargs)


@pytest.mark.parametrize("nd,size,kwargs", [
    (1, 2, dict(kernel_size=2, stride=1, padding=1, dilation=3)),       # taps at -1 and 2
    (1, 5, dict(kernel_size=2, stride=2, padding=1, dilation=6)),       # taps at -1 and 5
    (2, 2, dict(kernel_size=2, padding=1, dilation=3)),                 # rows and columns -1, 2
    (2, 4, dict(kernel_size=(2, 3), stride=(3, 1), padding=1, dilation=(5, 1))),  # rows -1, 4
])
def test_max_pool_window_of_padding_only(nd, size, kwargs):
    """Within PyTorch's constraints (padding <= kernel/2) a dilated window can still miss
    the input entirely. PyTorch yields -inf there, with an index outside the input;
    pyconv deliberately yields 0 with index -1 (issue 2: "a window of padding only never
    yields -inf or NaN"), and agrees with PyTorch on every other window."""
    x = np.arange(1.0, 1.0 + 2 * size ** nd).reshape((1, 2) + (size,) * nd)
    torch_op = TF.max_pool1d if nd == 1 else TF.max_pool2d
    mask = _padding_only_windows(torch_op, x.shape, kwargs)
    assert mask.any()  # the case is what it claims
    expected = torch_op(_t(x), **kwargs).numpy()
    ours, idx = (F.max_pool1d if nd == 1 else F.max_pool2d)(x, return_indices=True, **kwargs)
    assert np.all(ours[mask] == 0) and np.all(idx[mask] == -1)
    assert np.all(expected[mask] == -np.inf)  # PyTorch's behaviour, documented here
    _assert_exact(ours[~mask], expected[~mask])


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_avg_pool_matches_torch(seed):
    c = _pool_config("avg_pool", seed, dilation=False)
    nd, x, rng = c["nd"], c["x"], c["rng"]
    count_include_pad = bool(rng.integers(2))
    divisor_override = int(rng.integers(1, 10)) if rng.integers(3) == 0 else None
    kwargs = dict(kernel_size=c["kernel_size"], stride=c["stride"], padding=c["padding"],
                  ceil_mode=c["ceil_mode"], count_include_pad=count_include_pad,
                  divisor_override=divisor_override)
    ours = (F.avg_pool1d if nd == 1 else F.avg_pool2d)(x, **kwargs)
    if nd == 2:
        expected = TF.avg_pool2d(_t(x), **kwargs)
    else:  # torch's avg_pool1d has no divisor_override: run it as 2-D with a height of 1
        def pair(v):
            return None if v is None else (1, v if isinstance(v, int) else v[0])
        expected = TF.avg_pool2d(_t(x[..., None, :]), kernel_size=pair(c["kernel_size"]),
                                 stride=pair(c["stride"]),
                                 padding=(0, c["padding"] if isinstance(c["padding"], int) else c["padding"][0]),
                                 ceil_mode=c["ceil_mode"], count_include_pad=count_include_pad,
                                 divisor_override=divisor_override)[..., 0, :]
        if divisor_override is None:
            _assert_close(ours, TF.avg_pool1d(_t(x), c["kernel_size"], c["stride"], c["padding"],
                                              c["ceil_mode"], count_include_pad), c["dtype"], 3.0)
    _assert_close(ours, expected, c["dtype"], 3.0)


# ---------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------

def _adaptive_config(seed):
    rng = _rng("adaptive", seed)
    nd = int(rng.integers(1, 3))
    dtype = _dtype(rng)
    sizes = tuple(int(v) for v in rng.integers(1, 13, nd))
    out = tuple(int(v) for v in rng.integers(1, 13, nd))  # may exceed the input: windows overlap
    if nd == 2 and rng.integers(4) == 0:
        out = (None, out[1]) if rng.integers(2) else (out[0], None)
    output_size = out[0] if nd == 1 and rng.integers(2) else out
    batch = int(rng.integers(0, 3))
    shape = ((batch,) if batch else ()) + (int(rng.integers(1, 4)),) + sizes
    x = rng.integers(-2, 3, shape).astype(dtype) if rng.integers(3) == 0 else _randn(rng, shape, dtype)
    return dict(nd=nd, x=x, output_size=output_size, dtype=dtype)


@pytest.mark.parametrize("seed", range(N_CONFIGS))
def test_adaptive_pools_match_torch(seed):
    c = _adaptive_config(seed)
    nd, x, output_size = c["nd"], c["x"], c["output_size"]
    avg = (F.adaptive_avg_pool1d if nd == 1 else F.adaptive_avg_pool2d)(x, output_size)
    expected_avg = (TF.adaptive_avg_pool1d if nd == 1 else TF.adaptive_avg_pool2d)(_t(x), output_size)
    _assert_close(avg, expected_avg, c["dtype"], 3.0)
    mx, idx = (F.adaptive_max_pool1d if nd == 1 else F.adaptive_max_pool2d)(x, output_size, return_indices=True)
    expected_mx, expected_idx = (TF.adaptive_max_pool1d if nd == 1 else TF.adaptive_max_pool2d)(
        _t(x), output_size, return_indices=True)
    _assert_exact(mx, expected_mx)
    _assert_exact(idx, expected_idx)


# ---------------------------------------------------------------------------------------
# NaN in max pooling: NaN wins, at the same positions, with the same indices
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(60))
def test_max_pool_with_nan_matches_torch(seed):
    c = _pool_config("max_pool_nan", seed)
    nd, x, rng = c["nd"], c["x"].copy(), c["rng"]
    x[rng.random(x.shape) < rng.choice([0.05, 0.2, 0.5])] = np.nan
    kwargs = dict(kernel_size=c["kernel_size"], stride=c["stride"], padding=c["padding"],
                  dilation=c["dilation"], ceil_mode=c["ceil_mode"])
    _compare_max_pool(nd, x, kwargs)
    # torch's max_pool without indices is a separate kernel: it must agree too.
    keep = ~_padding_only_windows(TF.max_pool1d if nd == 1 else TF.max_pool2d, x.shape, kwargs)
    _assert_exact((F.max_pool1d if nd == 1 else F.max_pool2d)(x, **kwargs)[keep],
                  (TF.max_pool1d if nd == 1 else TF.max_pool2d)(_t(x), **kwargs).numpy()[keep])


@pytest.mark.parametrize("seed", range(60))
def test_adaptive_max_pool_with_nan_matches_torch(seed):
    c = _adaptive_config(seed)
    nd, x = c["nd"], c["x"].copy()
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.2] = np.nan
    mx, idx = (F.adaptive_max_pool1d if nd == 1 else F.adaptive_max_pool2d)(x, c["output_size"], return_indices=True)
    expected, expected_idx = (TF.adaptive_max_pool1d if nd == 1 else TF.adaptive_max_pool2d)(
        _t(x), c["output_size"], return_indices=True)
    _assert_exact(mx, expected)
    _assert_exact(idx, expected_idx)


def test_max_pool_all_nan_and_infinities():
    x = np.array([[[np.nan, np.nan, -np.inf, -np.inf, np.inf, np.nan, 1.0, -np.inf]]])
    for k, s in [(2, 2), (3, 1), (4, 3)]:
        ours, idx = F.max_pool1d(x, k, s, return_indices=True)
        expected, expected_idx = TF.max_pool1d(_t(x), k, s, return_indices=True)
        _assert_exact(ours, expected)
        _assert_exact(idx, expected_idx)
