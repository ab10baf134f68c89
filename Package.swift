// swift-tools-version: 6.0
import PackageDescription
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Instruction set of the Swift code (OpenBLAS picks its own kernels at run time). On x86-64 the
// default is `haswell` (AVX2 + FMA, every x86 server CPU since 2013): the fused loss kernels and
// optimiser run 8 lanes per instruction instead of SSE2's 4. SYNCYTIUM_TARGET_CPU overrides it
// (any LLVM CPU name, e.g. `x86-64` for a portable binary or `znver4`); SwiftPM caches the
// manifest, so touch Package.swift after changing it.
let targetCPU: String? = {
    if let v = getenv("SYNCYTIUM_TARGET_CPU") { let s = String(cString: v); return s.isEmpty ? nil : s }
    #if arch(x86_64)
    return "haswell"
    #else
    return nil
    #endif
}()
let swiftSettings: [SwiftSetting] = targetCPU.map { [.unsafeFlags(["-target-cpu", $0])] } ?? []

// Syncytium — distributed trainer for single-cell contrastive and graph clustering models.
// Layering, bottom up (a module depends only on modules on earlier lines; the README's Layout table):
//   C shims: CMPI, COpenBLAS, CHDF5, CLZF, CIgraph, CCairo (each imported by exactly one Swift module; CIgraph by Neighbors,
//     CCairo by Plot)
//   Collectives (the only importer of CMPI), Settings (Yams)
//   TensorCore (the only importer of COpenBLAS) → Autograd → NN
//   HDF5IO (the only importer of CHDF5 and CLZF; MPI-IO on a communicator handed in from Collectives) → CellData
//   Clustering → Neighbors (Neighbors uses Clustering's k-means for its IVF quantiser; Leiden via CIgraph) → GraphLayers
//     (distributed graph layers on the tape: Neighbors' halo exchange + Autograd + NN)
//   Plot (figures with cairo: layouts, training curves, contingency heatmaps; reads through CellData/HDF5IO)
//   Training → Models (Registry + one folder per model) → Pipelines
//   SyncytiumBench, TestSupport → SyncytiumCLI, MPIChecks, tests

