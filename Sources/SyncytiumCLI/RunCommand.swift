// The run commands are thin: words → spec (defaults ← --config YAML ← options, validated before any
// work) → the pipeline's run function → a report. The keys and their help come from the spec.
import ArgumentParser
import CellData
import Collectives
import Foundation
import Pipelines
import Settings
import Training

/// A command whose settings are a run spec.
protocol RunCommand: ParsableCommand {
    associatedtype Spec: SettingsSection
    /// Keys set by bare words, in order (e.g. ["data.input"]).
    static var positionals: [String] { get }
    /// The command's words after its name (parsed by `SettingsResolver`).
    var words: [String] { get }
    /// Collective: runs the pipeline and reports; returns false when a stop signal ended it.
    func execute(_ spec: Spec, comm: Communicator) throws -> Bool
}

extension RunCommand {
    /// The help of a run command: what it does, then every setting (option, YAML key, default, range).
    static func settingsHelp(_ intro: String) -> String {
        let keys = (try? SettingsResolver.schema(of: Spec())).map(SettingsDocument.help) ?? ""
        return intro + """


            Settings come from defaults ← --config FILE.yaml (nested sections as below; \
            --print-config writes the fully resolved YAML, which --config reads back) ← options. \
            Every option is the last part of its key in kebab case (--batch-size) or the whole key \
            (--trainer.batch-size); flags also take --no-NAME.

            SETTINGS:
            """ + "\n" + keys
    }

    func run() throws {
        let line: SettingsCommandLine
        let spec: Spec
        do {
            line = try SettingsCommandLine(words)
            if line.helpRequested { throw CleanExit.helpRequest(self) }
            spec = try RunSpecs.resolve(Spec.self, line, positionals: Self.positionals)
        } catch let e as SettingsError {
            // The same on every rank (same words, same file): each exits; rank 0 says why.
            if Communicator.world.rank == 0 { writeStderr("error: \(e)\n") }
            Communicator.world.finalize()
            throw ExitCode.validationFailure
        }
        if line.printConfig {
            if Communicator.world.rank == 0 { print(RunSpecs.yaml(spec), terminator: "") }
            return
        }
        if let level = Mirror(reflecting: spec).children.first(where: { $0.label == "_logLevel" })?.value as? Setting<LogLevel> {
            RankLogHandler.setLevel(level.wrappedValue.level)
        }
        StopSignal.install()
        keepAllocationsOnHeap()
        let comm = Communicator.world
        let completed: Bool
        do { completed = try execute(spec, comm: comm) } catch let e as CellDataError where e.agreedByAllRanks {
            // Every rank has this error: end cleanly everywhere (no MPI_Abort, no launcher noise).
            if comm.rank == 0 { writeStderr("error: \(e.message)\n") }
            comm.finalize()
            throw ExitCode.failure
        } catch let e as SettingsError {
            if comm.rank == 0 { writeStderr("error: \(e)\n") }
            comm.finalize()
            throw ExitCode.validationFailure
        } catch {
            comm.abort("\(error)")
        }
        if !completed { comm.finalize(); throw ExitCode(StopSignal.exitCode) }
    }
}

