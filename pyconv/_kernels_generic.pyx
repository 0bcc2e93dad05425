"""Kernel set 'generic': the implicit-GEMM convolution (_igemm.pxi), the direct one
(_direct.pxi, for few channels per group), Winograd's (_winograd.pxi), the GEMV
(_gemv.pxi) and the pooling kernels (_maxpool.pxi, _pooling.pxi) compiled with this
set's ISA flags only (see setup.py); pyconv._dispatch imports it when the CPU has them."""

include "_igemm.pxi"
include "_direct.pxi"
include "_winograd.pxi"
include "_gemv.pxi"
include "_maxpool.pxi"
include "_pooling.pxi"
