import CHDF5
#if canImport(Glibc)
import Glibc
#endif

// Memory and C-string helpers shared by the object wrappers.

func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Asks the kernel to back a large, not yet touched buffer with transparent huge pages (as numpy
/// does): faulting in 2 MiB pages instead of 4 KiB ones makes filling a fresh multi-GB array
/// several times faster. A no-op for small buffers and off Linux.
@inline(__always)
func adviseHugePages(_ p: UnsafeMutableRawPointer?, _ bytes: Int) {
    #if os(Linux)
    guard let p, bytes >= 8 << 20 else { return }
    let huge = 2 << 20
    let start = (Int(bitPattern: p) + huge - 1) & ~(huge - 1)
    let end = (Int(bitPattern: p) + bytes) & ~(huge - 1)
    if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
    #endif
}

func decodeFixed(_ bytes: ArraySlice<UInt8>) -> String {
    let trimmed = bytes.prefix { $0 != 0 }
    return String(decoding: trimmed, as: UTF8.self)
}

/// Calls `body` with a contiguous array of C string pointers for `values` (valid only inside).
func withCStringPointers<R>(_ values: [String], _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
    // One buffer holding all strings NUL-terminated, then pointers into it.
    var storage: [CChar] = []
    var offsets: [Int] = []
    offsets.reserveCapacity(values.count)
    for v in values {
        offsets.append(storage.count)
        storage.append(contentsOf: v.utf8.map { CChar(bitPattern: $0) })
        storage.append(0)
    }
    if storage.isEmpty { storage = [0] }
    return try storage.withUnsafeBufferPointer { sb in
        let ptrs: [UnsafePointer<CChar>?] = offsets.map { sb.baseAddress! + $0 }
        return try ptrs.withUnsafeBufferPointer { pb in
            try body(UnsafeRawPointer(pb.baseAddress ?? UnsafePointer(bitPattern: 8)!))
        }
    }
}
