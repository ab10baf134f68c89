import CHDF5
import CLZF
#if canImport(Glibc)
import Glibc
#endif

// h5py's LZF filter (HDF5 filter id 32000), which anndata writes with `compression="lzf"` (the
// v0.7.x test archives of anndata store X so). HDF5 has no built-in LZF, and Debian's
// hdf5-plugin-lzf cannot be dlopen'ed by a process that has not loaded liblzf itself, so this
// process registers the decoder on first use of HDF5IO, on top of liblzf.
//
// Chunk format (h5py's lzf_filter.c, as documented there): each chunk is one raw lzf_compress
// block; cd_values[2], when present and non-zero, is the chunk's uncompressed size in bytes.

/// Registers the LZF decoder with HDF5 once per process.
enum LZFFilter {
    static let id: H5Z_filter_t = 32000
    static let registered: Bool = {
        var cls = H5Z_class2_t()
        cls.version = ch5_z_class_t_vers()
        cls.id = id
        cls.encoder_present = 0     // read only: Syncytium writes gzip, never LZF
        cls.decoder_present = 1
        cls.name = UnsafePointer(strdup("lzf"))
        cls.can_apply = nil
        cls.set_local = nil
        cls.filter = { flags, cdCount, cd, nbytes, bufSize, buf in
            guard flags & ch5_z_flag_reverse() != 0, let buf, let bufSize, let input = buf.pointee else { return 0 }
            let known = cdCount >= 3 ? Int(cd![2]) : 0
            var capacity = known > 0 ? known : Swift.max(3 * nbytes, 1 << 16)
            while true {
                guard let out = H5allocate_memory(capacity, false) else { return 0 }
                errno = 0
                let n = lzf_decompress(input, UInt32(truncatingIfNeeded: nbytes), out, UInt32(truncatingIfNeeded: capacity))
                if n > 0 {
                    H5free_memory(input)
                    buf.pointee = out
                    bufSize.pointee = capacity
                    return Int(n)
                }
                H5free_memory(out)
                // Too small a guess without the stored size: grow; otherwise the chunk is corrupt.
                guard errno == E2BIG, known == 0, capacity < (1 << 31) else { return 0 }
                capacity *= 2
            }
        }
        return H5Zregister(&cls) >= 0
    }()
}
