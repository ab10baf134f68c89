import ArgumentParser
import Collectives
import Foundation
import Pipelines
import SyncytiumBench
import TensorCore

@main
struct Syncytium: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syncytium",
        abstract: "Distributed trainer for single-cell contrastive and graph clustering models.",
        discussion: """
            Runs as one process on a laptop (no launcher needed), under `mpirun -np N`, or under \
            SLURM's `srun`. `launch/run N …` picks the launcher, thread counts and binding for you.
            """,
        version: SyncytiumInfo.version,
        subcommands: [Info.self, Cluster.self, Train.self, Embed.self, Annotate.self, KNNCommand.self, PreprocessCommand.self, Evaluate.self, PlotCommand.self, Inspect.self, Simulate.self, ListModels.self, Bench.self]
    )

    static func main() {
        selectBLASKernels()
        if let n = BLASThreadChoice.plan(environment: ProcessInfo.processInfo.environment, allowedCores: BLASThreadChoice.allowedCores,
                                              defaultThreads: BLASLibrary.threads) {
            BLASLibrary.setThreads(n)
        }
        RankLogHandler.bootstrap()
        main(nil)
    }

    /// Before MPI starts: when OpenBLAS picked older kernels than the CPU supports (OpenBLAS 0.3.21
    /// on CPUs newer than itself), start this same program again with OPENBLAS_CORETYPE set, so
    /// `swift run`, a bare `mpirun` and `srun` get the same kernels as `launch/run`. The process id,
    /// arguments and the rest of the environment stay; MPI has not been initialised yet.
    static func selectBLASKernels() {
        let env = ProcessInfo.processInfo.environment
        guard let core = BLASKernelChoice.plan(environment: env) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        setenv(BLASKernelChoice.detectedVariable, BLASLibrary.coreName, 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when exec failed: carry on with OpenBLAS's choice, and say so.
        let reason = String(cString: strerror(errno))
        unsetenv("OPENBLAS_CORETYPE")
        writeStderr("warning: could not restart with OPENBLAS_CORETYPE=\(core) (\(reason)); BLAS runs on OpenBLAS's \(BLASLibrary.coreName) kernels\n")
    }
}
