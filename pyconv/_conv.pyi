# Stub for the compiled module pyconv._conv (direct correlation / transposed convolution).
import numpy as np
from numpy.typing import NDArray
from types import ModuleType
from typing import TypeVar, Union

_F = TypeVar("_F", np.float32, np.float64)

def conv2d_forward(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F],
                   sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
                   lo: float, hi: float, num_threads: int) -> None: ...
def conv_transpose2d_forward(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F],
                             sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
                             lo: float, hi: float, num_threads: int) -> None: ...
def c_api_kernel_set() -> Union[str, None]: ...
def _bind_gemm(kernels: ModuleType) -> None: ...
def col2im_add_pixels(cols: NDArray[_F], y: NDArray[_F], h: int, wd: int, kh: int, kw: int,
                      sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                      lo: float, hi: float, num_threads: int) -> None: ...
def col2im_add(cols: NDArray[_F], y: NDArray[_F], kh: int, kw: int,
               sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
               lo: float, hi: float, num_threads: int) -> None: ...
def add_clamp(a: NDArray[_F], b: NDArray[_F], y: NDArray[_F], lo: float, hi: float,
              num_threads: int) -> None: ...
