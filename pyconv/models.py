"""pyconv.models -- classic CNNs built from :mod:`pyconv.nn`, with torchvision's names.

    model = pyconv.models.resnet50(rng=0).eval()   # seeded random weights
    model.load_state_dict(weights)                  # torchvision keys: "layer1.0.downsample.1.running_var"
    logits = model(images)                          # (N, 3, 224, 224) float32 -> (N, 1000)

Module names, parameter names and shapes are torchvision's (``vgg16``, ``resnet18``,
``resnet50``, ``mobilenet_v2``), so a torchvision state_dict converted to NumPy
(``{k: v.numpy() for k, v in sd.items()}``) loads with ``strict=True``; ``repr(model)``
matches torchvision's too. Random weights follow torchvision's initialisation
(He-normal convolutions, fan_out mode), drawn from ``rng`` (a numpy Generator or an
int seed; default: :func:`pyconv.nn.manual_seed`'s generator). ``lenet5`` is LeCun's
1998 network for 1×32×32 digits.

The residual and branching structures are ordinary modules: :class:`BasicBlock` and
:class:`Bottleneck` add a shortcut, :class:`InvertedResidual` too (when shapes allow);
:class:`pyconv.nn.Concat` holds Inception-style parallel branches.
"""

import math

import numpy as np

from pyconv import functional as F
from pyconv import nn

__all__ = ["LeNet5", "VGG", "BasicBlock", "Bottleneck", "ResNet", "Conv2dNormActivation",
           "InvertedResidual", "MobileNetV2",
           "lenet5", "vgg16", "resnet18", "resnet50", "mobilenet_v2"]


# ---------------------------------------------------------------------------------------
# torchvision's initialisation
# ---------------------------------------------------------------------------------------