let package = Package(
    name: "Syncytium",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "syncytium", targets: ["SyncytiumCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C shims: system libraries found through pkg-config; macros exposed as static inline functions.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-openmpi",
                       providers: [.apt(["libhdf5-openmpi-dev"])]),
        // liblzf: h5py's LZF filter (anndata's `compression="lzf"`), registered with HDF5 by HDF5IO.
        .systemLibrary(name: "CLZF", path: "Sources/CLZF", providers: [.apt(["liblzf-dev"])]),
        .systemLibrary(name: "CIgraph", path: "Sources/CIgraph", pkgConfig: "igraph",
                       providers: [.apt(["libigraph-dev"])]),
        // cairo: the figures of `syncytium plot` and `cluster --plot` (text, antialiasing, PNG, SVG, PDF).
        .systemLibrary(name: "CCairo", path: "Sources/CCairo", pkgConfig: "cairo",
                       providers: [.apt(["libcairo2-dev"])]),

        // MARK: - Libraries, bottom up (each depends only on those above it; README's Layout table).
        .target(name: "Collectives", dependencies: ["CMPI", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        // Run settings: `@Setting` declarations, the YAML / command-line resolver (Yams).
        .target(name: "Settings", dependencies: ["Yams"], swiftSettings: swiftSettings),
        .target(name: "TensorCore", dependencies: ["COpenBLAS"], swiftSettings: swiftSettings),
        .target(name: "Autograd", dependencies: ["TensorCore"], swiftSettings: swiftSettings),
        .target(name: "NN", dependencies: ["TensorCore", "Autograd"], swiftSettings: swiftSettings),
        .target(name: "HDF5IO", dependencies: ["CHDF5", "CLZF", "Collectives"], swiftSettings: swiftSettings),
        .target(name: "CellData", dependencies: ["HDF5IO", "Collectives", "TensorCore", "Settings", .product(name: "Logging", package: "swift-log")],
                exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "Clustering", dependencies: ["Collectives", "TensorCore"], swiftSettings: swiftSettings),
        // Figures (rank 0, one process): the 2-D layout coloured by obs keys, training curves, contingency heatmap.
        .target(name: "Plot", dependencies: ["CCairo", "HDF5IO", "CellData", "Collectives"], swiftSettings: swiftSettings),
        // Neighbors uses Clustering's k-means for its IVF quantiser.
        // Leiden (igraph, gathered to rank 0) on the kNN connectivities.
        .target(name: "Neighbors", dependencies: ["Collectives", "TensorCore", "Clustering", "CIgraph"], swiftSettings: swiftSettings),
        // Graph layers over the distributed kNN graph (TAGConv, GCN, graph attention, batch norm over all ranks).
        .target(name: "GraphLayers", dependencies: ["Collectives", "TensorCore", "Autograd", "NN", "Neighbors"], swiftSettings: swiftSettings),
        .target(name: "Training", dependencies: ["Collectives", "TensorCore", "Autograd", "NN", "Settings", .product(name: "Logging", package: "swift-log")],
                swiftSettings: swiftSettings),
        .target(name: "Models", dependencies: ["Collectives", "TensorCore", "Autograd", "NN", "CellData", "Clustering", "Neighbors",
                                               "GraphLayers", "Training", "Settings", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        // End-to-end runs (cluster, train, knn, preprocess, …) as functions of (spec, communicator).
        .target(name: "Pipelines", dependencies: ["Collectives", "TensorCore", "CellData", "Clustering", "Neighbors",
                                                  "Training", "Models", "Settings", "Plot", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),

        // MARK: - Executables and what only they use
        // The `syncytium bench …` subcommands, outside the library modules.
        .target(name: "SyncytiumBench", dependencies: [
                "Collectives", "TensorCore", "Autograd", "NN", "HDF5IO", "CellData", "Clustering", "Neighbors", "Training",
                "Models", "Pipelines", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: swiftSettings),
        .executableTarget(
            name: "SyncytiumCLI",
            dependencies: [
                "Collectives", "TensorCore", "Autograd", "NN", "HDF5IO", "CellData", "Clustering", "Neighbors", "Training", "Models",
                "Settings", "Pipelines", "SyncytiumBench", "Plot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // Test support (finite-difference gradient checks), for the test targets and MPIChecks only.
        .target(name: "TestSupport", dependencies: ["TensorCore", "Autograd", "NN", "Training"], swiftSettings: swiftSettings),
        // Structure-aware fuzz target over the readers (launch/fuzz-readers builds it with -sanitize=fuzzer
        // into .build-fuzz; the ordinary build makes its replay executable for the regression inputs).
        .executableTarget(name: "FuzzReaders", dependencies: ["CellData", "HDF5IO", "Collectives"], swiftSettings: swiftSettings),
        // Multi-rank checks, run under real mpirun by launch/test (XCTest cannot span processes).
        .executableTarget(name: "MPIChecks", dependencies: ["Collectives", "CellData", "Clustering", "Neighbors", "GraphLayers", "TensorCore", "Autograd", "Training", "NN", "Models", "TestSupport"],
                         swiftSettings: swiftSettings),

        .testTarget(name: "CollectivesTests", dependencies: ["Collectives"], swiftSettings: swiftSettings),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"], swiftSettings: swiftSettings),
        .testTarget(name: "AutogradTests", dependencies: ["TensorCore", "Autograd", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "NNTests", dependencies: ["TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .testTarget(name: "TrainingTests", dependencies: ["TestSupport", "Training", "Collectives", "TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .testTarget(name: "NeighborsTests", dependencies: ["Neighbors", "Collectives", "TensorCore"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "GraphLayersTests", dependencies: ["GraphLayers", "TestSupport", "Neighbors", "Collectives", "TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .testTarget(name: "ClusteringTests", dependencies: ["Clustering", "Collectives", "TensorCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CellDataTests", dependencies: ["HDF5IO", "CellData", "Collectives", "TensorCore"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "SyncytiumBenchTests", dependencies: ["SyncytiumBench", "Collectives"], swiftSettings: swiftSettings),
        .testTarget(name: "SettingsTests", dependencies: ["Settings"], swiftSettings: swiftSettings),
        .testTarget(name: "PipelinesTests", dependencies: ["Pipelines", "Settings", "Models", "Training", "Collectives", "CellData", "Clustering", "Neighbors"], swiftSettings: swiftSettings),
        .testTarget(name: "PlotTests", dependencies: ["Plot", "CellData", "HDF5IO", "Collectives"], swiftSettings: swiftSettings),
        .testTarget(name: "ModelsTests", dependencies: ["TestSupport", "Models", "Training", "Collectives", "TensorCore", "Autograd", "NN", "Neighbors", "GraphLayers", "Clustering", "CellData"], swiftSettings: swiftSettings),
    ]
)
