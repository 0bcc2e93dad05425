# Stub for a compiled kernel-set module pyconv._kernels_<set> (_igemm.pxi and _direct.pxi
# compiled with that set's ISA flags; the three modules share this interface).
import numpy as np
from numpy.typing import NDArray
from typing import Any, Dict, Optional, TypeVar

_F = TypeVar("_F", np.float32, np.float64)

KERNEL_SET: str
MR: int
NR_F32: int
NR_F64: int

def conv2d_igemm(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F],
                 sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
                 lo: float, hi: float, num_threads: int,
                 residual: Optional[NDArray[_F]] = None) -> None: ...
def conv2d_direct(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F],
                  sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, groups: int,
                  lo: float, hi: float, num_threads: int) -> None: ...
def conv2d_depthwise_cl(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F],
                        sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
                        lo: float, hi: float, num_threads: int) -> None: ...
def c_api() -> Dict[str, Any]: ...
def gather_phase_weights(w: NDArray[_F], out: NDArray[_F], groups: int, u0: int, du: int,
                         v0: int, dv: int, num_threads: int = 1) -> None: ...
def winograd_weights(w: NDArray[np.float32], u: NDArray[np.float32], num_threads: int = 1) -> None: ...
def winograd_conv2d(x: NDArray[np.float32], u: NDArray[np.float32], bias: NDArray[np.float32],
                    y: NDArray[np.float32], ph: int, pw: int, lo: float, hi: float,
                    num_threads: int) -> None: ...
def winograd2_weights(w: NDArray[np.float32], u: NDArray[np.float32], num_threads: int = 1) -> None: ...
def winograd2_conv2d(x: NDArray[np.float32], u: NDArray[np.float32], bias: NDArray[np.float32],
                     y: NDArray[np.float32], ph: int, pw: int, lo: float, hi: float,
                     num_threads: int) -> None: ...
def c_api_direct() -> Dict[str, Any]: ...

DIRECT_BAND_BUDGET: int
DIRECT_MIN_CHUNK_ROWS: int
def workspace_cached_bytes() -> int: ...
GEMV_MAX_ROWS: int
def gemv(x: NDArray[_F], w: NDArray[_F], bias: NDArray[_F], y: NDArray[_F], lo: float, hi: float,
         num_threads: int) -> None: ...
