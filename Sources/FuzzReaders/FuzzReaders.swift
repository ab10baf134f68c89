// A structure-aware fuzz target for the readers' parsing of untrusted metadata (issue 17).
//
// Each input's bytes decide a small file — AnnData (CSR, CSC or dense X, obs/var frames with
// categorical, nullable, string and bool columns, column-order, __categories), 10x v3 or a legacy
// (exprs / X,Y) layout — with fuzzed shapes, indptr, indices, values, encodings, string tables and
// attributes, written as a valid HDF5 file through HDF5IO (so the fuzzer explores our parsing, not
// the HDF5 library's). Then `CellReader.read` (one rank) and `CellReader.inspect` run on it. A reader
// must either succeed or throw a CellDataError of one line; a crash, a trap (index out of range,
// overflow) or another error kind is a finding.
//
// Built two ways:
//   fuzzer  (launch/fuzz-readers): swift build -c release --build-path .build-fuzz --product FuzzReaders \
//           -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING   — libFuzzer's driver, coverage-guided;
//   replay  (the ordinary build): FuzzReaders FILE… runs the same harness on saved inputs, e.g. the
//           regression files in Tests/Fixtures/fuzz-readers, and prints one line per input.
import CellData
import Collectives
import HDF5IO
#if canImport(Glibc)
import Glibc
#endif

/// Reads the fuzz input front to back; past its end every value is 0.
struct Bytes {
    let p: UnsafeBufferPointer<UInt8>
    var i = 0
    init(_ p: UnsafeBufferPointer<UInt8>) { self.p = p }
    mutating func u8() -> UInt8 { defer { i += 1 }; return i < p.count ? p[i] : 0 }
    mutating func u32() -> UInt32 { (0..<4).reduce(0) { acc, _ in acc << 8 | UInt32(u8()) } }
    mutating func bool() -> Bool { u8() & 1 == 1 }
    mutating func pick<T>(_ xs: [T]) -> T { xs[Int(u8()) % xs.count] }
    /// A small count most of the time, sometimes an edge value.
    mutating func size(_ small: Int) -> Int64 {
        let b = u8()
        if b < 224 { return Int64(b) % Int64(small + 1) }
        return pick([-1, 0, 1, Int64(Int32.max), Int64(Int32.max) + 1, 1 << 40, Int64.max, Int64.min, 100_000])
    }
    mutating func string() -> String {
        let n = Int(u8() % 6)
        if n == 5 { return pick(["", "csr_matrix", "csc_matrix", "categorical", "array", "_index", "a", "a", "\u{00e9}"]) }
        return String((0..<n).map { _ in Character(UnicodeScalar(UInt8(97) + u8() % 4)) })
    }
    mutating func strings(_ n: Int) -> [String] { (0..<n).map { _ in string() } }
    mutating func float() -> Float {
        let b = u8()
        switch b {
        case 0..<200: return Float(b % 7)
        case 200..<210: return .nan
        case 210..<220: return .infinity
        case 220..<230: return -1
        default: return Float(bitPattern: u32())
        }
    }
}

/// Lengths used for arrays: the declared value when it is small enough to write, else a fuzzed small one.
func len(_ v: Int64, _ b: inout Bytes) -> Int { (0...64).contains(v) ? Int(v) : Int(b.u8() % 9) }

