import CHDF5

// Files: open or create, serial (POSIX driver) or through MPI-IO.

/// An open HDF5 file, serial or through MPI-IO on MPI_COMM_WORLD.
public final class H5File: @unchecked Sendable {
    public let id: hid_t
    public let path: String
    /// Opened with the MPI-IO driver (every rank of MPI_COMM_WORLD opened it together).
    public let isParallel: Bool
    public let root: H5Group
    private var closed = false

    private init(id: hid_t, path: String, parallel: Bool) throws {
        self.id = id
        self.path = path
        self.isParallel = parallel
        let g = try h5id(H5Gopen2(id, "/", ch5_p_default()), "open root group of \(path)")
        root = H5Group(id: g, path: "/", fileName: path, file: nil)
        root.parallelFile = parallel
    }

    deinit {
        if !closed {
            try? root.closeNow()
            H5Fclose(id)
        }
    }

    /// Closes the file now (otherwise done when the object goes away). Any objects still open
    /// from it keep the file alive in HDF5 until they are released.
    public func close() throws {
        guard !closed else { return }
        closed = true
        try root.closeNow()
        try h5(H5Fclose(id), "close \(path)")
    }

    /// True when `path` exists and has an HDF5 signature.
    public static func isHDF5(_ path: String) -> Bool {
        HDF5Errors.silence()
        let r = H5Fis_hdf5(path)
        ch5_clear_errors()
        return r > 0
    }

    static func accessList(parallel: Bool) throws -> hid_t {
        HDF5Errors.silence()
        let fapl = try h5id(H5Pcreate(ch5_p_file_access()), "create file access list")
        if parallel {
            guard ch5_is_parallel() != 0 else {
                H5Pclose(fapl)
                throw HDF5Error(operation: "this HDF5 library has no MPI-IO support", stack: "")
            }
            guard ch5_mpi_initialized() != 0 else {
                H5Pclose(fapl)
                throw HDF5Error(operation: "MPI-IO file access needs MPI initialised first (use Communicator.world)",
                                stack: "")
            }
            do {
                try h5(H5Pset_fapl_mpio(fapl, ch5_comm_world(), ch5_info_null()), "set MPI-IO file access")
            } catch {
                H5Pclose(fapl)
                throw error
            }
        }
        return fapl
    }

    /// Opens an existing file. With `parallel`, every rank of MPI_COMM_WORLD must call this together.
    public static func open(_ path: String, writable: Bool = false, parallel: Bool = false) throws -> H5File {
        let fapl = try accessList(parallel: parallel)
        defer { H5Pclose(fapl) }
        let id = try h5id(H5Fopen(path, writable ? ch5_acc_rdwr() : ch5_acc_rdonly(), fapl), "open \(path)")
        return try H5File(id: id, path: path, parallel: parallel)
    }

    /// Creates (truncates) a file. With `parallel`, every rank must call this together.
    public static func create(_ path: String, parallel: Bool = false) throws -> H5File {
        let fapl = try accessList(parallel: parallel)
        defer { H5Pclose(fapl) }
        let fcpl = try h5id(H5Pcreate(ch5_p_file_create()), "create file creation list")
        defer { H5Pclose(fcpl) }
        // Track link creation order like h5py does so groups list in insertion order.
        _ = H5Pset_link_creation_order(fcpl, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED))
        let id = try h5id(H5Fcreate(path, ch5_acc_trunc(), fcpl, fapl), "create \(path)")
        return try H5File(id: id, path: path, parallel: parallel)
    }

    /// Flushes buffers to disk.
    public func flush() throws { try h5(H5Fflush(id, H5F_SCOPE_GLOBAL), "flush \(path)") }
}
