#ifndef SYNCYTIUM_COPENBLAS_SHIM_H
#define SYNCYTIUM_COPENBLAS_SHIM_H
#include <cblas.h>
// openblas_get_config / openblas_get_corename / openblas_get_num_threads /
// openblas_set_num_threads / openblas_get_parallel come from OpenBLAS's cblas.h.
#endif
