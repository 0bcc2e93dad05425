/* OpenMP shim: the same kernels compile with and without OpenMP.
 *
 * Without OpenMP, Cython's prange is already a plain serial loop; this header makes
 * the few runtime calls pyconv uses behave as a one-thread OpenMP would.
 */
#ifndef PYCONV_OPENMP_H
#define PYCONV_OPENMP_H

#ifdef _OPENMP
#include <omp.h>
#define PYCONV_HAVE_OPENMP 1
#else
#define PYCONV_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline void omp_set_num_threads(int n) { (void)n; }
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_procs(void) { return 1; }
#endif

#endif
