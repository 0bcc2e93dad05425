# Small index helpers shared by the kernel modules (inlined into each of them).
#
# Every kernel in pyconv walks an output row and needs, for one kernel tap, the range
# of output positions whose input position falls inside the real (unpadded) input.
# Computing that range once per (row, tap) is how padding costs nothing: padded taps
# are simply never visited, and no padded copy of the input is ever made.


cdef inline void tap_range(Py_ssize_t off, Py_ssize_t s, Py_ssize_t n_i, Py_ssize_t n_j,
                           Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    """[lo, hi) = the i in [0, n_i) with 0 <= i*s + off < n_j   (s >= 1)."""
    cdef Py_ssize_t a = 0, b = 0
    if off < 0:
        a = (-off + s - 1) // s
    if n_j - 1 - off >= 0:
        b = (n_j - 1 - off) // s + 1
    if b > n_i:
        b = n_i
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline Py_ssize_t rows_per_unit(Py_ssize_t planes, Py_ssize_t rows,
                                     int num_threads) noexcept nogil:
    """Rows of one output plane given to one parallel work unit.

    Whole planes when there are plenty of them; otherwise planes are cut into row
    blocks so that every thread gets about four units (load balance). The split never
    changes a result: each output element is always summed by one thread in one order.
    """
    cdef Py_ssize_t want = 4 * <Py_ssize_t>num_threads, blocks
    if planes >= want or rows <= 1:
        return rows if rows > 0 else 1
    blocks = (want + planes - 1) // planes
    if blocks > rows:
        blocks = rows
    return (rows + blocks - 1) // blocks


cdef inline Py_ssize_t block_end(Py_ssize_t start, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """End of the row block [start, start + rows) cut at n: a work unit's last row + 1."""
    return start + rows if start + rows < n else n
