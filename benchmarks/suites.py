"""Named benchmark suites: the layer shapes of real networks, as their papers define them.

A :class:`Layer` is one operator call -- ``conv2d``, ``conv_transpose2d``, ``max_pool2d``,
``avg_pool2d`` or ``global_avg_pool2d`` -- with its input shape, kernel, stride,
padding and dtype. Each suite lists the *distinct* calls of a network (a shape that
recurs, e.g. ResNet's repeated bottleneck blocks, is measured once, under the names of
every place it occurs). ``quick=True`` marks the few cheap layers ``--quick`` runs.

    SUITES["resnet50"]        -> [Layer, ...]
    layer.input_shape, layer.weight_shape, layer.output_shape, layer.macs, layer.flops
"""

import math
from dataclasses import dataclass, field

CONV_OPS = ("conv2d", "conv_transpose2d")
POOL_OPS = ("max_pool2d", "avg_pool2d", "global_avg_pool2d")


@dataclass(frozen=True)
class Layer:
    name: str
    op: str                       # one of CONV_OPS + POOL_OPS
    n: int                        # batch
    c_in: int
    h: int                        # square inputs: h == w
    c_out: int = 0                # convolutions only (pooling keeps the channels)
    k: int = 1                    # square kernels
    stride: int = 1
    padding: int = 0              # the same on every side
    groups: int = 1
    ceil_mode: bool = False       # max pooling
    dtype: str = "float32"
    algorithm: str = "auto"       # pyconv's algorithm= (the winograd suite compares them)
    quick: bool = False
    aliases: tuple = field(default=(), compare=False)

    @property
    def is_conv(self):
        return self.op in CONV_OPS

    @property
    def input_shape(self):
        return (self.n, self.c_in, self.h, self.h)

    @property
    def weight_shape(self):
        """conv2d: (C_out, C_in/groups, k, k); conv_transpose2d: (C_in, C_out/groups, k, k)."""
        if self.op == "conv2d":
            return (self.c_out, self.c_in // self.groups, self.k, self.k)
        if self.op == "conv_transpose2d":
            return (self.c_in, self.c_out // self.groups, self.k, self.k)
        return None

    @property
    def out_size(self):
        h, k, s, p = self.h, self.k, self.stride, self.padding
        if self.op == "conv2d":
            return (h + 2 * p - k) // s + 1
        if self.op == "conv_transpose2d":
            return (h - 1) * s - 2 * p + k
        if self.op == "global_avg_pool2d":
            return 1
        rounding = math.ceil if self.ceil_mode else math.floor
        out = rounding((h + 2 * p - k) / s) + 1
        if self.ceil_mode and (out - 1) * s >= h + p:  # PyTorch: the last window starts inside
            out -= 1
        return out

    @property
    def output_shape(self):
        channels = self.c_out if self.is_conv else self.c_in
        return (self.n, channels, self.out_size, self.out_size)

    @property
    def macs(self):
        """Multiply-adds of a convolution (a transposed one: every input pixel times its k*k*C_out/groups taps)."""
        if self.op == "conv2d":
            n, c, oh, ow = self.output_shape
            return n * c * oh * ow * (self.c_in // self.groups) * self.k * self.k
        if self.op == "conv_transpose2d":
            return self.n * self.c_in * self.h * self.h * (self.c_out // self.groups) * self.k * self.k
        return 0

    @property
    def flops(self):
        """2 * MACs for a convolution; for pooling, one compare/add per window element."""
        if self.is_conv:
            return 2 * self.macs
        if self.op == "global_avg_pool2d":
            return self.n * self.c_in * self.h * self.h
        n, c, oh, ow = self.output_shape
        return n * c * oh * ow * self.k * self.k

    @property
    def label(self):
        """A short description: ``conv 3x3/2 128->128 @56 b8``."""
        kind = {"conv2d": "conv", "conv_transpose2d": "convT", "max_pool2d": "max",
                "avg_pool2d": "avg", "global_avg_pool2d": "global avg"}[self.op]
        parts = [kind]
        if self.op != "global_avg_pool2d":
            parts.append(f"{self.k}x{self.k}" + (f"/{self.stride}" if self.stride > 1 else ""))
        if self.groups > 1:
            parts.append("dw" if self.groups == self.c_in else f"g{self.groups}")
        parts.append(f"{self.c_in}→{self.c_out}" if self.is_conv else str(self.c_in))
        parts.append(f"@{self.h}")
        if self.algorithm != "auto":
            parts.append(f"[{self.algorithm}]")
        return " ".join(parts)


def _distinct(layers):
    """Keep the first layer of each shape; later ones become its aliases."""
    seen = {}
    for layer in layers:
        key = (layer.op, layer.n, layer.c_in, layer.h, layer.c_out, layer.k, layer.stride,
               layer.padding, layer.groups, layer.ceil_mode, layer.dtype, layer.algorithm)
        if key in seen:
            first = seen[key]
            seen[key] = Layer(**{**first.__dict__, "aliases": first.aliases + (layer.name,)})
        else:
            seen[key] = layer
    return list(seen.values())


def _conv(name, n, c_in, h, c_out, k, stride=1, padding=None, groups=1, **kw):
    padding = k // 2 if padding is None else padding
    return Layer(name, "conv2d", n, c_in, h, c_out, k, stride, padding, groups, **kw)


# ---------------------------------------------------------------------------------------
# ResNet-50 (He et al. 2015, torchvision "v1.5": the stride sits in the 3x3 conv)
# ---------------------------------------------------------------------------------------

def resnet50(batch):
    layers = [_conv(f"conv1 b{batch}", batch, 3, 224, 64, 7, 2, 3, quick=batch == 1)]
    c_in, h = 64, 56                                   # after the stem's 3x3/2 max pool
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], 1):
        c_out, h_out = 4 * width, h // stride
        tag = f"layer{stage}"
        layers += [
            _conv(f"{tag}.0.conv1 b{batch}", batch, c_in, h, width, 1),
            _conv(f"{tag}.0.conv2 b{batch}", batch, width, h, width, 3, stride),
            _conv(f"{tag}.0.conv3 b{batch}", batch, width, h_out, c_out, 1),
            _conv(f"{tag}.0.downsample b{batch}", batch, c_in, h, c_out, 1, stride),
            _conv(f"{tag}.1.conv1 b{batch}", batch, c_out, h_out, width, 1),
            _conv(f"{tag}.1.conv2 b{batch}", batch, width, h_out, width, 3),
        ]                                              # blocks 2.. repeat the .1 shapes
        c_in, h = c_out, h_out
    return _distinct(layers)


# ---------------------------------------------------------------------------------------
# VGG-16 (Simonyan & Zisserman 2014, configuration D): thirteen 3x3/1 pad-1 convs
# ---------------------------------------------------------------------------------------

def vgg16():
    layers, c_in, h = [], 3, 224
    for block, (c_out, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], 1):
        for i in range(1, count + 1):
            layers.append(_conv(f"conv{block}_{i}", 1, c_in, h, c_out, 3, quick=(block, i) == (1, 1)))
            c_in = c_out
        h //= 2
    return _distinct(layers)


# ---------------------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018, Table 2): inverted residuals, expand 1x1 ->
# depthwise 3x3 -> project 1x1
# ---------------------------------------------------------------------------------------

def mobilenet_v2():
    layers, c_in, h = [], 32, 112                      # after the 3x3/2 stem
    table = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]   # (expansion t, c, repeats n, stride s)
    for block, (t, c, repeats, stride) in enumerate(table, 1):
        for i in range(repeats):
            s = stride if i == 0 else 1
            hidden = c_in * t
            tag = f"block{block}.{i}"
            if t != 1:
                layers.append(_conv(f"{tag} expand", 1, c_in, h, hidden, 1))
            layers.append(_conv(f"{tag} depthwise", 1, hidden, h, hidden, 3, s, groups=hidden,
                                quick=(block, i) == (2, 0)))
            h //= s
            layers.append(_conv(f"{tag} project", 1, hidden, h, c, 1, quick=(block, i) == (2, 0)))
            c_in = c
    layers.append(_conv("conv_last 1x1", 1, c_in, h, 1280, 1))
    return _distinct(layers)


