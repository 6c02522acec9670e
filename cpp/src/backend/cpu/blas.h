// The one place that maps the CPU backend's BLAS calls onto the library the build found.
// scipy-openblas32 (PyPI, OCTAVO_BLAS_SCIPY_OPENBLAS) prefixes every symbol with scipy_ so
// that it can sit next to another BLAS in one process; a system CBLAS uses the plain names.
#pragma once

#include <cblas.h>

namespace octavo::cpu {

// c[m, n] = a[m, k] . b[n, k]^T + beta * c, row-major, with leading dimensions (row strides).
inline void sgemm_nt(int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                     float beta, float* c, int ldc) {
#ifdef OCTAVO_BLAS_SCIPY_OPENBLAS
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c,
                    ldc);
#else
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
#endif
}

// Threads BLAS may use. Only OpenBLAS has the knob; another CBLAS keeps its own setting.
inline void set_blas_threads(int num_threads) {
#if defined(OCTAVO_BLAS_SCIPY_OPENBLAS)
  scipy_openblas_set_num_threads(num_threads);
#elif defined(OPENBLAS_VERSION)
  openblas_set_num_threads(num_threads);
#else
  (void)num_threads;
#endif
}

}  // namespace octavo::cpu
