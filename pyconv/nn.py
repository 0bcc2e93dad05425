"""pyconv.nn -- ``torch.nn``-style layers and models over NumPy arrays, for inference.

    model = Sequential(Conv2d(3, 16, 3, padding=1), BatchNorm2d(16), ReLU(), MaxPool2d(2))
    y = model(x)                                   # x: (N, 3, H, W) float32 ndarray
    model.load_state_dict(numpy_state_dict)       # PyTorch key names: "0.weight", "1.running_mean"
    fast = model.fuse()                            # BatchNorm folded into the conv, ReLU clamped in its output pass
    summary(model, (1, 3, 32, 32))                 # shapes, parameters, multiply-adds, receptive field

How the pieces sit:

    Module tree (this file)  --forward-->  pyconv.functional (checks, allocates)  -->  compiled kernels

A :class:`Module` owns NumPy arrays (parameters such as ``weight``, buffers such as
BatchNorm's ``running_mean``) and child modules, all registered by attribute assignment
as in PyTorch, so ``state_dict()`` keys are PyTorch's (``layer1.0.bn1.running_mean``)
and a PyTorch state_dict converted to NumPy loads with ``strict=True``. Layers keep
``torch.nn``'s class names, constructor signatures, defaults and ``repr``; the
convolution and pooling layers call :mod:`pyconv.functional`, the element-wise layers
are one NumPy expression each.

Inference only: there are no gradients; ``train()``/``eval()`` only set the
``training`` flag, and every layer computes its inference function in both modes
(BatchNorm uses its running statistics, Dropout is the identity). Parameters are
float32 unless ``dtype=`` says otherwise; there is no ``device=``. Initialisation is
PyTorch's, drawn from a NumPy generator: ``rng=`` (a ``numpy.random.Generator`` or an
int seed) per layer, or the module-level one that :func:`manual_seed` resets.
"""

import copy
import itertools
import math
from collections import namedtuple

import numpy as np

from pyconv import _args
from pyconv import functional as F

__all__ = [
    "manual_seed", "Parameter", "Buffer", "Module", "Sequential", "Concat", "Identity",
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d",
    "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Flatten",
    "Linear", "Dropout", "BatchNorm1d", "BatchNorm2d",
    "summary", "Summary", "LayerSummary",
]


# ---------------------------------------------------------------------------------------
# Random initialisation
# ---------------------------------------------------------------------------------------

def manual_seed(seed):
    """Reset the generator that layers built without ``rng=`` draw their initial weights from.

    Like PyTorch's default generator it starts from a fixed seed (0), so a script that
    builds a model gets the same weights on every run.
    """
    global _default_generator
    _default_generator = np.random.default_rng(seed)


manual_seed(0)


def _generator(rng):
    """The generator to draw from: ``rng`` (a Generator or an int seed) or the module's."""
    return _default_generator if rng is None else np.random.default_rng(rng)


def _float_dtype(dtype):
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    return dtype


def _uniform(rng, shape, bound, dtype):
    """U(-bound, bound) samples of ``dtype``.

    Drawn directly in float32 when that is the dtype, and scaled in place: VGG-16's
    first fully connected layer alone has 100M weights.
    """
    draw = dtype if dtype in (np.float32, np.float64) else np.float64
    values = rng.random(shape, dtype=draw)
    values *= 2 * bound  # in place: a temporary of that size costs more than the draw
    values -= bound
    return values.astype(dtype, copy=False)


def _default_init(weight_shape, bias_size, fan_in, has_bias, rng, dtype):
    """PyTorch's default (weight, bias) for Linear and convolution layers.

    PyTorch draws the weight with ``kaiming_uniform_(a=sqrt(5))``: bound
    ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a**2)) = sqrt(1/3)``, which is
    simply ``1 / sqrt(fan_in)``; the bias is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` too.
    """
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    weight = _uniform(rng, weight_shape, bound, dtype)
    bias = _uniform(rng, (bias_size,), bound, dtype) if has_bias else None
    return weight, bias


# ---------------------------------------------------------------------------------------
# Module: parameters, buffers and children registered by attribute assignment
# ---------------------------------------------------------------------------------------

class Parameter:
    """Marks an array assigned to a module attribute as a parameter, as in PyTorch:
    ``self.scale = Parameter(np.ones(c))``. The module stores (and returns) the plain array."""

    def __init__(self, data):
        self.data = np.asarray(data)


class Buffer:
    """Marks an array assigned to a module attribute as a buffer (state that is not a
    parameter, such as BatchNorm's running statistics); saved in ``state_dict`` too."""

    def __init__(self, data):
        self.data = np.asarray(data)


