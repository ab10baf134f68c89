import ArgumentParser
import Collectives
import Foundation
import Models
import Pipelines

struct Cluster: RunCommand {
    typealias Spec = ClusterSpec
    static let positionals = ["data.input"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Train a clustering model and cluster the cells of an .h5ad file.",
            usage: "syncytium cluster INPUT [--config FILE] [--print-config] [--KEY VALUE …]",
            discussion: settingsHelp("""
                Reads INPUT (each rank its rows), preprocesses it (cells with no counts removed; \
                normalize_total; log1p; highly variable genes), trains the model data-parallel (the \
                global batch does not depend on the rank count), clusters (--cluster-method: the model's own head, or \
                k-means on the embedding, or Leiden on its kNN graph, with --clusters K by a search on \
                --resolution) and writes output.path: the input file as it was (every object byte for \
                byte) plus, on its rows, obs['syncytium_cluster'], obsm['X_syncytium'], uns['syncytium'] (the resolved spec \
                and metrics), and the embedding's neighbours as scanpy's sc.pp.neighbors writes them \
                (obsp connectivities/distances, uns['neighbors']; obs['leiden'] with Leiden); removed \
                cells are NaN / missing. --results-only writes only the results (kept cells, selected genes, \
                no X), as do inputs that cannot be kept (10x, legacy, anndata < 0.8; a notice says so). With --label-key, ARI / NMI / ACC against that column are printed; labels \
                never influence training or K. configs/scname-reference.yaml is scNAME's reference \
                schedule. SIGTERM or SIGUSR1 stop training at the next step after a checkpoint (exit \
                status 75); rerun with --resume auto to continue.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: ClusterSpec, comm: Communicator) throws -> Bool {
        let r = try ClusterRun.run(spec, comm: comm)
        guard r.completed else { return false }
        if comm.rank == 0 {
            let what = "\(spec.model.name)\(spec.clustering.ensemble > 1 ? " ensemble of \(spec.clustering.ensemble)" : ""), K = \(r.clusters), \(r.epochs) epochs, \(fmt(r.seconds, 1)) s"
            if let p = r.pretrainedScores { print("initial clustering (before the clustering stage): ARI \(fmt(p.ari, 4))  NMI \(fmt(p.nmi, 4))") }
            if let l = r.leiden {
                print("Leiden: \(l.clusters) communities at resolution \(l.resolution), modularity \(fmt(l.modularity, 4))"
                      + (l.exact ? "" : " (no resolution gave exactly clusters = \(spec.clustering.clusters.settingText); nearest)"))
            }
            if let s = r.scores { print("\(s.line)  (\(what))") } else { print(what) }
        }
        return true
    }
}

struct Train: RunCommand {
    typealias Spec = TrainSpec
    static let positionals = ["data.input"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Train a model data-parallel on an .h5ad file (by default the runtime's reference workload, an MLP autoencoder).",
            usage: "syncytium train INPUT [--config FILE] [--print-config] [--KEY VALUE …]",
            discussion: settingsHelp("""
                Reads INPUT (each rank its rows), preprocesses it and trains with a global batch that \
                does not depend on the rank count, so 1 and N ranks follow the same loss curve. \
                SIGTERM or SIGUSR1 stop the run at the next step boundary after a checkpoint, with exit \
                status 75; --resume auto continues it.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: TrainSpec, comm: Communicator) throws -> Bool {
        let r = try TrainRun.run(spec, comm: comm)
        if comm.rank == 0 && r.completed, let last = r.lossHistory.last {
            print("\(spec.model.name): \(r.steps) steps, \(r.epochs) epochs, final loss \(String(format: "%.4f", last)), \(fmt(r.seconds, 1)) s")
        }
        return r.completed
    }
}

struct KNNCommand: RunCommand {
    typealias Spec = KNNSpec
    static let positionals = ["data.input"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "knn",
            abstract: "Build the kNN graph of the cells (PCA of the preprocessed data) and write it into obsp.",
            usage: "syncytium knn INPUT --output OUT [--config FILE] [--print-config] [--json] [--KEY VALUE …]",
            discussion: settingsHelp("""
                Reads INPUT (each rank its rows), preprocesses it (QC, normalize_total, log1p, HVGs, \
                scale), computes a distributed PCA and the k-nearest-neighbour graph on it — exact (GEMM \
                blocks in a ring of ranks) or approximate (distributed IVF) — and writes output.path with \
                obsm['X_syncytium'] (the PCA), obsp['distances'] and obsp['connectivities'] (UMAP or \
                Gaussian weights, as scanpy's). With --kmeans K it also clusters the PCA by distributed \
                k-means into obs['syncytium_cluster']. --json prints the result as JSON.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: KNNSpec, comm: Communicator) throws -> Bool {
        let out = try KNNRun.run(spec, comm: comm)
        guard comm.rank == 0 else { return true }
        if jsonRequested { print(try jsonString(out)); return true }
        print("wrote \(out.output): \(out.cells) cells, \(out.neighbors)-NN graph (\(out.method), \(spec.knn.weights.rawValue) weights) in \(fmt(out.graphSeconds, 2)) s, total \(fmt(out.seconds, 2)) s on \(comm.size) rank(s)")
        if let k = out.kmeansK, let inertia = out.kmeansInertia {
            print("k-means K = \(k): objective \(fmt(inertia, 3))" + (out.ari.map { "  ARI \(fmt($0, 4))  NMI \(fmt(out.nmi!, 4))" } ?? ""))
        }
        return true
    }
}

struct PreprocessCommand: RunCommand {
    typealias Spec = PreprocessSpec
    static let positionals = ["data.input", "output.path"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            commandName: "preprocess",
            abstract: "Read, filter, normalise, log1p, select HVGs and scale with global statistics; write an .h5ad.",
            usage: "syncytium preprocess INPUT OUTPUT [--config FILE] [--print-config] [--json] [--KEY VALUE …]",
            discussion: settingsHelp("""
                The output holds the input's obs (minus filtered cells) and var, obsm['X_syncytium'] = the \
                scaled values of the first scaled.embedding_genes HVGs (or their PCA), and uns['syncytium'] \
                (version, the resolved spec, metrics). With --clusters-from KEY the obs column KEY's codes \
                are copied to obs['syncytium_cluster']. The output is the same for any rank count.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT, OUTPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: PreprocessSpec, comm: Communicator) throws -> Bool {
        let out = try PreprocessRun.run(spec, comm: comm)
        guard comm.rank == 0 else { return true }
        if jsonRequested { print(try jsonString(out)); return true }
        print("wrote \(out.output): \(out.cellsOut) of \(out.cellsIn) cells, \(out.hvg) HVGs of \(out.genesIn) genes, \(fmt(out.seconds, 2)) s on \(comm.size) rank(s)")
        return true
    }
}

extension RunCommand {
    /// `--json`: print the result as JSON (a report option, not a setting).
    var jsonRequested: Bool { words.contains("--json") }
}

struct ListModels: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "models", abstract: "List the models (--model NAME), one line each.")
    func run() {
        let width = (ModelRegistry.entries.map(\.name.count).max() ?? 0) + 1
        for e in ModelRegistry.entries { print("\(e.name.padding(toLength: width, withPad: " ", startingAt: 0)) \(e.summary)") }
    }
}

