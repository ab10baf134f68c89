import XCTest
@testable import Collectives

/// The Communicator as one process with no launcher (singleton MPI), as on a laptop.
final class SingleRankTests: XCTestCase {
    let comm = Communicator.world

    func testSingletonIsRankZeroOfOne() {
        XCTAssertEqual(comm.rank, 0)
        XCTAssertEqual(comm.size, 1)
        XCTAssertEqual(comm.localRank, 0)
        XCTAssertEqual(comm.localSize, 1)
        XCTAssertTrue(Communicator.libraryVersion.contains("MPI"), Communicator.libraryVersion)
        XCTAssertGreaterThanOrEqual(Double(Communicator.standardVersion) ?? 0, 3.0)
    }

    func testAllreduceIsIdentityOnOneRank() throws {
        var f: [Float] = [1.5, -2, 3]
        try comm.allreduce(&f, op: .sum)
        XCTAssertEqual(f, [1.5, -2, 3])
        var i: [Int64] = [Int64.max, Int64.min]
        try comm.allreduce(&i, op: .max)
        XCTAssertEqual(i, [Int64.max, Int64.min])
        XCTAssertEqual(try comm.allreduce(value: UInt8(200), op: .min), 200)
        var empty: [Double] = []
        try comm.allreduce(&empty, op: .sum)
        XCTAssertTrue(empty.isEmpty)
    }

    func testGathersOnOneRank() throws {
        XCTAssertEqual(try comm.allgather([Int32(4), 5]), [4, 5])
        let (v, c) = try comm.allgatherv([Double(1), 2, 3])
        XCTAssertEqual(v, [1, 2, 3]); XCTAssertEqual(c, [3])
        let (e, ec) = try comm.allgatherv([Float]())
        XCTAssertTrue(e.isEmpty); XCTAssertEqual(ec, [0])
        let (a, ac) = try comm.alltoallv([UInt8(7), 8], sendCounts: [2])
        XCTAssertEqual(a, [7, 8]); XCTAssertEqual(ac, [2])
        XCTAssertEqual(try comm.broadcast(array: [Int64(9), 10]), [9, 10])
    }

    func testNonblockingAllreduce() throws {
        var x: [Float] = [1, 2, 3]
        let req = try x.withUnsafeMutableBufferPointer { try comm.iallreduce($0, op: .sum) }
        try req.wait()
        XCTAssertTrue(try req.test())
        XCTAssertEqual(x, [1, 2, 3])
    }

    func testUsageErrorsAreThrownNotCrashed() {
        XCTAssertThrowsError(try comm.alltoallv([Float(1)], sendCounts: [0])) { e in
            XCTAssertTrue(e is CollectiveUsageError)
            XCTAssertTrue("\(e)".contains("send counts"), "\(e)")
        }
        var a: [Float] = [0]
        XCTAssertThrowsError(try comm.broadcast(&a, root: 1)) { e in
            XCTAssertTrue("\(e)".contains("root 1"), "\(e)")
        }
    }

    /// A real MPI failure (a negative send tag, which the Swift wrapper passes through and MPI's own
    /// argument check rejects) comes back as a Swift error carrying MPI's message, because the
    /// communicator uses MPI_ERRORS_RETURN. Going through the public API keeps CMPI out of the tests:
    /// Collectives stays its only importer.
    func testMPIFailureBecomesSwiftErrorWithMPIMessage() {
        let one: [Float] = [1]
        XCTAssertThrowsError(try one.withUnsafeBufferPointer { try comm.isend($0, to: 0, tag: -7) }) { e in
            guard let m = e as? MPIError else { return XCTFail("not an MPIError: \(e)") }
            XCTAssertNotEqual(m.code, 0)
            XCTAssertEqual(m.call, "MPI_Isend(to 0)")
            XCTAssertEqual(m.message, mpiErrorString(m.code))
            XCTAssertTrue(m.message.lowercased().contains("tag"), m.message)
            XCTAssertTrue(m.description.hasPrefix("MPI_Isend(to 0) failed: "), m.description)
        }
    }

    /// Order statistics by key bisection equal sorting: negatives, ±0, duplicates, extremes, and
    /// numpy's median convention for even and odd counts.
    func testKthSmallestAndMedianEqualSorting() throws {
        var rng = SystemRandomNumberGenerator()
        var v: [Float] = [-3.5, -0.0, 0.0, 7, 7, 7, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, 1e-42, -1e-42, .infinity]
        for _ in 0..<200 { v.append(Float.random(in: -1e6...1e6, using: &rng).rounded() / 8) }
        let sorted = v.sorted()
        for k in [0, 1, 2, 3, 5, 100, v.count - 2, v.count - 1] { XCTAssertEqual(try comm.kthSmallest(v, k), sorted[k], "k = \(k)") }
        XCTAssertThrowsError(try comm.kthSmallest(v, v.count))
        let odd = Array(v.prefix(101)), s = odd.sorted()
        XCTAssertEqual(try comm.median(odd), Double(s[50]))
        let even = Array(v.prefix(100)), e = even.sorted()
        XCTAssertEqual(try comm.median(even), (Double(e[49]) + Double(e[50])) / 2)
        XCTAssertNil(try comm.median([]))
    }
}
