import CHDF5
import Collectives

// Files: open or create, serial (POSIX driver) or through MPI-IO on a communicator handed in by
// the caller. The MPI handles come from Collectives (`Communicator.withMPIHandles`) and go
// straight to the C shim: this module names no MPI type or call.

/// An open HDF5 file, serial or through MPI-IO on a communicator.
public final class H5File: @unchecked Sendable {
    public let id: hid_t
    public let path: String
    /// The communicator whose ranks opened the file together with the MPI-IO driver, or nil for
    /// a serial (POSIX driver) file.
    public let communicator: Communicator?
    /// Opened with the MPI-IO driver.
    public var isParallel: Bool { communicator != nil }
    public let root: H5Group
    private var closed = false

    private init(id: hid_t, path: String, communicator: Communicator?) throws {
        self.id = id
        self.path = path
        self.communicator = communicator
        let g = try h5id(H5Gopen2(id, "/", ch5_p_default()), "open root group of \(path)")
        root = H5Group(id: g, path: "/", fileName: path, file: nil)
        root.parallelFile = communicator != nil
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

    static func accessList(communicator: Communicator?) throws -> hid_t {
        HDF5Errors.silence()
        let fapl = try h5id(H5Pcreate(ch5_p_file_access()), "create file access list")
        if let communicator {
            guard ch5_is_parallel() != 0 else {
                H5Pclose(fapl)
                throw HDF5Error(operation: "this HDF5 library has no MPI-IO support", stack: "")
            }
            // A Communicator exists only once MPI is initialised, so no check of that is needed here.
            do {
                try communicator.withMPIHandles { comm, info in
                    try h5(ch5_set_fapl_mpio(fapl, comm, info), "set MPI-IO file access")
                }
            } catch {
                H5Pclose(fapl)
                throw error
            }
        }
        return fapl
    }

    /// Opens an existing file.
    ///
    /// - Parameters:
    ///   - writable: open read-write instead of read-only.
    ///   - communicator: open through MPI-IO on this communicator; every one of its ranks must
    ///     call this together (and later any collective operation on the file). nil: serial.
    public static func open(_ path: String, writable: Bool = false, communicator: Communicator? = nil) throws -> H5File {
        _ = LZFFilter.registered
        let fapl = try accessList(communicator: communicator)
        defer { H5Pclose(fapl) }
        let id = try h5id(H5Fopen(path, writable ? ch5_acc_rdwr() : ch5_acc_rdonly(), fapl), "open \(path)")
        return try H5File(id: id, path: path, communicator: communicator)
    }

    /// Creates (truncates) a file; with a `communicator`, through MPI-IO, every one of its ranks
    /// calling this together. nil: serial.
    public static func create(_ path: String, communicator: Communicator? = nil) throws -> H5File {
        let fapl = try accessList(communicator: communicator)
        defer { H5Pclose(fapl) }
        let fcpl = try h5id(H5Pcreate(ch5_p_file_create()), "create file creation list")
        defer { H5Pclose(fcpl) }
        // Track link creation order like h5py does so groups list in insertion order.
        _ = H5Pset_link_creation_order(fcpl, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED))
        let id = try h5id(H5Fcreate(path, ch5_acc_trunc(), fcpl, fapl), "create \(path)")
        return try H5File(id: id, path: path, communicator: communicator)
    }

    /// Flushes buffers to disk.
    public func flush() throws { try h5(H5Fflush(id, H5F_SCOPE_GLOBAL), "flush \(path)") }
}
