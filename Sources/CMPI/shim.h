// Open MPI (Debian libopenmpi-dev, pkg-config ompi-c). Imported only by CKADistributed.
//
// MPI_COMM_WORLD, the datatypes, MPI_SUM, MPI_IN_PLACE and MPI_STATUS_IGNORE are macros over the
// addresses of `ompi_mpi_*` globals (or casts of integers to pointers): Swift cannot import them, so
// these static inline getters return their values.
#ifndef CKA_MPI_SHIM_H
#define CKA_MPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm cka_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype cka_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype cka_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype cka_MPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Datatype cka_MPI_INT64_T(void) { return MPI_INT64_T; }
static inline MPI_Op cka_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op cka_MPI_MAX(void) { return MPI_MAX; }
static inline void *cka_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline MPI_Status *cka_MPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline int cka_MPI_ANY_SOURCE(void) { return MPI_ANY_SOURCE; }
static inline int cka_MPI_ANY_TAG(void) { return MPI_ANY_TAG; }
static inline int cka_MPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
static inline int cka_MPI_SUCCESS(void) { return MPI_SUCCESS; }
static inline int cka_status_source(const MPI_Status *s) { return s->MPI_SOURCE; }
static inline int cka_status_tag(const MPI_Status *s) { return s->MPI_TAG; }

#endif
