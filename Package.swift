// swift-tools-version: 6.0
import PackageDescription

// Syncytium — distributed trainer for single-cell contrastive and graph clustering models.
// Layering (bottom up): C shims → TensorCore/Collectives/HDF5IO → Autograd → NN → … → SyncytiumCLI.
// Each C shim is imported by exactly one Swift module.

let package = Package(
    name: "Syncytium",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "syncytium", targets: ["SyncytiumCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shims: system libraries found through pkg-config; macros exposed as static inline functions.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-openmpi",
                       providers: [.apt(["libhdf5-openmpi-dev"])]),

        .target(name: "Collectives", dependencies: ["CMPI"]),
        .target(name: "TensorCore", dependencies: ["COpenBLAS"]),
        .target(name: "Autograd", dependencies: ["TensorCore"]),
        .target(name: "NN", dependencies: ["TensorCore", "Autograd"]),
        .target(name: "HDF5IO", dependencies: ["CHDF5"]),
        .target(name: "CellData", dependencies: ["HDF5IO", "Collectives", "TensorCore"], exclude: ["README.md"]),
        .target(name: "Clustering", dependencies: ["Collectives", "TensorCore"]),
        .target(name: "Training", dependencies: ["Collectives", "TensorCore", "Autograd", "NN"]),
        .target(name: "Models", dependencies: ["Collectives", "TensorCore", "Autograd", "NN", "CellData", "Training",
                                               "Neighbors", "Clustering"]),
        .target(name: "Neighbors", dependencies: ["Collectives", "TensorCore", "Clustering"]),

        .executableTarget(
            name: "SyncytiumCLI",
            dependencies: [
                "Collectives", "TensorCore", "Autograd", "NN", "HDF5IO", "CellData", "Clustering", "Neighbors", "Training", "Models",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Multi-rank checks, run under real mpirun by launch/test (XCTest cannot span processes).
        .executableTarget(name: "MPIChecks", dependencies: ["Collectives", "Clustering", "Neighbors", "TensorCore"]),

        .testTarget(name: "CollectivesTests", dependencies: ["Collectives"]),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"]),
        .testTarget(name: "AutogradTests", dependencies: ["TensorCore", "Autograd"]),
        .testTarget(name: "NNTests", dependencies: ["TensorCore", "Autograd", "NN"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Collectives", "TensorCore", "Autograd", "NN"]),
        .testTarget(name: "NeighborsTests", dependencies: ["Neighbors", "Collectives", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "ClusteringTests", dependencies: ["Clustering", "Collectives"]),
        .testTarget(name: "CellDataTests", dependencies: ["HDF5IO", "CellData", "Collectives", "TensorCore"], exclude: ["Fixtures"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Training", "Collectives", "TensorCore", "Autograd", "NN", "Neighbors", "Clustering", "CellData"]),
    ]
)
