// CBLAS and LAPACKE from Debian (OpenBLAS provides BLAS and LAPACK; reference LAPACKE wraps it).
// Imported only by CKATensor.
#include <cblas.h>
#include <lapacke.h>
