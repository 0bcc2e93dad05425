"""Kernel set 'avx2': the implicit-GEMM convolution (_igemm.pxi) and the direct one
(_direct.pxi, for few channels per group) compiled with this set's ISA flags only
(see setup.py); pyconv._dispatch imports it when the CPU has them."""

include "_igemm.pxi"
include "_direct.pxi"
include "_winograd.pxi"
include "_gemv.pxi"
include "_maxpool.pxi"
