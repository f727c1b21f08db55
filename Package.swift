// swift-tools-version: 6.2
// ntb-transport: a userspace NTB transport stack (VFIO/UIO, DW eDMA, Linux ntb_transport v4 compatible).
import PackageDescription

/// Modules that hold pointers to hardware or shared memory are built with strict memory safety,
/// so every unsafe site is marked and can be grepped.
let strict: [SwiftSetting] = [
    .strictMemorySafety(),
    .define("ENABLE_MOCKING", .when(configuration: .debug)),
]

/// NTBTools drives queue pairs from class state that completion closures update per message
/// (`MessagePort`); release builds skip the dynamic exclusivity check on it (debug builds and tests keep
/// it): measured 11 % of a 64-byte perf sender in swift_beginAccess.
let toolsSettings: [SwiftSetting] = strict + [
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]


let package = Package(
    name: "ntb-transport",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ntb-transport", targets: ["ntb-transport"]),
        .library(name: "PCIKit", targets: ["PCIKit"]),
        .library(name: "DWEDMA", targets: ["DWEDMA"]),
        .library(name: "NTBHardware", targets: ["NTBHardware"]),
        .library(name: "NTBTransport", targets: ["NTBTransport"]),
        .library(name: "NTBMock", targets: ["NTBMock"]),
        .library(name: "NTBPorts", targets: ["NTBPorts"]),
        .library(name: "NTBTools", targets: ["NTBTools"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // libpci through pkg-config (Debian: libpci-dev).
        .systemLibrary(
            name: "CLibPCI",
            path: "Sources/CLibPCI",
            pkgConfig: "libpci",
            providers: [.apt(["libpci-dev"])]
        ),
        // The C shim: VFIO/UIO ioctls, libpci look-ups, volatile MMIO, barriers, hardware layouts.
        .target(
            name: "CNTBShim",
            dependencies: ["CLibPCI"],
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "PCIKit",
            dependencies: [
                "CNTBShim",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "DWEDMA",
            dependencies: ["PCIKit", "CNTBShim"],
            swiftSettings: strict
        ),
        .target(
            name: "NTBHardware",
            dependencies: [
                "PCIKit", "CNTBShim",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NTBMock",
            dependencies: [
                "PCIKit", "DWEDMA", "NTBHardware", "CNTBShim",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "NTBTransport",
            dependencies: [
                "PCIKit", "DWEDMA", "NTBHardware", "CNTBShim",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Opening a port by string and a transport on it by policy: the one path the CLI and other programs use.
        .target(
            name: "NTBPorts",
            dependencies: ["PCIKit", "NTBHardware", "NTBTransport", "NTBMock"],
            swiftSettings: strict
        ),
        // The tools' session protocol (perf, pingpong, file, echo), ntb_tool's command language and the
        // stats report: the CLI, a daemon or tests use the same code.
        .target(
            name: "NTBTools",
            dependencies: [
                "PCIKit", "DWEDMA", "NTBHardware", "NTBTransport", "NTBMock", "NTBPorts", "CNTBShim",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: toolsSettings
        ),
        .executableTarget(
            name: "ntb-transport",
            dependencies: [
                "PCIKit", "DWEDMA", "NTBHardware", "NTBTransport", "NTBMock", "NTBPorts", "NTBTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        // Driver CPU cost per LL element and steady-state allocations (not a test; see its header).
        .executableTarget(name: "edma-bench", dependencies: ["DWEDMA", "PCIKit"], path: "Benchmarks/EDMABench"),
        // The QEMU rig's scenario binary (docs/qemu-rig.md): PCIKit's public API against QEMU's edu device.
        .executableTarget(
            name: "ntb-vmtest",
            dependencies: ["PCIKit", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // Sender CPU per GB of the edma data path against the host backend's copy, same run (see its header).
        .executableTarget(name: "edma-transport-bench", dependencies: ["NTBTransport", "NTBMock", "DWEDMA", "PCIKit", "CNTBShim"], path: "Benchmarks/EDMATransportBench"),
        .testTarget(name: "PCIKitTests", dependencies: ["PCIKit", "CNTBShim"], swiftSettings: strict),
        .testTarget(name: "DWEDMATests", dependencies: ["DWEDMA", "NTBMock", "PCIKit", "CNTBShim"], swiftSettings: strict),
        .testTarget(name: "NTBHardwareTests", dependencies: ["NTBHardware", "NTBMock", "PCIKit", "CNTBShim"], swiftSettings: strict),
        .testTarget(name: "NTBMockTests", dependencies: ["NTBMock", "DWEDMA", "NTBHardware", "PCIKit"], swiftSettings: strict),
        .testTarget(name: "NTBTransportTests", dependencies: ["NTBTransport", "NTBMock", "DWEDMA", "NTBHardware", "PCIKit", "CNTBShim"], swiftSettings: strict),
        .testTarget(name: "CLITests", dependencies: ["ntb-transport", "NTBTools", "NTBPorts"]),
        .testTarget(name: "NTBToolsTests", dependencies: ["NTBTools", "NTBPorts", "NTBTransport", "NTBMock", "NTBHardware", "PCIKit", .product(name: "Histogram", package: "hdrhistogram-swift")], swiftSettings: strict),
        .testTarget(name: "NTBPortsTests", dependencies: ["NTBPorts", "NTBTransport", "NTBMock", "NTBHardware", "PCIKit"], swiftSettings: strict),
        // Host backend data path: message rate and heap allocations per message in steady state (see its header).
        .target(name: "BenchSupport", dependencies: ["NTBTransport", "NTBMock"], path: "Benchmarks/BenchSupport"),
        .executableTarget(name: "transport-bench", dependencies: ["BenchSupport", "NTBTransport", "NTBMock", "NTBHardware", "PCIKit"], path: "Benchmarks/TransportBench"),
        .executableTarget(name: "roundtrip-bench", dependencies: ["BenchSupport", "NTBTransport", "NTBMock", "NTBHardware"], path: "Benchmarks/RoundTripBench"),
        // A hostile peer on a mock link for tools/fuzz/run.sh (docs/fuzzing.md).
        .executableTarget(name: "ntb-fuzz", dependencies: ["NTBMock", "CNTBShim", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "NTBFuzzTests", dependencies: ["ntb-fuzz", "CNTBShim"]),
    ],
    swiftLanguageModes: [.v6]
)
