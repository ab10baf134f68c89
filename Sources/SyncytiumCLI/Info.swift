import ArgumentParser
import Collectives
import Foundation
import HDF5IO
import Pipelines
import TensorCore

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show versions, the MPI job's shape, and the BLAS/HDF5 libraries in use.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Print only OpenBLAS's detected core type and exit (does not start MPI).")
    var blasCore = false

    struct RankLine: Codable { var rank: Int; var localRank: Int; var host: String; var blasThreads: Int; var blasCore: String }
    struct Report: Codable {
        var version: String
        var mpiLibrary: String
        var mpiStandard: String
        var rank: Int
        var size: Int
        var localRank: Int
        var localSize: Int
        var openblasConfig: String
        var openblasCore: String
        var openblasCoretypeEnv: String?
        /// Which kernels run and why (OpenBLAS's own choice, the environment, or a restart with better ones).
        var openblasCoreReason: String
        var blasThreadsPerRank: Int
        var hdf5Version: String
        var hdf5Parallel: Bool
        var cores: Int
        var ranks: [RankLine]
    }

    func run() throws {
        if blasCore {
            print(BLASLibrary.coreName)
            return
        }
        let comm = Communicator.world
        comm.orAbort {
            let mine = RankLine(rank: comm.rank, localRank: comm.localRank, host: Communicator.hostName,
                                blasThreads: BLASLibrary.threads, blasCore: BLASLibrary.coreName)
            let lines = try comm.allgatherCodable(mine)
            guard comm.rank == 0 else { return }
            let env = ProcessInfo.processInfo.environment
            let report = Report(
                version: SyncytiumInfo.version, mpiLibrary: Communicator.libraryVersion,
                mpiStandard: Communicator.standardVersion, rank: comm.rank, size: comm.size,
                localRank: comm.localRank, localSize: comm.localSize,
                openblasConfig: BLASLibrary.config.trimmingCharacters(in: .whitespaces),
                openblasCore: BLASLibrary.coreName, openblasCoretypeEnv: env["OPENBLAS_CORETYPE"],
                openblasCoreReason: BLASKernelChoice.explanation(environment: env),
                blasThreadsPerRank: BLASLibrary.threads, hdf5Version: HDF5Library.version,
                hdf5Parallel: HDF5Library.isParallel, cores: ProcessInfo.processInfo.activeProcessorCount,
                ranks: lines)
            if json {
                print(try jsonString(report))
            } else {
                print("""
                    syncytium \(report.version)
                    MPI:        \(report.mpiLibrary) (standard \(report.mpiStandard))
                    job:        rank \(report.rank) of \(report.size) (local rank \(report.localRank) of \(report.localSize) on this node)
                    OpenBLAS:   \(report.openblasConfig)
                    BLAS core:  \(report.openblasCoreReason)
                    HDF5:       \(report.hdf5Version), parallel: \(report.hdf5Parallel ? "yes" : "no")
                    cores:      \(report.cores), BLAS threads per rank: \(report.blasThreadsPerRank)
                    """)
                for l in lines {
                    print("  rank \(l.rank): host \(l.host), local rank \(l.localRank), BLAS threads \(l.blasThreads), BLAS core \(l.blasCore)")
                }
            }
        }
    }

}

