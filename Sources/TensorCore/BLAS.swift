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

/// How many BLAS threads a rank should run when nobody said.
///
/// OpenBLAS starts one thread per online core in every process. Under a launcher that puts L ranks on
/// one node (a bare `mpirun -np L`, `srun` without `launch/run`), that is L × cores threads on the
/// node's cores: the ranks' GEMMs preempt each other and steps spike several-fold (measured, scNAME on
/// 100k cells, 2 ranks on 2 cores, AMD EPYC: step median 37 ms, 90th percentile 139 ms, max 276 ms with
/// OpenBLAS's 2 threads per rank; 30 / 33 / 37 ms at one thread per rank). `plan` gives each local
/// rank its share of the cores it may run on. `launch/run`'s and a user's `OPENBLAS_NUM_THREADS` /
/// `GOTO_NUM_THREADS` / `OMP_NUM_THREADS` (which OpenBLAS reads itself) and SLURM's cpus-per-task take
/// precedence; one process without a launcher keeps OpenBLAS's default (all cores), capped at the cores
/// its affinity mask allows.
public enum BLASThreadChoice {
    /// Launcher variables holding the number of ranks on this node: Open MPI, MPICH/Hydra, Intel MPI.
    static let localSizeVariables = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"]

    /// Threads for this rank, or nil to leave OpenBLAS's default (`defaultThreads`, one per online
    /// core). `allowedCores`: the CPUs this process may run on (its affinity mask; a binding launcher
    /// narrows it to the rank's own cores, so the share is then at most what the rank owns).
    public static func plan(environment env: [String: String], allowedCores: Int, defaultThreads: Int) -> Int? {
        for v in ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"] where !(env[v] ?? "").isEmpty { return nil }
        // SLURM: the cores the job asked for each task (sbatch/srun --cpus-per-task).
        if let c = env["SLURM_CPUS_PER_TASK"].flatMap(Int.init), c >= 1 { return min(c, max(1, allowedCores)) }
        var local = localSizeVariables.lazy.compactMap { env[$0].flatMap(Int.init) }.first
        if local == nil, let tasks = env["SLURM_STEP_TASKS_PER_NODE"], let node = env["SLURM_NODEID"].flatMap(Int.init) {
            local = slurmTasks(tasks, node: node)
        }
        if let l = local, l > 1 { return max(1, allowedCores / l) }
        // One process (or one rank per node): all the cores it may run on, not more (a cgroup or
        // taskset narrower than the machine).
        return defaultThreads > allowedCores ? max(1, allowedCores) : nil
    }

    /// The tasks on node `node` from SLURM's compressed list, e.g. "2(x3),1" = 2, 2, 2, 1.
    static func slurmTasks(_ list: String, node: Int) -> Int? {
        var i = 0
        for part in list.split(separator: ",") {
            let pieces = part.split(separator: "(")
            guard let n = Int(pieces[0]) else { return nil }
            var repeats = 1
            if pieces.count == 2 {
                guard pieces[1].hasPrefix("x"), pieces[1].hasSuffix(")"), let r = Int(pieces[1].dropFirst().dropLast()) else { return nil }
                repeats = r
            }
            if node < i + repeats { return n }
            i += repeats
        }
        return nil
    }

    /// The CPUs this process may run on (the `Cpus_allowed` mask of /proc/self/status, which a
    /// launcher's binding, taskset or a cgroup cpuset narrows), or the online cores if unknown.
    public static var allowedCores: Int {
        if let f = fopen("/proc/self/status", "r") {
            defer { fclose(f) }
            var line: UnsafeMutablePointer<CChar>? = nil
            var cap = 0
            defer { free(line) }
            while getline(&line, &cap, f) > 0, let l = line {
                let s = String(cString: l)
                if s.hasPrefix("Cpus_allowed:") {
                    if let n = cpusAllowed(status: s), n > 0 { return n }
                    break
                }
            }
        }
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// The number of set bits of the `Cpus_allowed:` line (hex words separated by commas).
    static func cpusAllowed(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") }) else { return nil }
        var n = 0
        for word in line.dropFirst("Cpus_allowed:".count).split(separator: ",") {
            guard let v = UInt64(word.filter { !$0.isWhitespace }, radix: 16) else { return nil }
            n += v.nonzeroBitCount
        }
        return n
    }
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