# ---------------------------------------------------------------------------------------
# Transposed convolutions: DCGAN generator (Radford et al. 2015, as in PyTorch's
# example: nz=100, ngf=64), U-Net up-convolutions (Ronneberger et al. 2015, 572x572
# input), FCN-16s 16x upsampling (Long et al. 2015, 21 PASCAL classes, 512x512 input)
# ---------------------------------------------------------------------------------------

def transposed():
    def convt(name, n, c_in, h, c_out, k, stride, padding, quick=False):
        return Layer(name, "conv_transpose2d", n, c_in, h, c_out, k, stride, padding, quick=quick)
    batch = 8
    return [
        convt(f"DCGAN G.1 b{batch}", batch, 100, 1, 512, 4, 1, 0),
        convt(f"DCGAN G.2 b{batch}", batch, 512, 4, 256, 4, 2, 1),
        convt(f"DCGAN G.3 b{batch}", batch, 256, 8, 128, 4, 2, 1, quick=True),
        convt(f"DCGAN G.4 b{batch}", batch, 128, 16, 64, 4, 2, 1),
        convt(f"DCGAN G.5 b{batch}", batch, 64, 32, 3, 4, 2, 1),
        convt("U-Net up1", 1, 1024, 28, 512, 2, 2, 0),
        convt("U-Net up2", 1, 512, 52, 256, 2, 2, 0),
        convt("U-Net up3", 1, 256, 100, 128, 2, 2, 0),
        convt("U-Net up4", 1, 128, 196, 64, 2, 2, 0),
        convt("FCN-16s upscore16", 1, 21, 32, 21, 32, 16, 8),
    ]


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