func writeSparse(_ g: H5Group, _ b: inout Bytes, major: Int64, minor: Int64) throws {
    let nMajor = b.bool() ? len(major, &b) : Int(b.u8() % 9)
    var indptr: [Int64] = [b.bool() ? 0 : b.size(4)]
    for _ in 0..<nMajor { indptr.append(b.u8() < 230 ? indptr.last! &+ Int64(b.u8() % 4) : b.size(8)) }
    if b.u8() > 240 { indptr.removeLast(Swift.min(indptr.count, 1)) }
    let nnzDecl = indptr.last ?? 0
    let nnz = b.u8() < 220 ? len(nnzDecl, &b) : Int(b.u8() % 12)
    let indices: [Int64] = (0..<nnz).map { _ in b.u8() < 230 ? Int64(b.u8()) % Swift.max(1, Swift.min(minor, 64)) : b.size(8) }
    let data: [Float] = (0..<nnz).map { _ in b.float() }
    switch b.u8() % 3 {
    case 0: try g.writeDataset("indptr", indptr)
    case 1: try g.writeDataset("indptr", indptr.map { Int32(truncatingIfNeeded: $0) })
    default: if b.bool() { try g.writeStrings("indptr", indptr.map { "\($0)" }) }
    }
    switch b.u8() % 3 {
    case 0: try g.writeDataset("indices", indices.map { Int32(truncatingIfNeeded: $0) })
    case 1: try g.writeDataset("indices", indices)
    default: try g.writeDataset("indices", indices.map { Float($0) })
    }
    switch b.u8() % 4 {
    case 0: try g.writeDataset("data", data)
    case 1: try g.writeDataset("data", data.map { Double($0) })
    case 2: try g.writeDataset("data", data.map { $0.isFinite ? Int32(Swift.max(-9, Swift.min(9, $0))) : 0 })
    default: if b.bool() { try g.writeStrings("data", data.map { "\($0)" }) }
    }
}

/// An anndata dataframe group with fuzzed columns.
func writeFrame(_ g: H5Group, _ b: inout Bytes, rows: Int64) throws {
    let n = len(rows, &b)
    g.setAttributeIgnoringErrors("encoding-type", "dataframe")
    let indexName = b.pick(["_index", "_index", "index", "cell", ""])
    if b.bool() { g.setAttributeIgnoringErrors("_index", indexName) }
    if !indexName.isEmpty, b.u8() < 220 {
        let m = b.u8() < 220 ? n : Int(b.u8() % 9)
        if b.bool() { try g.writeStrings(indexName, b.strings(m)) } else { try g.writeDataset(indexName, (0..<m).map { Int32($0) }) }
    }
    var names: [String] = []
    let cols = Int(b.u8() % 4)
    for k in 0..<cols {
        let name = b.pick(["c\(k)", "cell_type", "batch", "c\(k)"])
        guard !g.exists(name) else { continue }
        names.append(name)
        let m = b.u8() < 220 ? n : Int(b.u8() % 9)
        switch b.u8() % 7 {
        case 0, 1:
            let c = try g.createGroup(name)
            c.setAttributeIgnoringErrors("encoding-type", b.pick(["categorical", "categorical", "categorical", "nullable-integer", ""]))
            let nc = Int(b.u8() % 5)
            let codes: [Int32] = (0..<m).map { _ in b.u8() < 230 ? Int32(b.u8() % UInt8(Swift.max(nc, 1))) : Int32(truncatingIfNeeded: b.size(8)) }
            if b.u8() < 240 { try c.writeDataset("codes", b.bool() ? codes : codes.map { Int32($0 % 3) }) }
            if b.u8() < 240 {
                if b.bool() { try c.writeStrings("categories", b.strings(nc)) } else { try c.writeDataset("categories", (0..<nc).map { Double($0 % 2) }) }
            }
            if b.bool() { c.setAttributeIgnoringErrors("ordered", [Int8(b.u8() % 2)]) }
        case 2:
            let c = try g.createGroup(name)
            c.setAttributeIgnoringErrors("encoding-type", b.pick(["nullable-integer", "nullable-boolean", "nullable-string-array", "nullable-float"]))
            if b.u8() < 240 { try c.writeDataset("values", (0..<m).map { _ in Double(b.u8() % 5) }) }
            if b.u8() < 240 { try c.writeBools("mask", (0..<(b.u8() < 220 ? m : Int(b.u8() % 9))).map { _ in b.bool() }) }
        case 3: try g.writeStrings(name, b.strings(m))
        case 4: try g.writeBools(name, (0..<m).map { _ in b.bool() })
        case 5: try g.writeDataset(name, (0..<m).map { _ in Float(b.u8() % 3) }, shape: b.u8() > 240 ? [m, 1] : [m])
        default:
            try g.writeDataset(name, (0..<m).map { _ in Int32(b.u8() % 6) })
            if b.bool() {
                let lg = g.exists("__categories") ? try g.group("__categories") : try g.createGroup("__categories")
                try lg.writeStrings(name, b.strings(Int(b.u8() % 5)))
            }
        }
    }
    switch b.u8() % 4 {
    case 0: break
    case 1: g.setAttributeIgnoringErrors("column-order", names)
    case 2: g.setAttributeIgnoringErrors("column-order", names + [b.string()])
    default: g.setAttributeIgnoringErrors("column-order", [Int32(1)])
    }
}

