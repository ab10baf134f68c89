import ArgumentParser
import Collectives

@main
struct Syncytium: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "syncytium",
        abstract: "Distributed trainer for single-cell contrastive and graph clustering models.",
        discussion: """
            Runs as one process on a laptop (no launcher needed), under `mpirun -np N`, or under \
            SLURM's `srun`. `launch/run N …` picks the launcher, thread counts and binding for you.
            """,
        version: SyncytiumVersion.string,
        subcommands: [Info.self, Train.self, Cluster.self, Bench.self, Inspect.self, Simulate.self, PreprocessCommand.self, KNNCommand.self, Evaluate.self]
    )
}

enum SyncytiumVersion {
    static let string = "0.1.0"
}
