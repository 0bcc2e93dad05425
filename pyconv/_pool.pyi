# Stub for the compiled module pyconv._pool (max / average / adaptive pooling over planes).
import numpy as np
from numpy.typing import NDArray
from typing import Optional, TypeVar

_F = TypeVar("_F", np.float32, np.float64)

def max_pool2d_forward(x: NDArray[_F], y: NDArray[_F], indices: Optional[NDArray[np.int64]],
                       kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                       num_threads: int) -> None: ...
def avg_pool2d_forward(x: NDArray[_F], y: NDArray[_F], kh: int, kw: int, sh: int, sw: int,
                       ph: int, pw: int, ph_end: int, pw_end: int, dh: int, dw: int,
                       count_include_pad: bool, divisor_override: int,
                       num_threads: int) -> None: ...
def adaptive_pool2d_forward(x: NDArray[_F], y: NDArray[_F], indices: Optional[NDArray[np.int64]],
                            is_max: bool, num_threads: int) -> None: ...