extension H5Object {
    /// Attributes the writer refuses (e.g. an empty string array) simply leave the attribute out.
    func setAttributeIgnoringErrors(_ name: String, _ v: String) { try? setAttribute(name, v) }
    func setAttributeIgnoringErrors(_ name: String, _ v: [String]) { if !v.isEmpty { try? setAttribute(name, v) } }
    func setAttributeIgnoringErrors<T: H5Scalar>(_ name: String, _ v: [T]) { if !v.isEmpty { try? setAttribute(name, v) } }
}

func writeInput(_ b: inout Bytes, to path: String) throws {
    let f = try H5File.create(path)
    defer { try? f.close() }
    let root = f.root
    let nObs = b.size(12), nVars = b.size(12)
    switch b.u8() % 6 {
    case 0, 1, 2:  // AnnData
        if b.u8() < 240 { root.setAttributeIgnoringErrors("encoding-type", "anndata") }
        let where_ = b.pick(["X", "X", "X", "layers/counts", "raw/X"])
        if where_ != "X" { _ = try root.createGroup(where_.hasPrefix("layers") ? "layers" : "raw") }
        if b.u8() % 3 == 0 {
            let r = len(nObs, &b), c = len(nVars, &b)
            try root.writeDataset(where_, (0..<(r * c)).map { _ in b.float() }, shape: b.u8() > 240 ? [r * c] : [r, c])
        } else {
            let g = try root.createGroup(where_)
            let csr = b.bool()
            g.setAttributeIgnoringErrors("encoding-type", b.u8() < 230 ? (csr ? "csr_matrix" : "csc_matrix") : b.string())
            let shape = [b.u8() < 230 ? nObs : b.size(64), b.u8() < 230 ? nVars : b.size(64)]
            switch b.u8() % 8 {
            case 0: break
            case 1: g.setAttributeIgnoringErrors("shape", [shape[0]])
            case 2: try g.writeDataset("shape", shape)
            default: g.setAttributeIgnoringErrors("shape", shape)
            }
            try writeSparse(g, &b, major: csr ? shape[0] : shape[1], minor: csr ? shape[1] : shape[0])
        }
        if b.u8() < 230 { try writeFrame(try root.createGroup("obs"), &b, rows: nObs) }
        if b.u8() < 200 { try writeFrame(try root.createGroup("var"), &b, rows: nVars) }
        if where_ == "raw/X", b.bool() { try writeFrame(try root.createGroup("raw/var"), &b, rows: nVars) }
    case 3:  // 10x v3
        let g = try root.createGroup("matrix")
        let shape = [nVars, nObs]
        if b.u8() < 240 { try g.writeDataset("shape", b.u8() < 240 ? shape : [shape[0]]) }
        try writeSparse(g, &b, major: nObs, minor: nVars)
        try g.writeStrings("barcodes", b.strings(b.u8() < 220 ? len(nObs, &b) : Int(b.u8() % 9)))
        if b.bool() {
            let fg = try g.createGroup("features")
            let m = b.u8() < 220 ? len(nVars, &b) : Int(b.u8() % 9)
            for n in ["name", "id", "feature_type", "genome"] where b.u8() < 200 {
                try fg.writeStrings(n, b.strings(b.u8() < 230 ? m : Int(b.u8() % 9)))
            }
        } else if b.bool() {
            try g.writeStrings("gene_names", b.strings(len(nVars, &b)))
            if b.bool() { try g.writeStrings("genes", b.strings(Int(b.u8() % 9))) }
        }
    case 4:  // legacy exprs
        if b.bool() {
            let g = try root.createGroup("exprs")
            if b.bool() { g.setAttributeIgnoringErrors("h5sparse_format", b.pick(["csr", "csc", "coo"])) }
            if b.bool() { g.setAttributeIgnoringErrors("h5sparse_shape", [nObs, nVars]) }
            else { g.setAttributeIgnoringErrors("shape", [nObs, nVars]) }
            try writeSparse(g, &b, major: nObs, minor: nVars)
        } else {
            let r = len(nObs, &b), c = len(nVars, &b)
            try root.writeDataset("exprs", (0..<(r * c)).map { _ in b.float() }, shape: [r, c])
        }
        if b.bool() { try writeFrame(try root.createGroup("obs"), &b, rows: nObs) }
        if b.bool() { try writeFrame(try root.createGroup("var"), &b, rows: nVars) }
        if b.bool() { try root.writeStrings("obs_names", b.strings(b.u8() < 220 ? len(nObs, &b) : Int(b.u8() % 9))) }
        if b.bool() { try root.writeStrings("var_names", b.strings(b.u8() < 220 ? len(nVars, &b) : Int(b.u8() % 9))) }
    default:  // legacy X / Y
        let r = len(nObs, &b), c = len(nVars, &b)
        if b.u8() < 240 { try root.writeDataset("X", (0..<(r * c)).map { _ in b.float() }, shape: b.u8() > 240 ? [r * c] : [r, c]) }
        else { try root.writeStrings("X", b.strings(r)) }
        if b.bool() {
            let m = b.u8() < 220 ? r : Int(b.u8() % 9)
            if b.bool() { try root.writeDataset("Y", (0..<m).map { _ in Int32(b.u8() % 4) }) } else { try root.writeStrings("Y", b.strings(m)) }
        }
    }
}

