import CHDF5

/// The HDF5 library this process runs on.
public enum HDF5Library {
    /// "major.minor.release".
    public static var version: String {
        var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
        H5get_libversion(&maj, &min, &rel)
        return "\(maj).\(min).\(rel)"
    }
    /// Whether the library was built with MPI-IO (parallel HDF5).
    public static var isParallel: Bool { ch5_is_parallel() != 0 }
}
