import XCTest
import Collectives
import HDF5IO

final class HDF5IOTests: XCTestCase {
    func testAttributesStringsAndHyperslabRoundTrip() throws {
        let p = TestFiles.path("h5io-roundtrip.h5")
        do {
            let f = try H5File.create(p)
            let g = try f.root.createGroup("grp")
            try g.setAttribute("vlen", "héllo")
            try g.setFixedStringAttribute("fixed", "abc")
            try g.setAttribute("list", ["x", "yy", ""])
            try g.setAttribute("nums", [Int64(3), 4, 5])
            try g.setAttribute("one", [2.5], scalar: true)
            try g.setBoolAttribute("flag", true)
            try g.writeStrings("vs", ["a", "bb", "ccc", "dddd"])
            try g.writeStrings("fs", ["a", "bb", "ccc", "dddd"], fixedLength: 0)
            try g.writeDataset("z", (0..<1000).map { Float($0) }, chunk: [64], gzip: 6)
            try g.writeDataset("m", (0..<12).map { Int32($0) }, shape: [4, 3])
            try g.writeScalarString("s", "scalar")
            try f.close()
        }
        let f = try H5File.open(p)
        let g = try f.root.group("grp")
        XCTAssertEqual(try g.stringAttribute("vlen"), "héllo")
        XCTAssertEqual(try g.stringAttribute("fixed"), "abc")
        XCTAssertEqual(try g.stringArrayAttribute("list"), ["x", "yy", ""])
        XCTAssertEqual(try g.numericAttribute("nums", as: Int32.self), [3, 4, 5])
        XCTAssertEqual(try g.numericAttribute("one", as: Double.self), [2.5])
        XCTAssertEqual(Set(try g.attributeNames()), ["vlen", "fixed", "list", "nums", "one", "flag"])
        XCTAssertEqual(try g.dataset("vs").readStrings(rows: 1..<3), ["bb", "ccc"])
        XCTAssertEqual(try g.dataset("fs").readStrings(), ["a", "bb", "ccc", "dddd"])
        XCTAssertEqual(try g.dataset("s").readStrings(), ["scalar"])
        let z = try g.dataset("z")
        XCTAssertEqual(z.chunkShape, [64])
        XCTAssertEqual(try z.read(rows: 100..<230, as: Double.self), (100..<230).map { Double($0) })
        let m = try g.dataset("m")
        XCTAssertEqual(m.shape, [4, 3])
        XCTAssertEqual(try m.read(rows: 1..<3, as: Int64.self), [3, 4, 5, 6, 7, 8])
        XCTAssertEqual(g.kind(of: "z"), .dataset)
        XCTAssertNil(g.kind(of: "nope"))
        XCTAssertEqual(try g.memberNames(), ["fs", "m", "s", "vs", "z"])
    }

    func testErrorsCarryHDF5Stack() throws {
        let p = TestFiles.path("h5io-err.h5")
        try H5File.create(p).close()
        let f = try H5File.open(p)
        XCTAssertThrowsError(try f.root.dataset("missing")) { e in
            guard let h = e as? HDF5Error else { return XCTFail("not an HDF5Error: \(e)") }
            XCTAssertTrue(h.operation.contains("missing"))
            XCTAssertFalse(h.stack.isEmpty, "expected HDF5's error stack text")
        }
        XCTAssertThrowsError(try H5File.open(TestFiles.path("does-not-exist.h5")))
        XCTAssertThrowsError(try f.root.dataset("x").read(rows: 0..<1, as: Float.self))
    }

    func testRangeChecksAndStringTypeRejectedAsNumbers() throws {
        let p = TestFiles.path("h5io-range.h5")
        do {
            let f = try H5File.create(p)
            try f.root.writeDataset("v", [Float](repeating: 1, count: 10))
            try f.root.writeStrings("s", ["a"])
            try f.close()
        }
        let f = try H5File.open(p)
        XCTAssertThrowsError(try f.root.dataset("v").read(rows: 5..<11, as: Float.self))
        XCTAssertThrowsError(try f.root.dataset("s").readAll(as: Float.self))
        XCTAssertEqual(try f.root.dataset("v").read(rows: 3..<3, as: Float.self), [])
    }

    /// MPI-IO on a communicator handed in (world, and MPI_COMM_SELF through `solo`): the file
    /// records it, collective writes and reads go through it, and the result is an ordinary HDF5
    /// file that a serial open reads back.
    func testMPIIOOnTheCommunicatorHandedIn() throws {
        for (name, comm) in [("world", Communicator.world), ("solo", Communicator.solo)] {
            let p = TestFiles.path("h5io-mpiio-\(name).h5")
            do {
                let f = try H5File.create(p, communicator: comm)
                XCTAssertTrue(f.isParallel)
                XCTAssertTrue(f.communicator === comm)
                // An MPI-IO file closes only once no object of it is open: the dataset lives in the closure.
                try { () throws -> Void in
                    let d = try f.root.createDataset("v", of: Float.self, shape: [6, 2])
                    try d.write((0..<12).map { Float($0) }, rowStart: 0, transfer: .collective)
                }()
                try f.close()
            }
            let serial = try H5File.open(p)
            XCTAssertFalse(serial.isParallel)
            XCTAssertNil(serial.communicator)
            XCTAssertEqual(try serial.root.dataset("v").readAll(as: Float.self), (0..<12).map { Float($0) })
            try serial.close()
            let again = try H5File.open(p, communicator: comm)
            XCTAssertTrue(again.communicator === comm)
            try { () throws -> Void in
                let d = try again.root.dataset("v")
                XCTAssertEqual(try d.read(rows: 2..<5, as: Double.self, transfer: .collective), (4..<10).map { Double($0) })
            }()
            try again.close()
        }
    }
}
