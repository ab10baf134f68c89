#ifndef SYNCYTIUM_COPENBLAS_SHIM_H
#define SYNCYTIUM_COPENBLAS_SHIM_H
#include <stddef.h>
#include <cblas.h>
// openblas_get_config / openblas_get_corename / openblas_get_num_threads /
// openblas_set_num_threads / openblas_get_parallel come from OpenBLAS's cblas.h.

/* LAPACK. libopenblas exports LAPACK's Fortran symbols (`nm -D libopenblas.so.0 | grep dsyevd_`),
   but Debian ships no lapacke.h, so the prototypes we call are declared here. Fortran takes every
   argument by reference and arrays column-major; `blasint` is OpenBLAS's integer (32-bit in the
   LP64 build Debian ships, as for the cblas_* calls). gfortran appends one hidden `size_t` length
   per CHARACTER argument: they are declared and passed (1), because leaving them out is undefined
   behaviour that gfortran's sibling-call optimisation has turned into real crashes (the LAPACK
   breakage R and others hit in 2019; LAPACK's own lapack.h passes them under
   LAPACK_FORTRAN_STRLEN_END). */

/* Eigenvalues (ascending) and optionally eigenvectors of a real symmetric matrix, divide and
   conquer. jobz 'N' values only / 'V' also vectors (overwriting a); uplo 'U'/'L' triangle read.
   lwork = liwork = -1 is a workspace query. info < 0: argument -info was illegal; info > 0: the
   algorithm failed to converge. */
void dsyevd_(const char *jobz, const char *uplo, const blasint *n, double *a, const blasint *lda,
             double *w, double *work, const blasint *lwork, blasint *iwork, const blasint *liwork,
             blasint *info, size_t jobz_len, size_t uplo_len);

#endif
