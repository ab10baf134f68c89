#ifndef SYNCYTIUM_CHDF5_SHIM_H
#define SYNCYTIUM_CHDF5_SHIM_H
// HDF5's property-list classes and native types are macros that call H5open();
// Swift cannot import them, so each one is a static inline function here.
#include <hdf5.h>

static inline int ch5_is_parallel(void) {
#ifdef H5_HAVE_PARALLEL
    return 1;
#else
    return 0;
#endif
}
static inline hid_t ch5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t ch5_p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t ch5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t ch5_p_dataset_xfer(void) { return H5P_DATASET_XFER; }
static inline hid_t ch5_p_dataset_access(void) { return H5P_DATASET_ACCESS; }
static inline hid_t ch5_p_link_create(void) { return H5P_LINK_CREATE; }
static inline hid_t ch5_p_group_create(void) { return H5P_GROUP_CREATE; }
static inline hid_t ch5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t ch5_s_all(void) { return H5S_ALL; }

static inline hid_t ch5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t ch5_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t ch5_native_int8(void) { return H5T_NATIVE_INT8; }
static inline hid_t ch5_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t ch5_native_int16(void) { return H5T_NATIVE_INT16; }
static inline hid_t ch5_native_uint16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t ch5_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t ch5_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t ch5_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t ch5_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t ch5_native_hbool(void) { return H5T_NATIVE_HBOOL; }
static inline hid_t ch5_c_s1(void) { return H5T_C_S1; }
static inline hid_t ch5_std_ref_obj(void) { return H5T_STD_REF_OBJ; }

static inline hsize_t ch5_variable(void) { return H5T_VARIABLE; }
static inline hsize_t ch5_unlimited(void) { return H5S_UNLIMITED; }

static inline unsigned ch5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned ch5_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned ch5_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned ch5_acc_excl(void) { return H5F_ACC_EXCL; }

/* Error stack: turn automatic printing off, and walk the stack into a buffer. */
static inline herr_t ch5_silence_errors(void) { return H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
static inline hid_t ch5_e_default(void) { return H5E_DEFAULT; }

typedef struct { char *buf; size_t cap; size_t len; } ch5_err_sink;
static inline herr_t ch5__walk(unsigned n, const H5E_error2_t *e, void *data) {
    ch5_err_sink *s = (ch5_err_sink *)data;
    if (s->len + 2 >= s->cap) return 0;
    int w = snprintf(s->buf + s->len, s->cap - s->len, "%s%s(): %s",
                     s->len ? "; " : "", e->func_name ? e->func_name : "?", e->desc ? e->desc : "");
    if (w > 0) { s->len += (size_t)w; if (s->len >= s->cap) s->len = s->cap - 1; }
    (void)n;
    return 0;
}
/* Writes the current error stack (innermost first) into buf; returns the length. */
static inline size_t ch5_error_stack_text(char *buf, size_t cap) {
    ch5_err_sink s = { buf, cap, 0 };
    if (cap) buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, ch5__walk, &s);
    return s.len;
}
static inline void ch5_clear_errors(void) { H5Eclear2(H5E_DEFAULT); }

/* MPI-IO file access on a communicator handed in from Swift: `comm` and `info` are the addresses
   of an MPI_Comm and an MPI_Info (Collectives' Communicator.withMPIHandles). This shim only casts
   them; it names no MPI handle and calls no MPI function of its own (hdf5.h includes mpi.h in the
   parallel build, for the types). H5Pset_fapl_mpio duplicates the communicator, so the addresses
   need not outlive the call. */
static inline herr_t ch5_set_fapl_mpio(hid_t fapl, const void *comm, const void *info) {
    return H5Pset_fapl_mpio(fapl, *(const MPI_Comm *)comm, *(const MPI_Info *)info);
}

/* Object kind of a link target: 0 group, 1 dataset, 2 named datatype, -1 unknown/error. */
static inline int ch5_object_kind(hid_t loc, const char *name) {
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return -1;
    switch (info.type) {
    case H5O_TYPE_GROUP: return 0;
    case H5O_TYPE_DATASET: return 1;
    case H5O_TYPE_NAMED_DATATYPE: return 2;
    default: return -1;
    }
}
/* Number of attributes on an object, or -1. */
static inline long long ch5_num_attrs(hid_t obj) {
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
    return (long long)info.num_attrs;
}

// Filter registration (H5Zregister): the macros of H5Zpublic.h.
static inline int ch5_z_class_t_vers(void) { return H5Z_CLASS_T_VERS; }
static inline unsigned ch5_z_flag_reverse(void) { return H5Z_FLAG_REVERSE; }

#endif /* SYNCYTIUM_CHDF5_SHIM_H */
