import COpenBLAS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The OpenBLAS library this process runs on.
public enum BLASLibrary {
    /// Build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64".
    public static var config: String { String(cString: openblas_get_config()) }
    /// The kernel family OpenBLAS chose for this CPU (OPENBLAS_CORETYPE overrides it).
    public static var coreName: String { String(cString: openblas_get_corename()) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    /// 0 sequential, 1 pthreads, 2 OpenMP.
    public static var parallelMode: Int { Int(openblas_get_parallel()) }
}

/// Which OpenBLAS kernels a process should run, and why.
///
/// OpenBLAS 0.3.21 (Debian 12) does not know CPUs newer than its release: on an Intel Sapphire
/// Rapids it falls back to its Prescott (SSE3) kernels, about 5× slower than SkylakeX (AVX-512).
/// OpenBLAS reads `OPENBLAS_CORETYPE` once, when the library is loaded, so the only way to change
/// the kernels of a running process is to start it again with the variable set. `plan()` compares
/// the CPU's instruction set (from /proc/cpuinfo, which also reflects what the OS enabled) with the
/// kernels OpenBLAS picked; the executable re-executes itself before MPI starts when they disagree.
public enum BLASKernelChoice {
    /// Environment variable that records, across the re-execution, what OpenBLAS had detected.
    public static let detectedVariable = "SYNCYTIUM_BLAS_DETECTED"
    /// `SYNCYTIUM_BLAS_AUTOSELECT=0` keeps OpenBLAS's own choice.
    public static let switchVariable = "SYNCYTIUM_BLAS_AUTOSELECT"

    /// OpenBLAS core names by the widest vector unit their kernels use: 0 SSE, 1 AVX, 2 AVX2, 3 AVX-512.
    static func tier(ofCore name: String) -> Int? {
        switch name.lowercased() {
        case "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "opteron", "opteron_sse3",
             "barcelona", "bobcat", "katmai", "coppermine", "northwood", "banias": return 0
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": return 1
        case "haswell", "zen": return 2
        case "skylakex", "cooperlake", "sapphirerapids": return 3
        default: return nil
        }
    }

    /// The best kernel family for a CPU with these /proc/cpuinfo flags, and its tier.
    static func best(forFlags flags: Set<String>) -> (core: String, tier: Int)? {
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains) { return ("SkylakeX", 3) }
        if flags.contains("avx2") && flags.contains("fma") { return ("Haswell", 2) }
        return nil
    }

    /// The CPU's feature flags (Linux); empty where /proc/cpuinfo cannot be read.
    static func cpuFlags() -> Set<String> {
        guard let f = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0, let l = line {
            let s = String(cString: l)
            if s.hasPrefix("flags") || s.hasPrefix("Features") {
                guard let colon = s.firstIndex(of: ":") else { continue }
                return Set(s[s.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
            }
        }
        return []
    }

    /// What to do about the kernels: nil when OpenBLAS's own choice stands; otherwise the core to
    /// set in `OPENBLAS_CORETYPE` before re-executing.
    public static func plan(environment: [String: String]) -> String? {
        if environment[switchVariable] == "0" { return nil }
        if let set = environment["OPENBLAS_CORETYPE"], !set.isEmpty { return nil }
        if environment[detectedVariable] != nil { return nil }   // already re-executed once
        guard let detected = tier(ofCore: BLASLibrary.coreName),
              let want = best(forFlags: cpuFlags()), want.tier > detected else { return nil }
        return want.core
    }

    /// One line on the kernels in use and why, for `syncytium info`.
    public static func explanation(environment: [String: String]) -> String {
        let core = BLASLibrary.coreName
        if let detected = environment[detectedVariable], let set = environment["OPENBLAS_CORETYPE"] {
            return "\(core): OpenBLAS detected \(detected) on this CPU, which has wider vector units; restarted with OPENBLAS_CORETYPE=\(set)"
        }
        if let set = environment["OPENBLAS_CORETYPE"], !set.isEmpty { return "\(core): OPENBLAS_CORETYPE=\(set) from the environment" }
        if environment[switchVariable] == "0" { return "\(core): OpenBLAS's own choice (\(switchVariable)=0)" }
        return "\(core): OpenBLAS's own choice, the best for this CPU"
    }
}
