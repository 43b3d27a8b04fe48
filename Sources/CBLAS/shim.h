// CBLAS and LAPACKE from Debian (OpenBLAS provides BLAS and LAPACK; reference LAPACKE wraps it).
// Imported only by CKATensor.
#include <cblas.h>
#include <lapacke.h>

// Allocator tuning for streaming workloads (see CKATensor's `configureAllocatorForStreaming`).
#include <malloc.h>
static inline void cka_configure_malloc(int mmap_threshold, int trim_threshold) {
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
}