def pooling():
    def pool(name, op, c, h, k, stride, padding=0, ceil_mode=False, n=1, quick=False):
        return Layer(name, op, n, c, h, 0, k, stride, padding, ceil_mode=ceil_mode, quick=quick)
    return [
        pool("ResNet stem maxpool", "max_pool2d", 64, 112, 3, 2, 1, quick=True),
        pool("VGG pool1", "max_pool2d", 64, 224, 2, 2),
        pool("VGG pool4", "max_pool2d", 512, 28, 2, 2),
        pool("GoogLeNet maxpool2 (ceil)", "max_pool2d", 192, 56, 3, 2, ceil_mode=True),
        pool("GoogLeNet maxpool3 (ceil)", "max_pool2d", 480, 28, 3, 2, ceil_mode=True),
        pool("Inception-v3 Mixed_5b avg", "avg_pool2d", 192, 35, 3, 1, 1, quick=True),
        pool("Inception-v3 Mixed_6b avg", "avg_pool2d", 768, 17, 3, 1, 1),
        pool("ResNet-50 global avg", "global_avg_pool2d", 2048, 7, 7, 1),
        pool("ResNet-50 global avg b8", "global_avg_pool2d", 2048, 7, 7, 1, n=8),
        # The same pool as ONNX exports of ResNet-50 write it: AveragePool 7x7 on 7x7.
        pool("ResNet-50 avg 7x7 (ONNX form)", "avg_pool2d", 2048, 7, 7, 1),
    ]


# ---------------------------------------------------------------------------------------
# float64: a few of the layers above, in double precision
# ---------------------------------------------------------------------------------------

def float64():
    picks = {
        "resnet50": ["conv1 b1", "layer1.0.conv2 b1", "layer1.1.conv1 b1", "layer3.0.conv2 b1"],
        "mobilenet_v2": ["block3.0 depthwise"],
        "transposed": ["U-Net up3"],
        "pooling": ["ResNet stem maxpool", "Inception-v3 Mixed_5b avg"],
    }
    layers = []
    for suite, names in picks.items():
        by_name = {layer.name: layer for layer in _BUILDERS[suite]()}
        for name in names:
            layer = by_name[name]
            layers.append(Layer(**{**layer.__dict__, "dtype": "float64",
                                   "quick": name in ("layer1.1.conv1 b1", "ResNet stem maxpool")}))
    return layers


# ---------------------------------------------------------------------------------------
# Winograd: the 3x3 stride-1 layers of ResNet-50 (batch 1 and 8) and VGG-16, each run by
# the implicit GEMM and by both Winograd tilings, with the transformed filter cached
# (read-only weights, as nn layers after fuse() and ONNX models hold them)
# ---------------------------------------------------------------------------------------

WINOGRAD_ALGORITHMS = ("gemm", "winograd", "winograd2x2")
SUITE_PEERS = {"winograd": ("torch",)}   # peers per suite, where not all of them


def winograd():
    layers = [layer for layer in resnet50(1) + resnet50(8) + vgg16()
              if layer.k == 3 and layer.stride == 1]
    return [Layer(**{**layer.__dict__, "name": f"{layer.name} [{algorithm}]",
                     "algorithm": algorithm, "aliases": (),
                     "quick": layer.name == "layer4.1.conv2 b1" and algorithm != "gemm"})
            for layer in layers for algorithm in WINOGRAD_ALGORITHMS]


_BUILDERS = {
    "resnet50": lambda: resnet50(1) + resnet50(8),
    "vgg16": vgg16,
    "mobilenet_v2": mobilenet_v2,
    "transposed": transposed,
    "pooling": pooling,
    "float64": float64,
    "winograd": winograd,
}

SUITES = {name: build() for name, build in _BUILDERS.items()}