struct Embed: RunCommand {
    typealias Spec = EmbedSpec
    static let positionals = ["data.input"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Train a supervised embedding (CELLULAR) and save it, or embed a new file with a saved model.",
            usage: """
                syncytium embed TRAIN.h5ad --label-key K [--batch-key B] --save-model DIR [--output OUT] [--KEY VALUE …]
                syncytium embed QUERY.h5ad --load-model DIR --output OUT
                """,
            discussion: settingsHelp("""
                Training reads TRAIN (each rank its rows), holds out a label-stratified validation split \
                for early stopping, trains data-parallel and writes a versioned model folder (the \
                parameters, the resolved spec, the training HVG gene names, the label encoder, class \
                weights and PCA centroid distances). Applying reads QUERY, maps its genes onto the model's \
                by name (missing genes are 0 and counted in a warning; a query with none of them is an \
                error) and writes obsm['X_cellular']. A saved model works on any rank count.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: EmbedSpec, comm: Communicator) throws -> Bool {
        let r = try CellularRuns.embed(spec, comm: comm)
        if comm.rank == 0 && r.completed {
            print("\(spec.saved.loadModel == nil ? "trained \(spec.model.name), \(r.epochs) epochs" : "embedded with \(spec.saved.loadModel!)"): \(r.cells) cells, \(fmt(r.seconds, 1)) s")
        }
        return r.completed
    }
}

struct Annotate: RunCommand {
    typealias Spec = AnnotateSpec
    static let positionals = ["data.input"]
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Cell types, confidences, novel cells and per-type representations of a file, from a saved CELLULAR model.",
            usage: "syncytium annotate QUERY.h5ad --load-model DIR --output OUT [--label-key K] [--KEY VALUE …]",
            discussion: settingsHelp("""
                The first annotate with a model trains its classifier on the frozen embedding of the \
                model's training file (the same validation split for early stopping) and its novelty \
                model, and saves both in the model folder. Writes obs['predicted_cell_type'], \
                obs['prediction_confidence'], obs['novelty_score'], obs['novel_cell'], \
                obsm['X_cellular'], obsm['cellular_probabilities'] and, in uns['syncytium'], the \
                per-type representations and the novel-type flag. With --label-key, accuracy, balanced \
                accuracy and weighted F1 against that column are printed.
                """))
    }
    @Argument(parsing: .captureForPassthrough, help: "INPUT and settings (see below).") var words: [String] = []

    func execute(_ spec: AnnotateSpec, comm: Communicator) throws -> Bool {
        let r = try CellularRuns.annotate(spec, comm: comm)
        guard comm.rank == 0 else { return true }
        if let s = r.scores {
            print(String(format: "accuracy %.4f  balanced accuracy %.4f  weighted F1 %.4f", s.accuracy, s.balancedAccuracy, s.weightedF1))
        }
        print("\(r.cells) cells annotated, \(r.novelCells) called novel; novel-type flag \(r.novelTypeFlag) (min rescaled confidence \(fmt(r.minRescaledConfidence, 3))); \(fmt(r.seconds, 1)) s")
        return true
    }
}