class _HookHandle:
    """Returned by :meth:`Module.register_forward_hook`; ``remove()`` unregisters the hook."""
    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self):
        self._hooks.pop(self.id, None)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictKeyError(KeyError):
    """load_state_dict(strict=True) found missing or unexpected keys (the message lists them)."""

    def __str__(self):  # KeyError would print the message as a quoted repr
        return str(self.args[0])


def _registered_array(value, name):
    if value is None:
        return None
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array-like or None: {exc}") from None


class Module:
    """Base class of every layer and model, as ``torch.nn.Module``.

    Subclasses call ``super().__init__()`` first, assign children, ``Parameter(...)``
    and ``Buffer(...)`` as attributes, and define ``forward``; call the module itself,
    not ``forward``, so that forward hooks run.
    """

    # Chains of child names, each a conv → BatchNorm → activation path in forward(),
    # which fuse() may merge. Sequential needs none: its children run in order.
    fuse_chains = ()
    # Whether forward() may call a chain's activation elsewhere too: then fuse() keeps
    # it (applying it again to clamped values changes nothing, but costs a pass over
    # them); a module whose chains own their activations sets False.
    fuse_keeps_activations = True

    def __init__(self):
        # object.__setattr__: our __setattr__ files values into these dicts.
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_hooks", {})
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return
        replaces the output. Returns a handle whose ``remove()`` unregisters it."""
        handle = _HookHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # -- registration --------------------------------------------------------------------

    def _registries(self):
        try:
            return self.__dict__["_parameters"], self.__dict__["_buffers"], self.__dict__["_modules"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 "before assigning parameters, buffers or modules") from None

    def _check_name(self, name):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{type(self).__name__}: a name must be a non-empty string without '.', got {name!r}")

    def _register(self, registry, name, value):
        self._check_name(name)
        if name not in registry:  # a replacement keeps its place (Sequential's order)
            for other in self._registries():
                other.pop(name, None)
            self.__dict__.pop(name, None)
        registry[name] = value

    def register_parameter(self, name, value):
        """Register ``value`` (an array, or None for an absent parameter such as ``bias=False``)."""
        self._register(self._registries()[0], name, _registered_array(value, name))

    def register_buffer(self, name, value):
        """Register ``value`` (an array or None) as a buffer: state that is not a parameter."""
        self._register(self._registries()[1], name, _registered_array(value, name))

    def add_module(self, name, module):
        """Register ``module`` (or None) as the child ``name``."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name} must be a Module or None, got {type(module).__name__}")
        self._register(self._registries()[2], name, module)

    def __setattr__(self, name, value):
        if isinstance(value, Buffer):
            self.register_buffer(name, value.data)
        elif isinstance(value, Parameter):
            self.register_parameter(name, value.data)
        elif isinstance(value, Module):
            self.add_module(name, value)
        else:
            params = self.__dict__.get("_parameters", {})
            buffers = self.__dict__.get("_buffers", {})
            modules = self.__dict__.get("_modules", {})
            if name in params:      # replacing a registered array keeps it registered
                params[name] = _registered_array(value, name)
            elif name in buffers:
                buffers[name] = _registered_array(value, name)
            elif name in modules:
                if value is not None:
                    raise TypeError(f"cannot assign {type(value).__name__} to child module {name!r} "
                                    "(a Module or None is required)")
                modules[name] = None
            else:
                object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails. Read __dict__ directly: during copy or
        # unpickling the registries may not exist yet.
        for registry in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(registry)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in self._registries():
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    # -- traversal -----------------------------------------------------------------------

    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo=None, prefix=""):
        """(dotted name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self.named_children():
            yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def _named_arrays(self, registry, prefix):
        seen = set()
        for module_prefix, module in self.named_modules(prefix=prefix):
            for name, array in getattr(module, registry).items():
                if array is not None and id(array) not in seen:
                    seen.add(id(array))
                    yield (f"{module_prefix}.{name}" if module_prefix else name), array

    def named_parameters(self, prefix=""):
        """(dotted name, array) for every parameter, shared ones once."""
        return self._named_arrays("_parameters", prefix)

    def parameters(self):
        for _, array in self.named_parameters():
            yield array

    def named_buffers(self, prefix=""):
        return self._named_arrays("_buffers", prefix)

    def buffers(self):
        for _, array in self.named_buffers():
            yield array

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant, then on this module; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # -- modes and dtype -----------------------------------------------------------------

    def train(self, mode=True):
        """Set the ``training`` flag here and below. Inference-only: no layer changes
        what it computes (BatchNorm keeps its running statistics, Dropout stays off)."""
        object.__setattr__(self, "training", _args.as_bool(mode, "mode"))
        for module in self.children():
            module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert every floating-point parameter and buffer to ``dtype``, in place; returns self."""
        dtype = _float_dtype(dtype)
        for module in self.modules():
            for registry in (module._parameters, module._buffers):
                for name, array in registry.items():
                    if array is not None and array.dtype.kind == "f":
                        registry[name] = array.astype(dtype)
        return self

    # -- state_dict ----------------------------------------------------------------------

    def _state_entries(self, prefix=""):
        """(key, registry, name) of every parameter and buffer, in PyTorch's state_dict
        order: a module's parameters, then its buffers, then each child's, recursively."""
        for registry in (self._parameters, self._buffers):
            for name, array in registry.items():
                if array is not None:
                    yield prefix + name, registry, name
        for name, module in self.named_children():
            yield from module._state_entries(f"{prefix}{name}.")

    def state_dict(self):
        """{dotted key: array}, with PyTorch's keys and order. The arrays are the
        module's own (not copies), as PyTorch returns its tensors."""
        return {key: registry[name] for key, registry, name in self._state_entries()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` (any array-likes, PyTorch tensors included)
        into this module's parameters and buffers, cast to their current dtypes.

        Everything is checked before anything is copied, so a failed load changes
        nothing. With ``strict`` a missing or unexpected key raises a KeyError; a shape
        mismatch always raises a ValueError; each lists the offending keys. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        entries = {key: (registry, name) for key, registry, name in self._state_entries()}
        missing = [key for key in entries if key not in state_dict]
        unexpected = [key for key in state_dict if key not in entries]
        mismatched = []
        for key, (registry, name) in entries.items():
            if key in state_dict and np.shape(state_dict[key]) != registry[name].shape:
                mismatched.append(f"{key}: expected shape {registry[name].shape}, "
                                  f"got {np.shape(state_dict[key])}")
        problems = []
        if strict and missing:
            problems.append("missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected key(s): " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatch(es): " + "; ".join(mismatched))
        if problems:
            message = f"error(s) loading state_dict into {type(self).__name__}:\n  " + "\n  ".join(problems)
            raise (StateDictKeyError if strict and (missing or unexpected) else ValueError)(message)
        for key, (registry, name) in entries.items():
            if key in state_dict:
                # astype copies: the module never shares memory with the caller's arrays
                registry[name] = np.asarray(state_dict[key]).astype(registry[name].dtype)
        return IncompatibleKeys(missing, unexpected)

    def save(self, path):
        """Write ``state_dict()`` to ``path`` as a NumPy ``.npz`` (NumPy adds the suffix if absent)."""
        np.savez(path, **self.state_dict())

    def load(self, path, strict=True):
        """Load a ``.npz`` written by :meth:`save` (or any npz of state_dict keys); returns self."""
        with np.load(path, allow_pickle=False) as data:
            self.load_state_dict({key: data[key] for key in data.files}, strict=strict)
        return self

    # -- fusion --------------------------------------------------------------------------

    def fuse(self):
        """Return a fused copy for inference (convolution weights read-only); this
        module is left unchanged.

        In the copy, each BatchNorm right after a convolution is folded into it
        (``w' = w·γ/√(var+eps)``, ``b' = (b−μ)·γ/√(var+eps) + β`` per output channel) and a
        ReLU/ReLU6 right after is applied as a clamp in the convolution's output pass.
        "Right after" is known only where the data flow is: between consecutive children
        of a :class:`Sequential`, and along the chains a module lists in ``fuse_chains``
        (ResNet's blocks list ``("conv1", "bn1", "relu")``...). Folded layers become
        :class:`Identity`, so the other state_dict keys stay the same. An activation in
        a ``fuse_chains`` chain is kept, as the module may call it again elsewhere
        (torchvision's ResNet blocks do, after the addition) and applying ReLU to clamped
        values changes nothing, unless the module sets ``fuse_keeps_activations = False``
        (``pyconv.models``' ResNets: their additions clamp by themselves).
        """
        model = copy.deepcopy(self)
        for module in list(model.modules()):
            if isinstance(module, Sequential):
                _fuse_chain(module, list(module._modules), replace_activation=True)
            fused = [name for chain in module.fuse_chains
                     for name in _fuse_chain(module, list(chain), replace_activation=False)]
            if not module.fuse_keeps_activations:
                # only now: chains may share one activation module (ResNet's relu)
                for name in fused:
                    module.add_module(name, Identity())
        # The fused copy is for inference: its convolution weights are made read-only,
        # which lets pyconv.functional cache their Winograd transform (it caches only
        # arrays that cannot change). Load new weights with load_state_dict.
        for module in model.modules():
            if isinstance(module, _ConvNd):
                module.weight.flags.writeable = False
        return model

    # -- repr ----------------------------------------------------------------------------

    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (its constructor arguments)."""
        return ""

    def __repr__(self):
        # PyTorch's layout: one-line for leaves, children indented below as "(name): ...".
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + repr(module).replace("\n", "\n  ")
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


# ---------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------

class Sequential(Module):
    """Children run in order, each on the previous one's output: ``Sequential(a, b, c)``
    names them "0", "1", "2"; a dict (e.g. an OrderedDict) gives the names. Indexable
    (a slice is a Sequential), ``len()``, iterable."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], dict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(args):
                self.add_module(str(index), module)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input

    def _key(self, index):
        keys = list(self._modules)
        if not isinstance(index, (int, np.integer)) or not -len(keys) <= index < len(keys):
            raise IndexError(f"index {index!r} is out of range for a Sequential of length {len(keys)}")
        return keys[index]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(dict(list(self._modules.items())[index]))
        return self._modules[self._key(index)]

    def __setitem__(self, index, module):
        self.add_module(self._key(index), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self


class Concat(Module):
    """Runs every branch on the same input and concatenates the outputs along ``dim``
    (channels by default): the shape of an Inception block. Branches are children
    "0", "1", ...; their outputs must agree in every other dimension."""

    def __init__(self, *branches, dim=1):
        super().__init__()
        self.dim = _args.as_int(dim, "dim")
        for index, branch in enumerate(branches):
            self.add_module(str(index), branch)

    def forward(self, input):
        return np.concatenate([branch(input) for branch in self.children()], axis=self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments, as PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


# ---------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------

def _ntuple(value, nd):
    """PyTorch's _single/_pair: an int repeated ``nd`` times; a sequence or string kept."""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(tuple(v) if isinstance(v, (tuple, list)) else v for v in value)
    return (value,) * nd


class _ConvNd(Module):
    """Shared by the four convolution layers: arguments, weights, fused activation, repr."""
    _nd = None
    _op = None

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 transposed, output_padding, groups, bias, padding_mode, dtype, rng):
        super().__init__()
        nd = self._nd
        self.in_channels = _args.positive_int(in_channels, "in_channels")
        self.out_channels = _args.positive_int(out_channels, "out_channels")
        self.groups = _args.positive_int(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.kernel_size = _args.int_tuple(kernel_size, nd, "kernel_size", 1)
        self.stride = _args.int_tuple(stride, nd, "stride", 1)
        self.dilation = _args.int_tuple(dilation, nd, "dilation", 1)
        self.output_padding = _args.int_tuple(output_padding, nd, "output_padding", 0)
        _args.padding_spec(padding, nd, allow_strings=not transposed)  # raises on a bad value
        self.padding = _ntuple(padding, nd)
        if padding_mode not in _args.PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_args.PADDING_MODES}, got {padding_mode!r}")
        if transposed and padding_mode != "zeros":
            raise ValueError(f"only padding_mode='zeros' is supported for {type(self).__name__}")
        self.padding_mode = padding_mode
        self.transposed = transposed
        # (lo, hi) of an activation fused by fuse(), applied in the kernel's output pass.
        self.clamp = None

        if transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        fan_in = shape[1] * math.prod(self.kernel_size)  # PyTorch takes it from weight dim 1
        weight, bias = _default_init(shape, self.out_channels, fan_in, _args.as_bool(bias, "bias"),
                                     _generator(rng), _float_dtype(dtype))
        self.weight = Parameter(weight)
        self.register_parameter("bias", bias)

    def _clamp(self):
        return F._NO_CLAMP if self.clamp is None else self.clamp

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.clamp is not None:
            s += f", clamp={self.clamp}"
        return s


class _Conv(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", dtype=None, *, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         False, 0, groups, bias, padding_mode, dtype, rng)

    def forward(self, input):
        # F.conv1d/conv2d have no fused-activation argument; their shared body does.
        # The plan keeps this call's checked form for the next one (F._ConvPlan).
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._plan = F._ConvPlan()
        return F._conv(self._op, self._nd, input, self.weight, self.bias, self.stride,
                       self.padding, self.dilation, self.groups, self.padding_mode,
                       out=None, flip=False, clamp=self._clamp(), plan=plan)


class Conv1d(_Conv):
    """1-D convolution (correlation) layer, ``torch.nn.Conv1d``: weight ``(C_out, C_in/groups, k)``."""
    _nd, _op = 1, "conv1d"


class Conv2d(_Conv):
    """2-D convolution (correlation) layer, ``torch.nn.Conv2d``: weight ``(C_out, C_in/groups, kh, kw)``.

    ``padding`` as :func:`pyconv.functional.conv2d` ('same' works with any stride, unlike
    PyTorch's layer); ``padding_mode`` 'zeros', 'reflect', 'replicate' or 'circular'.
    """
    _nd, _op = 2, "conv2d"


class _ConvTranspose(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 dtype=None, *, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         True, output_padding, groups, bias, padding_mode, dtype, rng)

    def forward(self, input, output_size=None):
        """``output_size`` (the spatial sizes wanted, as in PyTorch) picks the output_padding."""
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(np.shape(input), output_size)
        return F._conv_transpose(self._op, self._nd, input, self.weight, self.bias, self.stride,
                                 self.padding, output_padding, self.groups, self.dilation,
                                 out=None, clamp=self._clamp())

    def _output_padding(self, input_shape, output_size):
        """The output_padding that makes the output ``output_size``: a strided transposed
        convolution can produce ``stride`` different sizes, and this picks one."""
        nd = self._nd
        wanted = tuple(output_size)[-nd:]
        pads = _args.padding_spec(self.padding, nd, allow_strings=False)
        result = []
        for size, want, k, s, d, (pb, pe) in zip(input_shape[-nd:], wanted, self.kernel_size,
                                                 self.stride, self.dilation, pads):
            smallest = (size - 1) * s - pb - pe + d * (k - 1) + 1
            if not smallest <= want < smallest + s:
                raise ValueError(f"{type(self).__name__}: output_size {tuple(output_size)} is not "
                                 f"reachable; each size must lie in [{smallest}, {smallest + s - 1}]")
            result.append(want - smallest)
        return tuple(result)


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution, ``torch.nn.ConvTranspose1d``: weight ``(C_in, C_out/groups, k)``."""
    _nd, _op = 1, "conv_transpose1d"


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution, ``torch.nn.ConvTranspose2d``: weight ``(C_in, C_out/groups, kh, kw)``."""
    _nd, _op = 2, "conv_transpose2d"


# ---------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------

class _MaxPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input):
        return self._function(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    """``torch.nn.MaxPool1d``: the maximum of each window (NaN wins)."""
    _function = staticmethod(F.max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """``torch.nn.MaxPool2d``: the maximum of each window (NaN wins)."""
    _function = staticmethod(F.max_pool2d)


class AvgPool1d(Module):
    """``torch.nn.AvgPool1d``: the mean of each window. (PyTorch stores its arguments as
    1-tuples, and so does this layer.)"""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size = _ntuple(kernel_size, 1)
        self.stride = _ntuple(kernel_size if stride is None else stride, 1)
        self.padding = _ntuple(padding, 1)
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input):
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """``torch.nn.AvgPool2d``: the mean of each window (divisor rules as :func:`pyconv.functional.avg_pool2d`)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input):
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptivePool(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return self._function(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _AdaptiveMaxPool(_AdaptivePool):
    def __init__(self, output_size, return_indices=False):
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input):
        return self._function(input, self.output_size, self.return_indices)


class AdaptiveAvgPool1d(_AdaptivePool):
    """``torch.nn.AdaptiveAvgPool1d``: output j averages input [floor(jL/O), ceil((j+1)L/O))."""
    _function = staticmethod(F.adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptivePool):
    """``torch.nn.AdaptiveAvgPool2d``; ``AdaptiveAvgPool2d(1)`` is global average pooling."""
    _function = staticmethod(F.adaptive_avg_pool2d)


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """``torch.nn.AdaptiveMaxPool1d``."""
    _function = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """``torch.nn.AdaptiveMaxPool2d``."""
    _function = staticmethod(F.adaptive_max_pool2d)


# ---------------------------------------------------------------------------------------
# Element-wise layers, Flatten, Linear, Dropout, BatchNorm
# ---------------------------------------------------------------------------------------

class _Activation(Module):
    """An element-wise function; ``inplace=True`` overwrites the input array, as in PyTorch."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return self._apply(np.asarray(input), input if self.inplace else None)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    """``max(x, 0)``."""

    def _apply(self, x, out):
        return np.maximum(x, 0, out=out)


class ReLU6(_Activation):
    """``min(max(x, 0), 6)``, MobileNet's bounded ReLU."""

    def _apply(self, x, out):
        return np.clip(x, 0, 6, out=out)


class LeakyReLU(_Activation):
    """``x`` where ``x >= 0``, else ``negative_slope * x``."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__(inplace)
        self.negative_slope = negative_slope

    def _apply(self, x, out):
        if out is None:
            return np.where(x >= 0, x, x * self.negative_slope)
        return np.multiply(x, self.negative_slope, out=out, where=x < 0)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """``1 / (1 + exp(-x))``."""

    def forward(self, input):
        # The tanh form never overflows, unlike exp(-x) for large negative x.
        return 0.5 * (1 + np.tanh(0.5 * np.asarray(input)))


class Tanh(Module):
    def forward(self, input):
        return np.tanh(input)


class Softmax(Module):
    """``exp(x) / sum(exp(x))`` along ``dim``."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        x = np.asarray(input)
        dim = self.dim
        if dim is None:  # PyTorch's legacy choice for an unspecified dim
            dim = 0 if x.ndim in (0, 1, 3) else 1
        e = np.exp(x - np.max(x, axis=dim, keepdims=True))  # shifted: exp cannot overflow
        return e / np.sum(e, axis=dim, keepdims=True)

    def extra_repr(self):
        return f"dim={self.dim}"


class Flatten(Module):
    """Merges dimensions ``start_dim`` .. ``end_dim`` into one (a view where possible)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input):
        x = np.asarray(input)
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Linear(Module):
    """``y = x @ weight.T + bias``, ``torch.nn.Linear``: weight ``(out_features, in_features)``."""

    def __init__(self, in_features, out_features, bias=True, dtype=None, *, rng=None):
        super().__init__()
        self.in_features = _args.positive_int(in_features, "in_features")
        self.out_features = _args.positive_int(out_features, "out_features")
        weight, bias = _default_init((self.out_features, self.in_features), self.out_features,
                                     self.in_features, _args.as_bool(bias, "bias"),
                                     _generator(rng), _float_dtype(dtype))
        self.weight = Parameter(weight)
        self.register_parameter("bias", bias)

    def forward(self, input):
        x = np.asarray(input)
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"Linear: input's last dimension must be {self.in_features}, got shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Dropout(Module):
    """The identity at inference (this library does not train)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return input

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class _BatchNorm(Module):
    """``y = (x − running_mean) / √(running_var + eps) · weight + bias`` per channel (dim 1).

    Inference only, in both modes. Without running statistics
    (``track_running_stats=False``) it normalises with the input's own statistics, as
    PyTorch does then.
    """
    _input_ndims = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=None, *, bias=True):
        super().__init__()
        self.num_features = _args.positive_int(num_features, "num_features")
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = _float_dtype(dtype)
        self.register_parameter("weight", np.ones(num_features, dtype) if affine else None)
        self.register_parameter("bias", np.zeros(num_features, dtype) if affine and bias else None)
        if track_running_stats:
            self.running_mean = Buffer(np.zeros(num_features, dtype))
            self.running_var = Buffer(np.ones(num_features, dtype))
            self.num_batches_tracked = Buffer(np.array(0, np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def scale_and_shift(self, input=None):
        """(scale, shift) with ``y = x·scale + shift`` per channel, computed in float64."""
        if self.running_mean is not None:
            mean, var = self.running_mean.astype(np.float64), self.running_var.astype(np.float64)
        else:
            axes = tuple(a for a in range(input.ndim) if a != 1)
            mean, var = input.mean(axis=axes, dtype=np.float64), input.var(axis=axes, dtype=np.float64)
        scale = 1 / np.sqrt(var + self.eps)
        shift = -mean * scale
        if self.weight is not None:
            scale, shift = scale * self.weight, shift * self.weight
        if self.bias is not None:
            shift = shift + self.bias
        return scale, shift

    def forward(self, input):
        x = np.asarray(input)
        if x.ndim not in self._input_ndims:
            want = " or ".join(f"{d}D" for d in self._input_ndims)
            raise ValueError(f"{type(self).__name__}: expected {want} input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels "
                             f"(dim 1), got shape {x.shape}")
        scale, shift = self.scale_and_shift(x)
        params = [a.dtype for a in (self.weight, self.running_mean) if a is not None]
        dtype = np.result_type(x.dtype, *params)
        dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
        per_channel = (-1,) + (1,) * (x.ndim - 2)
        return x * scale.astype(dtype).reshape(per_channel) + shift.astype(dtype).reshape(per_channel)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d`` at inference: input ``(N, C)`` or ``(N, C, L)``."""
    _input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d`` at inference: input ``(N, C, H, W)``."""
    _input_ndims = (4,)


# ---------------------------------------------------------------------------------------
# Fusion: conv → BatchNorm → ReLU/ReLU6 into one convolution
# ---------------------------------------------------------------------------------------

# The activations a convolution kernel can apply in its output pass, as (lo, hi) clamps.
_CLAMPS = {ReLU: (0.0, np.inf), ReLU6: (0.0, 6.0)}


def _can_fold(conv, bn):
    return (isinstance(bn, _BatchNorm) and bn.running_mean is not None
            and bn.num_features == conv.out_channels and conv.clamp is None)


def _fold_batch_norm(conv, bn):
    """Fold an inference BatchNorm into the convolution before it:
    ``w' = w·scale``, ``b' = b·scale + shift`` per output channel (scale = γ/√(var+eps),
    shift = β − μ·scale), computed in float64 and stored in the conv's dtype."""
    scale, shift = bn.scale_and_shift()
    w = conv.weight.astype(np.float64)
    spatial = (1,) * conv._nd
    if conv.transposed:
        # Output channel g·(C_out/groups) + j is column j of group g's rows of the weight.
        per_group = conv.out_channels // conv.groups
        grouped = w.reshape((conv.groups, -1, per_group) + conv.kernel_size)
        w = (grouped * scale.reshape((conv.groups, 1, per_group) + spatial)).reshape(w.shape)
    else:
        w = w * scale.reshape((-1, 1) + spatial)
    bias = 0.0 if conv.bias is None else conv.bias.astype(np.float64)
    conv.weight = w.astype(conv.weight.dtype)
    conv.bias = (bias * scale + shift).astype(conv.weight.dtype)


def _fuse_chain(owner, names, replace_activation):
    """Fuse every conv → [BatchNorm] → [ReLU/ReLU6] run among ``owner``'s children
    ``names``, which data flows through in that order. A folded BatchNorm becomes
    Identity; so does a fused activation when ``replace_activation``. Returns the
    names of the fused activations."""
    children = [owner._modules.get(name) for name in names]
    fused = []
    i = 0
    while i < len(names):
        conv = children[i]
        i += 1
        if not isinstance(conv, _ConvNd) or conv.clamp is not None:
            continue
        if i < len(names) and _can_fold(conv, children[i]):
            _fold_batch_norm(conv, children[i])
            owner.add_module(names[i], Identity())
            i += 1
        if i < len(names) and type(children[i]) in _CLAMPS:
            conv.clamp = _CLAMPS[type(children[i])]
            fused.append(names[i])
            if replace_activation:
                owner.add_module(names[i], Identity())
            i += 1
    return fused


# ---------------------------------------------------------------------------------------
# summary(): shapes, parameters, multiply-adds and receptive fields, layer by layer
# ---------------------------------------------------------------------------------------

LayerSummary = namedtuple("LayerSummary", ["name", "type", "output_shape", "params", "macs",
                                           "receptive_field", "jump"])
LayerSummary.__doc__ = """One leaf-module call: its output shape, its own parameter count,
its multiply-adds, and the receptive field (in input pixels, per spatial dim) and jump
(input pixels between neighbouring outputs) of its output; None where not spatial."""


class Summary:
    """What :func:`summary` found: ``rows`` (LayerSummary per leaf call, in execution
    order), ``total_params``, ``total_macs``; ``str()`` is the printed table."""

    def __init__(self, model_name, input_shape, rows, total_params):
        self.model_name = model_name
        self.input_shape = input_shape
        self.rows = rows
        self.total_params = total_params
        self.total_macs = sum(row.macs for row in rows)

    def __str__(self):
        def dims(values):
            if values is None:
                return "-"
            values = [int(v) if float(v).is_integer() else round(float(v), 3) for v in values]
            return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))

        header = ("Layer (type)", "Output shape", "Params", "Mult-adds", "RF", "Jump")
        table = [(f"{r.name} ({r.type})", str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                  dims(r.receptive_field), dims(r.jump)) for r in self.rows]
        widths = [max(len(line[c]) for line in [header] + table) for c in range(len(header))]
        fmt = "  ".join(["{:<%d}" % widths[0], "{:<%d}" % widths[1]] + ["{:>%d}" % w for w in widths[2:]])
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines = [f"{self.model_name}, input {self.input_shape}", rule, fmt.format(*header), rule]
        lines += [fmt.format(*line) for line in table]
        lines += [rule, f"Total params: {self.total_params:,}",
                  f"Total mult-adds: {self.total_macs:,} ({self.total_macs / 1e9:.2f} G)", rule]
        return "\n".join(lines)

    __repr__ = __str__


def _macs(module, x, y):
    """Multiply-adds of one call: convolutions and Linear only (the rest is comparatively free)."""
    if isinstance(module, _ConvNd):
        taps = math.prod(module.kernel_size)
        if module.transposed:  # every input element meets C_out/groups · k weights
            return x.size * (module.out_channels // module.groups) * taps
        return y.size * (module.in_channels // module.groups) * taps
    if isinstance(module, Linear):
        return y.size * module.in_features
    return 0


def _window(module, in_sizes, out_sizes):
    """(kernel, stride, dilation) per spatial dim of a sliding-window layer, else None.

    Adaptive pooling uses its widest window and its mean stride L/O; a transposed
    convolution returns a stride of 1/s (its outputs are s times denser than its inputs).
    """
    nd = len(in_sizes)
    if isinstance(module, _ConvNd):
        if module.transposed:
            # An output sees at most ceil(span / s) input positions.
            taps = tuple(-(-(d * (k - 1) + 1) // s) for k, s, d in
                         zip(module.kernel_size, module.stride, module.dilation))
            return taps, tuple(1 / s for s in module.stride), (1,) * nd
        return module.kernel_size, module.stride, module.dilation
    if isinstance(module, (_MaxPoolNd, AvgPool1d, AvgPool2d)):
        kernel = _args.int_tuple(module.kernel_size, nd, "kernel_size", 1)
        stride = _args.int_tuple(module.stride, nd, "stride", 1)
        dilation = _args.int_tuple(getattr(module, "dilation", 1), nd, "dilation", 1)
        return kernel, stride, dilation
    if isinstance(module, _AdaptivePool):
        kernel = tuple(max(-(-(j + 1) * n // o) - j * n // o for j in range(o))
                       for n, o in zip(in_sizes, out_sizes))
        return kernel, tuple(n / o for n, o in zip(in_sizes, out_sizes)), (1,) * nd
    return None


def summary(model, input_shape, *, dtype=np.float32, verbose=True):
    """Per leaf layer: output shape, parameters, multiply-adds, receptive field and jump.

    ``input_shape`` includes the batch, e.g. ``(1, 3, 224, 224)``. The model runs once
    on zeros with a forward hook on every leaf module, so any forward() works
    (residual additions, concatenations) and a module called twice gives two rows.
    Prints the table when ``verbose`` and returns a :class:`Summary`.

    Receptive field ``rf`` and ``jump`` follow the notes: through a layer with kernel
    k, stride s, dilation d, ``rf += (k − 1)·d·jump`` and ``jump *= s``; element-wise
    layers keep both. They are tracked per array: a layer's input is normally the
    output of an earlier layer; when it is not (the result of ``out + identity`` or a
    concatenation), the largest receptive field computed so far is taken -- the max
    over the merged branches. Once the output has no spatial dims (after Flatten or
    Linear) they are "-". Totals: the model's parameters (shared ones once) and the
    multiply-adds of convolutions and Linear layers.
    """
    input_shape = tuple(_args.as_int(s, "input_shape") for s in input_shape)
    nd = len(input_shape) - 2
    x = np.zeros(input_shape, dtype=dtype)
    # id(array) -> (rf, jump, the array itself: kept alive so that no other array gets its id)
    fields = {id(x): ((1,) * nd, (1,) * nd, x)} if nd >= 1 else {}
    rows = []

    def record(name, module, inputs, output):
        y = output[0] if isinstance(output, tuple) else output  # max pooling with indices
        x = inputs[0]
        if id(x) in fields:
            rf, jump, _ = fields[id(x)]
        elif fields:  # merged branches: the widest view among them
            rf, jump, _ = max(fields.values(), key=lambda field: max(field[0]))
        else:
            rf = jump = None
        window = _window(module, x.shape[2:], y.shape[2:]) if y.ndim > 2 else None
        if rf is None or y.ndim <= 2 or len(rf) != y.ndim - 2:
            rf = jump = None
        elif window is not None:
            kernel, stride, dilation = window
            rf = tuple(r + (k - 1) * d * j for r, k, d, j in zip(rf, kernel, dilation, jump))
            jump = tuple(j * s for j, s in zip(jump, stride))
        if rf is not None:
            fields[id(y)] = (rf, jump, y)
        params = sum(p.size for p in module._parameters.values() if p is not None)
        rows.append(LayerSummary(name or "(model)", type(module).__name__, y.shape, params,
                                 _macs(module, x, y), rf, jump))

    handles = [module.register_forward_hook(
                   lambda module, inputs, output, name=name: record(name, module, inputs, output))
               for name, module in model.named_modules() if not module._modules]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    result = Summary(type(model).__name__, input_shape, rows,
                     sum(p.size for p in model.parameters()))
    if verbose:
        print(result)
    return result
