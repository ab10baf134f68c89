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
// Layering, bottom up (a module depends only on modules on earlier lines):
//   C shims: CMPI, COpenBLAS, CHDF5
//   TensorCore (the only importer of COpenBLAS), Collectives (the only importer of CMPI)
//   HDF5IO (the only importer of CHDF5; MPI-IO on a communicator handed in from Collectives)
//   Autograd → NN
//   CellData (HDF5IO, Collectives, TensorCore)
//   Clustering → Neighbors (Neighbors uses Clustering's k-means for its IVF quantiser)
//   Training (Autograd, NN) → Models → SyncytiumCLI
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

        .target(name: "Collectives", dependencies: ["CMPI"], swiftSettings: swiftSettings),
        .target(name: "TensorCore", dependencies: ["COpenBLAS"], swiftSettings: swiftSettings),
        .target(name: "Autograd", dependencies: ["TensorCore"], swiftSettings: swiftSettings),
        .target(name: "NN", dependencies: ["TensorCore", "Autograd"], swiftSettings: swiftSettings),
        .target(name: "HDF5IO", dependencies: ["CHDF5", "Collectives"], swiftSettings: swiftSettings),
        .target(name: "CellData", dependencies: ["HDF5IO", "Collectives", "TensorCore"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "Clustering", dependencies: ["Collectives", "TensorCore"], swiftSettings: swiftSettings),
        .target(name: "Neighbors", dependencies: ["Collectives", "TensorCore", "Clustering"], swiftSettings: swiftSettings),
        .target(name: "Training", dependencies: ["Collectives", "TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .target(name: "Models", dependencies: ["Collectives", "TensorCore", "Autograd", "NN", "CellData", "Training",
                                               "Neighbors", "Clustering"], swiftSettings: swiftSettings),

        .executableTarget(
            name: "SyncytiumCLI",
            dependencies: [
                "Collectives", "TensorCore", "Autograd", "NN", "HDF5IO", "CellData", "Clustering", "Neighbors", "Training", "Models",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),
        // Multi-rank checks, run under real mpirun by launch/test (XCTest cannot span processes).
        .executableTarget(name: "MPIChecks", dependencies: ["Collectives", "Clustering", "Neighbors", "TensorCore"],
                         swiftSettings: swiftSettings),

        .testTarget(name: "CollectivesTests", dependencies: ["Collectives"], swiftSettings: swiftSettings),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"], swiftSettings: swiftSettings),
        .testTarget(name: "AutogradTests", dependencies: ["TensorCore", "Autograd"], swiftSettings: swiftSettings),
        .testTarget(name: "NNTests", dependencies: ["TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Collectives", "TensorCore", "Autograd", "NN"], swiftSettings: swiftSettings),
        .testTarget(name: "NeighborsTests", dependencies: ["Neighbors", "Collectives", "TensorCore"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ClusteringTests", dependencies: ["Clustering", "Collectives", "TensorCore"], swiftSettings: swiftSettings),
        .testTarget(name: "CellDataTests", dependencies: ["HDF5IO", "CellData", "Collectives", "TensorCore"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Training", "Collectives", "TensorCore", "Autograd", "NN", "Neighbors", "Clustering", "CellData"], swiftSettings: swiftSettings),
    ]
)