/// Runs one input; returns a one-line verdict. A crash or trap ends the process (that is the finding).
func runOne(_ data: UnsafeBufferPointer<UInt8>, path: String) -> String {
    var b = Bytes(data)
    do { try writeInput(&b, to: path) } catch { return "skipped (the writer refused the input: \(error))" }
    defer { unlink(path) }
    var verdicts: [String] = []
    var options = ReadOptions()
    options.requireCounts = b.bool()
    if b.bool() { options.requiredObsKeys = ["cell_type"] }
    options.counts = b.pick([.x, .x, .layer("counts"), .raw])
    for step in ["read", "inspect"] {
        do {
            if step == "read" {
                let s = try CellReader.read(path, comm: Communicator.solo, options: options)
                verdicts.append("read \(s.nObs)×\(s.nVars)")
            } else {
                let r = try CellReader.inspect(path, counts: options.counts)
                verdicts.append("inspect \(r.cells)×\(r.genes)")
            }
        } catch let e as CellDataError {
            let line = "\(e)"
            if line.contains("\n") { fatalError("\(step): a CellDataError of more than one line: \(line)") }
            verdicts.append("\(step): error: \(line.split(separator: ":", maxSplits: 1).last.map(String.init) ?? line)")
        } catch {
            fatalError("\(step): not a CellDataError (a raw library error reached the user): \(error)")
        }
    }
    return verdicts.joined(separator: "; ")
}

let scratch = "/tmp/fuzz-readers-\(getpid()).h5"

#if FUZZING
// SwiftPM links an executable's entry point as <target>_main, so libFuzzer's own main() cannot be
// the program's; this entry point hands over to libFuzzer's driver instead.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@main struct Fuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, { data, size in LLVMFuzzerTestOneInput(data, size) }))
    }
}
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    _ = runOne(UnsafeBufferPointer(start: data, count: size), path: scratch)
    return 0
}

#if !FUZZING
@main struct Replay {
    static func main() {
        var failed = 0
        for file in CommandLine.arguments.dropFirst() {
            guard let fp = fopen(file, "rb") else { print("\(file): cannot open"); failed += 1; continue }
            var bytes: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true { let n = fread(&buf, 1, buf.count, fp); if n <= 0 { break }; bytes += buf[0..<n] }
            fclose(fp)
            let verdict = bytes.withUnsafeBufferPointer { runOne($0, path: scratch) }
            print("\(file): \(verdict)")
        }
        exit(failed == 0 ? 0 : 1)
    }
}
#endif
