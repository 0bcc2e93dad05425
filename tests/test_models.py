"""pyconv.models against the same networks written in torch.nn, and against published figures.

torchvision is not a dependency: the torch models below are small rewrites of
torchvision's definitions with its module names, so their state_dicts have
torchvision's keys. Each test copies the torch model's random weights (and random
BatchNorm statistics) into the pyconv model with strict=True and compares outputs on a
small image; repr() must match too. Inputs are small (32×32, 64×64) because pyconv's
kernels are slow; only the ResNet-50 multiply-add count runs at 224×224.
"""
import numpy as np
import pytest

import pyconv.models as models
import pyconv.nn as nn
from test_nn import close, numpy_state, randomize_batch_norms

RTOL = 1e-4  # deep float32 networks accumulate rounding differently from torch


# ---------------------------------------------------------------------------------------
# Published figures
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg16():
    """VGG-16 takes seconds to initialise (138M parameters): build it once."""
    return models.vgg16(rng=0)


@pytest.mark.parametrize("name, input_shape, params", [
    ("lenet5", (1, 1, 32, 32), 61_706),
    ("resnet18", (1, 3, 32, 32), 11_689_512),
    ("mobilenet_v2", (1, 3, 32, 32), 3_504_872),
    ("vgg16", (1, 3, 32, 32), 138_357_544),
])
def test_parameter_counts_match_published_figures(name, input_shape, params, request):
    model = request.getfixturevalue("vgg16") if name == "vgg16" else getattr(models, name)(rng=0)
    s = nn.summary(model, input_shape, verbose=False)
    assert s.total_params == params
    assert s.rows[-1].output_shape == (1, 10 if name == "lenet5" else 1000)


def test_resnet50_summary_matches_published_figures():
    s = nn.summary(models.resnet50(rng=0), (1, 3, 224, 224), verbose=False)
    assert s.total_params == 25_557_032
    assert abs(s.total_macs - 4.1e9) / 4.1e9 < 0.02  # torchvision: 4.09 GFLOPS (multiply-adds)
    stem = s.rows[0]
    assert stem.name == "conv1" and stem.output_shape == (1, 64, 112, 112)
    assert stem.receptive_field == (7, 7) and stem.jump == (2, 2)
    layer4 = [r for r in s.rows if r.name.startswith("layer4")][-1]
    assert layer4.jump == (32, 32) and layer4.receptive_field == (427, 427)


# ---------------------------------------------------------------------------------------
# The same architectures in torch.nn, with torchvision's names
# ---------------------------------------------------------------------------------------

