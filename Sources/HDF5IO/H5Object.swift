import CHDF5

// The base of every open HDF5 object (root group, group, dataset): its id, its path for messages,
// and closing exactly once. Attributes are in H5Attribute.swift.

/// Any open HDF5 object that can carry attributes (file root group, group, dataset).
public class H5Object: @unchecked Sendable {
    public let id: hid_t
    /// Path of the object inside its file ("/" for the root).
    public let path: String
    /// The file's name (for messages).
    public let fileName: String
    let closer: (hid_t) -> herr_t
    private var closed = false

    init(id: hid_t, path: String, fileName: String, closer: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.path = path
        self.fileName = fileName
        self.closer = closer
    }

    deinit { if !closed { _ = closer(id) } }

    func closeNow() throws {
        guard !closed else { return }
        closed = true
        try h5(closer(id), "close '\(path)' in \(fileName)")
    }

    func childPath(_ name: String) -> String {
        path == "/" ? "/" + name : path + "/" + name
    }
}
