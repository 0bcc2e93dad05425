"""Kernel set 'generic': the implicit-GEMM convolution (_igemm.pxi) compiled with this
set's ISA flags only (see setup.py); pyconv._dispatch imports it when the CPU has them."""

include "_igemm.pxi"
include "_winograd.pxi"