def _normal(rng, shape, std, dtype):
    """N(0, std²) samples of ``dtype``, scaled in place (VGG-16 has 138M of them)."""
    values = rng.standard_normal(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    values *= std
    return values.astype(dtype, copy=False)


def _init_like_torchvision(model, rng, linear_std=None):
    """Convolutions He-normal with fan_out (``kaiming_normal_(mode="fan_out",
    nonlinearity="relu")``: std ``sqrt(2 / (C_out/groups · k))``), their biases zero;
    BatchNorm γ = 1, β = 0 (already so). Linear layers keep PyTorch's default unless
    ``linear_std`` is given: then ``N(0, linear_std²)`` weights and zero bias."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight
            std = math.sqrt(2 / (w.shape[0] * math.prod(w.shape[2:])))
            module.weight = _normal(rng, w.shape, std, w.dtype)
            if module.bias is not None:
                module.bias = np.zeros_like(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            w = module.weight
            module.weight = _normal(rng, w.shape, linear_std, w.dtype)
            module.bias = np.zeros_like(module.bias)
    return model


# ---------------------------------------------------------------------------------------
# LeNet-5
# ---------------------------------------------------------------------------------------

class LeNet5(nn.Module):
    """LeCun et al. (1998) on a 1×32×32 image: two 5×5 convolutions, each followed by
    tanh and 2×2 average pooling (the "subsampling" layers), then 120-84-classes fully
    connected: 61,706 parameters with 10 classes. ``features`` / ``classifier`` as VGG."""

    def __init__(self, num_classes=10, *, dtype=None, rng=None):
        super().__init__()
        rng = nn._generator(rng)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, dtype=dtype, rng=rng), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5, dtype=dtype, rng=rng), nn.Tanh(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120, dtype=dtype, rng=rng), nn.Tanh(),
            nn.Linear(120, 84, dtype=dtype, rng=rng), nn.Tanh(),
            nn.Linear(84, num_classes, dtype=dtype, rng=rng),
        )

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.reshape(x.shape[0], -1))


def lenet5(num_classes=10, *, dtype=None, rng=None):
    """LeNet-5 for 1×32×32 inputs (PyTorch's default initialisation)."""
    return LeNet5(num_classes, dtype=dtype, rng=rng)


# ---------------------------------------------------------------------------------------
# VGG
# ---------------------------------------------------------------------------------------

# Configuration "D" of Simonyan & Zisserman: output channels of each 3×3 conv, "M" a 2×2 max pool.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """torchvision's VGG: ``features`` (3×3 convs + ReLU, max pools), ``avgpool`` to 7×7,
    ``classifier`` (4096-4096-classes with dropout)."""

    def __init__(self, features, num_classes=1000, dropout=0.5, *, dtype=None, rng=None):
        super().__init__()
        rng = nn._generator(rng)
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096, dtype=dtype, rng=rng), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096, dtype=dtype, rng=rng), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes, dtype=dtype, rng=rng),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.reshape(x.shape[0], -1))


def _vgg_features(config, dtype, rng):
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1, dtype=dtype, rng=rng), nn.ReLU(True)]
            channels = v
    return nn.Sequential(*layers)


def vgg16(num_classes=1000, *, dtype=None, rng=None):
    """VGG-16 (configuration D, no BatchNorm): 138,357,544 parameters with 1000 classes."""
    rng = nn._generator(rng)
    model = VGG(_vgg_features(_VGG16, dtype, rng), num_classes, dtype=dtype, rng=rng)
    return _init_like_torchvision(model, rng, linear_std=0.01)


# ---------------------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------------------

def _conv3x3(in_planes, out_planes, stride, dtype, rng, groups=1):
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups,
                     bias=False, dtype=dtype, rng=rng)


def _conv1x1(in_planes, out_planes, stride, dtype, rng):
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, dtype=dtype, rng=rng)


class BasicBlock(nn.Module):
    """ResNet-18/34's block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``,
    two 3×3 convolutions; the shortcut (``downsample``: 1×1 conv + BN) only where the
    shape changes."""
    expansion = 1
    fuse_chains = (("conv1", "bn1", "relu"), ("conv2", "bn2"))
    fuse_keeps_activations = False   # relu is used in the chains only

    def __init__(self, inplanes, planes, stride=1, downsample=None, *, dtype=None, rng=None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dtype, rng)
        self.bn1 = nn.BatchNorm2d(planes, dtype=dtype)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dtype, rng)
        self.bn2 = nn.BatchNorm2d(planes, dtype=dtype)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F._add_clamp(out, identity, out=out)   # relu(out + identity), one parallel pass


class Bottleneck(nn.Module):
    """ResNet-50's block: 1×1 reduce, 3×3 (carrying the stride, "ResNet v1.5"), 1×1
    expand ×4, plus the shortcut, then ReLU."""
    expansion = 4
    fuse_chains = (("conv1", "bn1", "relu"), ("conv2", "bn2", "relu"), ("conv3", "bn3"))
    fuse_keeps_activations = False   # relu is used in the chains only

    def __init__(self, inplanes, planes, stride=1, downsample=None, *, dtype=None, rng=None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes, 1, dtype, rng)
        self.bn1 = nn.BatchNorm2d(planes, dtype=dtype)
        self.conv2 = _conv3x3(planes, planes, stride, dtype, rng)
        self.bn2 = nn.BatchNorm2d(planes, dtype=dtype)
        self.conv3 = _conv1x1(planes, planes * self.expansion, 1, dtype, rng)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, dtype=dtype)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F._add_clamp(out, identity, out=out)   # relu(out + identity), one parallel pass


class ResNet(nn.Module):
    """torchvision's ResNet: 7×7/2 stem, 3×3/2 max pool, four stages of blocks
    (``layer1``..``layer4``, stride 2 from the second on), global average pool, ``fc``."""
    fuse_chains = (("conv1", "bn1", "relu"),)
    fuse_keeps_activations = False   # relu is used in the chains only

    def __init__(self, block, layers, num_classes=1000, *, dtype=None, rng=None):
        super().__init__()
        rng = nn._generator(rng)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False, dtype=dtype, rng=rng)
        self.bn1 = nn.BatchNorm2d(64, dtype=dtype)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = self._make_layer(block, planes, blocks, 1 if index == 0 else 2, dtype, rng)
            setattr(self, f"layer{index + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes, dtype=dtype, rng=rng)
        _init_like_torchvision(self, rng)

    def _make_layer(self, block, planes, blocks, stride, dtype, rng):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride, dtype, rng),
                                       nn.BatchNorm2d(planes * block.expansion, dtype=dtype))
        layers = [block(self.inplanes, planes, stride, downsample, dtype=dtype, rng=rng)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dtype=dtype, rng=rng) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


def resnet18(num_classes=1000, *, dtype=None, rng=None):
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 11,689,512 parameters with 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, dtype=dtype, rng=rng)


def resnet50(num_classes=1000, *, dtype=None, rng=None):
    """ResNet-50 (v1.5): Bottlenecks [3, 4, 6, 3], 25,557,032 parameters, 4.1 G
    multiply-adds at 224×224."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, dtype=dtype, rng=rng)


# ---------------------------------------------------------------------------------------
# MobileNetV2
# ---------------------------------------------------------------------------------------

class Conv2dNormActivation(nn.Sequential):
    """torchvision's conv → BatchNorm → ReLU6 unit ("same" padding for odd kernels), a
    Sequential so its children are named "0", "1", "2"."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, *,
                 dtype=None, rng=None):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                      groups=groups, bias=False, dtype=dtype, rng=rng),
            nn.BatchNorm2d(out_channels, dtype=dtype),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expand (×``expand_ratio``, skipped at 1), 3×3 depthwise
    (carrying the stride), 1×1 linear projection -- no activation after it, the
    "linear bottleneck" -- plus the input when stride is 1 and the channels match."""

    def __init__(self, inp, oup, stride, expand_ratio, *, dtype=None, rng=None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1, dtype=dtype, rng=rng))
        layers += [
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, dtype=dtype, rng=rng),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False, dtype=dtype, rng=rng),
            nn.BatchNorm2d(oup, dtype=dtype),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        if not self.use_res_connect:
            return self.conv(x)
        out = self.conv(x)
        return F._add_clamp(out, x, clamp=F._NO_CLAMP, out=out)   # x + out, one parallel pass


def _make_divisible(v, divisor=8):
    """Round ``v`` to the nearest multiple of ``divisor``, never down by more than 10%."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2: ``features`` (stem, 17 InvertedResidual blocks, 1×1 to
    1280), global average pool, ``classifier`` (dropout, Linear)."""

    # expansion t, output channels c, repeats n, first stride s (Sandler et al., table 2)
    settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self, num_classes=1000, width_mult=1.0, dropout=0.2, *, dtype=None, rng=None):
        super().__init__()
        rng = nn._generator(rng)
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features = [Conv2dNormActivation(3, input_channel, stride=2, dtype=dtype, rng=rng)]
        for t, c, n, s in self.settings:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t,
                                                 dtype=dtype, rng=rng))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                             dtype=dtype, rng=rng))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes, dtype=dtype, rng=rng))
        _init_like_torchvision(self, rng, linear_std=0.01)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.reshape(x.shape[0], -1))


def mobilenet_v2(num_classes=1000, *, dtype=None, rng=None):
    """MobileNetV2 (width 1.0): 3,504,872 parameters with 1000 classes."""
    return MobileNetV2(num_classes, dtype=dtype, rng=rng)