def torch_models(torch):
    tnn = torch.nn

    class LeNet5(tnn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.features = tnn.Sequential(tnn.Conv2d(1, 6, 5), tnn.Tanh(), tnn.AvgPool2d(2),
                                           tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2))
            self.classifier = tnn.Sequential(tnn.Linear(400, 120), tnn.Tanh(), tnn.Linear(120, 84),
                                             tnn.Tanh(), tnn.Linear(84, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    class VGG(tnn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            layers, c = [], 3
            for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
                if v == "M":
                    layers.append(tnn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [tnn.Conv2d(c, v, kernel_size=3, padding=1), tnn.ReLU(inplace=True)]
                    c = v
            self.features = tnn.Sequential(*layers)
            self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
            self.classifier = tnn.Sequential(
                tnn.Linear(512 * 7 * 7, 4096), tnn.ReLU(True), tnn.Dropout(p=0.5),
                tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(p=0.5), tnn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def conv3x3(i, o, stride=1):
        return tnn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)

    def conv1x1(i, o, stride=1):
        return tnn.Conv2d(i, o, 1, stride=stride, bias=False)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv3x3(planes, planes), tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv1x1(inplanes, planes), tnn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3x3(planes, planes, stride), tnn.BatchNorm2d(planes)
            self.conv3, self.bn3 = conv1x1(planes, planes * 4), tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.bn3(self.conv3(out)) + identity)

    class ResNet(tnn.Module):
        def __init__(self, block, layers, num_classes=1000):
            super().__init__()
            self.inplanes = 64
            self.conv1 = tnn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, 64, layers[0], 1)
            self.layer2 = self._make_layer(block, 128, layers[1], 2)
            self.layer3 = self._make_layer(block, 256, layers[2], 2)
            self.layer4 = self._make_layer(block, 512, layers[3], 2)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512 * block.expansion, num_classes)

        def _make_layer(self, block, planes, blocks, stride):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = tnn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                            tnn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
            return tnn.Sequential(*layers)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class Conv2dNormActivation(tnn.Sequential):
        def __init__(self, i, o, kernel_size=3, stride=1, groups=1):
            super().__init__(tnn.Conv2d(i, o, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                             tnn.BatchNorm2d(o), tnn.ReLU6(inplace=True))

    class InvertedResidual(tnn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = int(round(inp * expand_ratio))
            self.use_res_connect = stride == 1 and inp == oup
            layers = [Conv2dNormActivation(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
            layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
                       tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
            self.conv = tnn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(tnn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            features, c_in = [Conv2dNormActivation(3, 32, stride=2)], 32
            for t, c, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                               [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]:
                for i in range(n):
                    features.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                    c_in = c
            features.append(Conv2dNormActivation(c_in, 1280, kernel_size=1))
            self.features = tnn.Sequential(*features)
            self.classifier = tnn.Sequential(tnn.Dropout(p=0.2), tnn.Linear(1280, num_classes))

        def forward(self, x):
            x = tnn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    return {
        "lenet5": LeNet5,
        "vgg16": VGG,
        "resnet18": lambda: ResNet(BasicBlock, [2, 2, 2, 2]),
        "resnet50": lambda: ResNet(Bottleneck, [3, 4, 6, 3]),
        "mobilenet_v2": MobileNetV2,
    }


# name, input shape, convolutions, how many of them have a ReLU/ReLU6 fused:
# LeNet-5 uses tanh; ResNet fuses the stem and the ReLU inside each block (not the one
# after the addition); MobileNetV2 all but the 17 linear-bottleneck projections.
@pytest.mark.parametrize("name, input_shape, convs, clamped", [
    ("lenet5", (2, 1, 32, 32), 2, 0),
    ("vgg16", (1, 3, 32, 32), 13, 13),
    ("resnet18", (2, 3, 64, 64), 20, 1 + 8),
    ("resnet50", (1, 3, 64, 64), 53, 1 + 16 * 2),
    ("mobilenet_v2", (2, 3, 64, 64), 52, 52 - 17),
])
def test_model_matches_torch(name, input_shape, convs, clamped, request):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = randomize_batch_norms(torch, torch_models(torch)[name]()).eval()
    ours = request.getfixturevalue("vgg16") if name == "vgg16" else getattr(models, name)(rng=1)
    ours.load_state_dict(numpy_state(theirs), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)

    x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    assert expected.std() > 0
    y = ours.eval()(x)
    assert y.dtype == np.float32
    close(y, expected, RTOL)

    fused = ours.fuse()
    close(fused(x), expected, RTOL)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    fused_convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(fused_convs) == convs
    assert sum(c.clamp is not None for c in fused_convs) == clamped


def test_resnet_fusion_clamps_in_the_convolutions_and_the_addition():
    # The blocks call relu only in their chains (their additions clamp by
    # themselves), so fuse() replaces it -- after every chain took its clamp.
    model = models.resnet50(num_classes=10, rng=0)
    fused = model.fuse()
    block = fused.layer1[0]
    assert [block.conv1.clamp, block.conv2.clamp, block.conv3.clamp] == [(0.0, np.inf)] * 2 + [None]
    assert isinstance(block.bn1, nn.Identity) and isinstance(block.relu, nn.Identity)
    assert isinstance(fused.relu, nn.Identity) and fused.conv1.clamp == (0.0, np.inf)
    x = np.random.default_rng(7).standard_normal((1, 3, 40, 40)).astype(np.float32)
    y, expected = fused(x), model(x)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_mobilenet_fusion_clamps_at_six_and_keeps_the_linear_bottleneck():
    block = models.mobilenet_v2(rng=0).fuse().features[2].conv
    assert [type(m).__name__ for m in block[0]] == ["Conv2d", "Identity", "Identity"]
    assert block[0][0].clamp == (0.0, 6.0) and block[1][0].clamp == (0.0, 6.0)
    assert block[2].clamp is None  # the 1×1 projection is linear


def test_seeded_models_are_reproducible():
    a, b, c = models.resnet18(rng=3), models.resnet18(rng=3), models.resnet18(rng=4)
    np.testing.assert_array_equal(a.layer1[0].conv1.weight, b.layer1[0].conv1.weight)
    assert not np.array_equal(a.layer1[0].conv1.weight, c.layer1[0].conv1.weight)
    w = a.conv1.weight  # He-normal, fan_out: std sqrt(2 / (64·7·7))
    assert abs(w.std() / np.sqrt(2 / (64 * 49)) - 1) < 0.05
    assert models.lenet5(dtype=np.float64).features[0].weight.dtype == np.float64
