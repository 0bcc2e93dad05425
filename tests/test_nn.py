"""pyconv.nn: the Module machinery, every layer against torch.nn, fuse() and summary().

Layer tests build the torch.nn layer, copy its state_dict into the pyconv layer with
strict=True and compare outputs (and reprs) on awkward shapes.
"""
import inspect

import numpy as np
import pytest

import pyconv.nn as nn

RTOL32 = 1e-5  # relative to the output's largest magnitude, float32


def close(actual, expected, rtol=RTOL32):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# ---------------------------------------------------------------------------------------
# Module: registration, traversal, state_dict, save/load
# ---------------------------------------------------------------------------------------

class Scale(nn.Module):
    """A hand-written module: one parameter, one buffer, one child."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(np.ones(3, np.float32))
        self.calls = nn.Buffer(np.zeros((), np.int64))
        self.inner = nn.Sequential(nn.ReLU(), nn.Linear(3, 2, rng=0))
        self.note = "plain attribute"

    def forward(self, x):
        return self.inner(x * self.gain)


def test_attribute_assignment_registers_parameters_buffers_and_children():
    m = Scale()
    assert list(m.state_dict()) == ["gain", "calls", "inner.1.weight", "inner.1.bias"]
    assert [name for name, _ in m.named_parameters()] == ["gain", "inner.1.weight", "inner.1.bias"]
    assert [name for name, _ in m.named_buffers()] == ["calls"]
    assert [name for name, _ in m.named_children()] == ["inner"]
    assert [name for name, _ in m.named_modules()] == ["", "inner", "inner.0", "inner.1"]
    assert len(list(m.modules())) == 4 and len(list(m.children())) == 1
    assert m.note == "plain attribute" and "note" not in m.state_dict()
    m.gain = np.full(3, 2.0, np.float32)  # replacing a parameter keeps it registered
    assert m.state_dict()["gain"][0] == 2.0
    del m.calls
    assert "calls" not in m.state_dict()
    with pytest.raises(AttributeError):
        m.missing  # noqa: B018


def test_module_without_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_forward_hooks_run_and_can_be_removed():
    seen = []
    m = nn.ReLU()
    handle = m.register_forward_hook(lambda mod, inputs, out: seen.append(out.shape))
    m(np.zeros((2, 3)))
    handle.remove()
    m(np.zeros((2, 3)))
    assert seen == [(2, 3)]


def test_sequential_indexing_len_iteration_slicing():
    layers = [nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
    seq = nn.Sequential(*layers)
    assert len(seq) == 4 and list(seq) == layers
    assert seq[0] is layers[0] and seq[-1] is layers[-1]
    sub = seq[1:3]
    assert isinstance(sub, nn.Sequential) and list(sub._modules) == ["1", "2"]
    seq[1] = nn.ReLU6()
    assert list(seq._modules) == ["0", "1", "2", "3"] and isinstance(seq[1], nn.ReLU6)
    seq.append(nn.Identity())
    assert len(seq) == 5 and seq(np.ones((1, 1, 6, 6), np.float32)).shape == (1, 8)
    with pytest.raises(IndexError):
        seq[5]


def test_train_and_eval_set_the_flag_everywhere():
    m = Scale().eval()
    assert not any(mod.training for mod in m.modules())
    assert all(mod.training for mod in m.train().modules())


def test_repr_is_nested_like_pytorch():
    m = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Sequential(nn.ReLU(inplace=True)))
    assert repr(m) == (
        "Sequential(\n"
        "  (0): Conv2d(3, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
        "  (1): Sequential(\n"
        "    (0): ReLU(inplace=True)\n"
        "  )\n"
        ")")


def test_state_dict_round_trips_through_npz(tmp_path):
    a = nn.Sequential(nn.Conv2d(3, 4, 3, rng=1), nn.BatchNorm2d(4), nn.Linear(2, 3, rng=2))
    a[1].running_mean = np.arange(4, dtype=np.float32)
    a[1].num_batches_tracked = np.array(5)
    a.save(tmp_path / "weights.npz")
    b = nn.Sequential(nn.Conv2d(3, 4, 3, rng=3), nn.BatchNorm2d(4), nn.Linear(2, 3, rng=4))
    b.load(tmp_path / "weights.npz")
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value)
        assert b.state_dict()[key].dtype == value.dtype
    assert b[1].num_batches_tracked.dtype == np.int64


def test_load_state_dict_reports_missing_unexpected_and_mismatched_keys():
    m = nn.Sequential(nn.Conv2d(3, 4, 3, rng=0), nn.BatchNorm2d(4))
    good = {k: v.copy() for k, v in m.state_dict().items()}
    before = m[0].weight.copy()

    missing = dict(good)
    del missing["1.running_var"]
    with pytest.raises(KeyError, match=r"missing key\(s\): 1\.running_var"):
        m.load_state_dict(missing)

    unexpected = dict(good, **{"2.weight": np.zeros(1)})
    with pytest.raises(KeyError, match=r"unexpected key\(s\): 2\.weight"):
        m.load_state_dict(unexpected)

    mismatched = dict(good, **{"0.weight": np.zeros((4, 3, 5, 5))})
    with pytest.raises(ValueError, match=r"0\.weight: expected shape \(4, 3, 3, 3\), got \(4, 3, 5, 5\)"):
        m.load_state_dict(mismatched)
    with pytest.raises(ValueError, match="shape"):
        m.load_state_dict(mismatched, strict=False)
    np.testing.assert_array_equal(m[0].weight, before)  # a failed load changes nothing

    result = m.load_state_dict(dict(unexpected, **{"0.weight": good["0.weight"] * 2}), strict=False)
    assert result.unexpected_keys == ["2.weight"] and result.missing_keys == []
    np.testing.assert_array_equal(m[0].weight, before * 2)


def test_load_state_dict_casts_to_the_parameter_dtype():
    m = nn.Linear(3, 2, rng=0)
    m.load_state_dict({"weight": np.ones((2, 3)), "bias": [1, 2]})
    assert m.weight.dtype == np.float32 and m.bias.dtype == np.float32


# ---------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------

def test_default_init_is_pytorchs_bound_and_seedable():
    conv = nn.Conv2d(6, 8, (3, 5), groups=2, rng=0)
    bound = 1 / np.sqrt(3 * 3 * 5)  # fan_in = C_in/groups · kh · kw
    assert conv.weight.dtype == np.float32 and conv.weight.shape == (8, 3, 3, 5)
    assert np.abs(conv.weight).max() <= bound and np.abs(conv.weight).max() > 0.9 * bound
    assert np.abs(conv.bias).max() <= bound
    np.testing.assert_array_equal(nn.Conv2d(6, 8, (3, 5), groups=2, rng=0).weight, conv.weight)
    nn.manual_seed(7)
    a = nn.Linear(4, 5).weight
    nn.manual_seed(7)
    np.testing.assert_array_equal(nn.Linear(4, 5).weight, a)
    assert nn.Linear(4, 5, dtype=np.float64).weight.dtype == np.float64
    t = nn.ConvTranspose2d(4, 6, 3, groups=2, rng=0)
    assert t.weight.shape == (4, 3, 3, 3) and t.bias.shape == (6,)
    assert np.abs(t.weight).max() <= 1 / np.sqrt(3 * 9)


def test_to_converts_floating_state_only():
    bn = nn.BatchNorm2d(3).to(np.float64)
    assert bn.weight.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding"):
        nn.ConvTranspose2d(3, 4, 3, padding="same")
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(3, 4, dtype=np.int32)
    with pytest.raises(ValueError, match="dropout"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="channels"):
        nn.BatchNorm2d(3)(np.zeros((1, 4, 2, 2)))


# ---------------------------------------------------------------------------------------
# Every layer against torch.nn
# ---------------------------------------------------------------------------------------

# (layer name, constructor args, constructor kwargs, input shape)
LAYERS = [
    ("Conv1d", (4, 6, 3), {}, (2, 4, 11)),
    ("Conv1d", (4, 6, 4), dict(stride=2, padding=1, dilation=2, groups=2, bias=False), (2, 4, 13)),
    ("Conv1d", (4, 6, 3), dict(padding="same", padding_mode="reflect"), (2, 4, 9)),
    ("Conv2d", (3, 8, 3), {}, (2, 3, 9, 10)),
    ("Conv2d", (4, 6, (3, 2)), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2), (2, 4, 11, 9)),
    ("Conv2d", (3, 5, 3), dict(padding="same", padding_mode="circular"), (1, 3, 7, 8)),
    ("Conv2d", (3, 5, 3), dict(padding=1, padding_mode="replicate"), (1, 3, 7, 8)),
    ("Conv2d", (3, 5, 4), dict(padding="same", dilation=2), (1, 3, 10, 9)),
    ("Conv2d", (3, 5, 3), dict(padding="valid"), (3, 7, 8)),  # unbatched
    ("ConvTranspose1d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 7)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2), (2, 4, 5, 6)),
    ("ConvTranspose2d", (4, 6, (2, 3)), dict(stride=(2, 1), dilation=(1, 2), bias=False), (1, 4, 5, 4)),
    ("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 3, 10)),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
    ("MaxPool2d", (2,), dict(dilation=2), (1, 3, 9, 9)),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 10)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 10, 9)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (1, 3, 8, 7)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 10, 7)),
    ("AdaptiveMaxPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveMaxPool2d", ((2, 3),), {}, (2, 3, 9, 7)),
    ("ReLU", (), {}, (2, 3, 4)),
    ("ReLU6", (), dict(inplace=True), (2, 3, 4)),
    ("LeakyReLU", (0.2,), {}, (2, 3, 4)),
    ("Sigmoid", (), {}, (2, 3, 4)),
    ("Tanh", (), {}, (2, 3, 4)),
    ("Softmax", (), dict(dim=1), (2, 3, 4)),
    ("Softmax", (), dict(dim=-1), (2, 3, 4)),
    ("Flatten", (), {}, (2, 3, 4, 5)),
    ("Flatten", (0, 2), {}, (2, 3, 4, 5)),
    ("Linear", (7, 5), {}, (2, 3, 7)),
    ("Linear", (7, 5), dict(bias=False), (4, 7)),
    ("Dropout", (0.3,), {}, (2, 3)),
    ("Identity", (), {}, (2, 3)),
    ("BatchNorm1d", (6,), {}, (4, 6)),
    ("BatchNorm1d", (6,), dict(eps=1e-3), (4, 6, 5)),
    ("BatchNorm2d", (6,), {}, (2, 6, 4, 5)),
    ("BatchNorm2d", (6,), dict(affine=False), (2, 6, 4, 5)),
    ("BatchNorm2d", (6,), dict(track_running_stats=False), (2, 6, 4, 5)),
]


def randomize_batch_norms(torch, module, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters (fresh ones are 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                    m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                    m.num_batches_tracked.fill_(3)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return module


def numpy_state(module):
    return {key: value.detach().numpy() for key, value in module.state_dict().items()}


@pytest.mark.parametrize("name, args, kwargs, shape", LAYERS,
                         ids=[f"{name}-{i}" for i, (name, *_) in enumerate(LAYERS)])
def test_layer_matches_torch(name, args, kwargs, shape):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = randomize_batch_norms(torch, getattr(torch.nn, name)(*args, **kwargs)).eval()
    ours = getattr(nn, name)(*args, **kwargs).eval()
    ours.load_state_dict(numpy_state(theirs), strict=True)
    assert repr(ours) == repr(theirs)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) * 3
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x.copy())).numpy()
    y = ours(x.copy())
    assert y.dtype == np.float32
    close(y, expected)


def test_max_pool_indices_match_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 9, 8)).astype(np.float32)
    y, idx = nn.MaxPool2d(3, 2, 1, return_indices=True)(x)
    ty, tidx = torch.nn.MaxPool2d(3, 2, 1, return_indices=True)(torch.from_numpy(x))
    close(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())


def test_conv_transpose_output_size_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    ours = nn.ConvTranspose2d(3, 2, 3, stride=3, padding=1)
    ours.load_state_dict(numpy_state(theirs))
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 5)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x), output_size=(11, 14)).numpy()
    close(ours(x, output_size=(11, 14)), expected)
    with pytest.raises(ValueError, match="output_size"):
        ours(x, output_size=(20, 14))


def test_leaky_relu_in_place_overwrites_the_input():
    x = np.array([-2.0, 3.0], np.float32)
    y = nn.LeakyReLU(0.5, inplace=True)(x)
    assert y is x and x.tolist() == [-1.0, 3.0]


@pytest.mark.parametrize("name", sorted({name for name, *_ in LAYERS}))
def test_constructor_signature_matches_torch(name):
    torch = pytest.importorskip("torch")
    def params(cls):  # torch's device=/dtype= and our rng= aside; *args as in Module()
        return [(p.name, p.default, p.kind) for p in inspect.signature(cls).parameters.values()
                if p.name not in ("device", "dtype", "rng")
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert params(getattr(nn, name)) == params(getattr(torch.nn, name))


# ---------------------------------------------------------------------------------------
# Residual and branching structure as ordinary Modules
# ---------------------------------------------------------------------------------------

def inception_pair(torch):
    """The same Inception-style block (1×1 | 1×1→3×3 | pool→1×1, concatenated) in both libraries."""
    class TorchInception(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.add_module("0", torch.nn.Sequential(torch.nn.Conv2d(4, 3, 1), torch.nn.ReLU()))
            self.add_module("1", torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1), torch.nn.ReLU(),
                                                     torch.nn.Conv2d(2, 5, 3, padding=1), torch.nn.ReLU()))
            self.add_module("2", torch.nn.Sequential(torch.nn.MaxPool2d(3, 1, 1), torch.nn.Conv2d(4, 2, 1)))

        def forward(self, x):
            return torch.cat([branch(x) for branch in self.children()], dim=1)

    ours = nn.Concat(nn.Sequential(nn.Conv2d(4, 3, 1), nn.ReLU()),
                     nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 5, 3, padding=1), nn.ReLU()),
                     nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(4, 2, 1)))
    return ours, TorchInception()


def test_inception_style_concat_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs = inception_pair(torch)
    ours.load_state_dict(numpy_state(theirs))
    x = np.random.default_rng(4).standard_normal((2, 4, 9, 7)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    y = ours(x)
    assert y.shape == (2, 10, 9, 7)
    close(y, expected)
    close(ours.fuse()(x), expected)


# ---------------------------------------------------------------------------------------
# fuse()
# ---------------------------------------------------------------------------------------

def random_batch_norm(bn, seed):
    rng = np.random.default_rng(seed)
    c = bn.num_features
    bn.running_mean = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    bn.running_var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    bn.weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bn.bias = rng.uniform(-0.5, 0.5, c).astype(np.float32)
    return bn


@pytest.mark.parametrize("conv, bn, act, shape", [
    (nn.Conv2d(3, 6, 3, padding=1, bias=False, rng=0), nn.BatchNorm2d(6), nn.ReLU(inplace=True), (2, 3, 7, 6)),
    (nn.Conv2d(4, 6, 3, stride=2, groups=2, rng=0), nn.BatchNorm2d(6), nn.ReLU6(), (1, 4, 9, 8)),
    (nn.Conv1d(3, 5, 3, padding="same", rng=0), nn.BatchNorm1d(5), nn.ReLU(), (2, 3, 10)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, rng=0), nn.BatchNorm2d(6), nn.ReLU6(), (1, 4, 5, 4)),
    (nn.ConvTranspose1d(2, 3, 4, stride=2, rng=0), nn.BatchNorm1d(3), nn.Identity(), (2, 2, 6)),
])
def test_fuse_folds_batch_norm_and_activation_without_changing_outputs(conv, bn, act, shape):
    model = nn.Sequential(conv, random_batch_norm(bn, 1), act, nn.MaxPool1d(1) if len(shape) == 3 else nn.Identity())
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32) * 4
    expected = model(x.copy())
    fused = model.fuse()
    close(fused(x.copy()), expected)
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in fused.modules())
    assert isinstance(model[1], type(bn))  # the original is untouched
    if isinstance(act, (nn.ReLU, nn.ReLU6)):
        assert fused[0].clamp == ((0.0, np.inf) if isinstance(act, nn.ReLU) else (0.0, 6.0))
        assert isinstance(fused[2], nn.Identity)
        assert expected.min() == 0  # the clamp had work to do
    assert "1.running_mean" not in fused.state_dict() and "0.bias" in fused.state_dict()


def test_fuse_leaves_unfusable_patterns_alone():
    bn = nn.BatchNorm2d(4, track_running_stats=False)  # batch statistics: nothing to fold
    model = nn.Sequential(nn.Conv2d(3, 4, 1, rng=0), bn, nn.LeakyReLU(), nn.Conv2d(4, 4, 1, rng=1))
    fused = model.fuse()
    assert isinstance(fused[1], nn.BatchNorm2d) and fused[0].clamp is None
    assert fused[3].clamp is None


def test_fuse_chains_keep_a_shared_activation():
    class Block(nn.Module):
        fuse_chains = (("conv", "bn", "relu"),)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1, rng=0)
            self.bn = random_batch_norm(nn.BatchNorm2d(3), 2)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.relu(self.bn(self.conv(x))) - x)  # relu used twice

    block = Block()
    x = np.random.default_rng(6).standard_normal((1, 3, 6, 6)).astype(np.float32)
    fused = block.fuse()
    assert isinstance(fused.bn, nn.Identity) and isinstance(fused.relu, nn.ReLU)
    assert fused.conv.clamp == (0.0, np.inf)
    close(fused(x), block(x))


# ---------------------------------------------------------------------------------------
# summary()
# ---------------------------------------------------------------------------------------

def test_summary_hand_computed_stack():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),                          # rf 1 + 2·1 = 3,        jump 1
        nn.ReLU(),                                   # unchanged
        nn.MaxPool2d(2),                             # rf 3 + 1·1 = 4,        jump 2
        nn.Conv2d(4, 6, 3, dilation=2, padding=2),   # rf 4 + 2·2·2 = 12,     jump 2
        nn.Conv2d(6, 8, 5, stride=2),                # rf 12 + 4·2 = 20,      jump 4
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 10),
    )
    s = nn.summary(model, (1, 1, 20, 20), verbose=False)
    assert [r.receptive_field for r in s.rows[:5]] == [(3, 3), (3, 3), (4, 4), (12, 12), (20, 20)]
    assert [r.jump for r in s.rows[:5]] == [(1, 1), (1, 1), (2, 2), (2, 2), (4, 4)]
    assert s.rows[5].receptive_field is None
    assert [r.output_shape for r in s.rows] == [(1, 4, 18, 18), (1, 4, 18, 18), (1, 4, 9, 9),
                                                (1, 6, 9, 9), (1, 8, 3, 3), (1, 72), (1, 10)]
    # parameters: (k·k·C_in + 1)·C_out; multiply-adds: output elements · k·k·C_in
    assert [r.params for r in s.rows] == [40, 0, 0, 222, 1208, 0, 730]
    assert [r.macs for r in s.rows] == [4 * 18 * 18 * 9, 0, 0, 6 * 81 * 36, 8 * 9 * 150, 0, 720]
    assert s.total_params == 40 + 222 + 1208 + 730 and s.total_macs == sum(r.macs for r in s.rows)
    text = str(s)
    assert "Total params: 2,200" in text and "3 (Conv2d)" in text


def test_summary_takes_the_max_over_branches(capsys):
    model = nn.Sequential(nn.Concat(nn.Conv2d(2, 3, 1), nn.Conv2d(2, 3, 5, padding=2)), nn.ReLU())
    s = nn.summary(model, (1, 2, 8, 8))
    assert s.rows[-1].receptive_field == (5, 5) and s.rows[-1].output_shape == (1, 6, 8, 8)
    assert "Total mult-adds" in capsys.readouterr().out


def test_load_state_dict_accepts_torch_tensors_directly():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
    ours = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    ours.load_state_dict(theirs.state_dict())
    np.testing.assert_array_equal(ours[0].weight, theirs[0].weight.detach().numpy())
    assert ours[1].num_batches_tracked.dtype == np.int64
