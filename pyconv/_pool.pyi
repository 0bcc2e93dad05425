# Stub for the compiled module pyconv._pool: the C API of pooling (pyconv/_pool.pxd);
# its kernels and their Python entries are the kernel sets' (pyconv/_kernels_<set>.pyi).

def _bind_kernel_set(kernels: object) -> None: ...
