# Stub for the kernel set pyconv._kernels_avx2: the same interface as every kernel set
# (the same .pxi sources compiled with this set's ISA flags), written once in
# _kernels_generic.pyi.
from pyconv._kernels_generic import *  # noqa: F401,F403
