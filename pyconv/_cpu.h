/* CPU feature detection for the kernel-set dispatch (pyconv._dispatch).
 *
 * Compiled without any ISA flags. GCC's and Clang's __builtin_cpu_supports also
 * check that the OS saves the wide registers (XGETBV), so a "yes" here means the
 * kernel set can run. Elsewhere (aarch64, other compilers) only "generic" is used. */
#ifndef PYCONV_CPU_H
#define PYCONV_CPU_H

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
static int pyconv_cpu_has_avx2_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
static int pyconv_cpu_has_avx512f(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
static int pyconv_cpu_has_avx2_fma(void) { return 0; }
static int pyconv_cpu_has_avx512f(void) { return 0; }
#endif

#endif
