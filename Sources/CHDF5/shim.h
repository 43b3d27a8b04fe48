// HDF5 (Debian libhdf5-dev, serial, thread-safe build). Imported only by CKAIO.
//
// Many HDF5 "constants" are macros that expand to `H5open(), H5T_NATIVE_FLOAT_g`: Swift cannot
// import them, and reading the `_g` globals directly is a Swift 6 concurrency error. These
// static inline getters return the values; H5P_DEFAULT and H5S_ALL import as Int32 and are
// re-typed here as hid_t.
#ifndef CKA_HDF5_SHIM_H
#define CKA_HDF5_SHIM_H
#include <hdf5.h>

static inline hid_t cka_H5P_DEFAULT(void) { return (hid_t)H5P_DEFAULT; }
static inline hid_t cka_H5S_ALL(void) { return (hid_t)H5S_ALL; }
static inline hid_t cka_H5E_DEFAULT(void) { return (hid_t)H5E_DEFAULT; }
static inline hsize_t cka_H5S_UNLIMITED(void) { return (hsize_t)H5S_UNLIMITED; }
static inline unsigned cka_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned cka_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned cka_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned cka_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }

static inline hid_t cka_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t cka_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t cka_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t cka_H5P_DATASET_ACCESS(void) { return H5P_DATASET_ACCESS; }

static inline hid_t cka_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t cka_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t cka_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t cka_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t cka_H5T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t cka_H5T_NATIVE_UINT16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t cka_H5T_NATIVE_HBOOL(void) { return H5T_NATIVE_HBOOL; }
static inline hid_t cka_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t cka_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline haddr_t cka_HADDR_UNDEF(void) { return HADDR_UNDEF; }
static inline hid_t cka_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t cka_H5T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t cka_H5T_C_S1(void) { return H5T_C_S1; }

/// IEEE binary16, little-endian, as h5py defines it (HDF5 1.10 has no predefined half type).
static inline hid_t cka_make_float16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 ||
        H5Tset_ebias(t, 15) < 0 || H5Tset_precision(t, 16) < 0) { H5Tclose(t); return -1; }
    return t;
}

/// A variable-length UTF-8 string type (what h5py writes for `h5py.string_dtype()`).
static inline hid_t cka_make_vlen_utf8_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) { H5Tclose(t); return -1; }
    return t;
}

static inline int cka_is_variable_string(hid_t t) { return H5Tis_variable_str(t) > 0; }
#endif
