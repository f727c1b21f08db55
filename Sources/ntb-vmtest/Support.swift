#if canImport(Glibc)
import Glibc
#endif

/// Why a scenario failed. The CLI prints the description as the last line of the scenario's output,
/// which the guest script copies into the `RIG: <scenario>: FAIL (...)` line.
enum VMTestError: Error, CustomStringConvertible {
    /// The project's API threw: what the scenario was doing, and the project's own message.
    case project(step: String, message: String)
    /// A check on the device's behaviour failed.
    case check(String)

    var description: String {
        switch self {
        case let .project(step, message): return "\(step): \(message)"
        case let .check(message): return message
        }
    }
}

/// Runs one step that calls the project's API, turning its error into a ``VMTestError`` naming the step.
func attempt<T, E: Error>(_ step: String, _ body: () throws(E) -> T) throws(VMTestError) -> T {
    do {
        return try body()
    } catch {
        throw .project(step: step, message: "\(error)")
    }
}

/// Faults the rig can inject into its own calls to prove that it notices a broken ioctl
/// (`NTB_VMTEST_BREAK`, set from the kernel command line's `rig.break=`).
enum Breakage: String, CaseIterable {
    /// Ask VFIO for BAR 9, a region index vfio-pci does not have (VFIO_DEVICE_GET_REGION_INFO fails).
    case regionIndex = "region-index"

    /// The breakage asked for in the environment, if any; an unknown name is a usage error.
    static func fromEnvironment() throws(VMTestError) -> Breakage? {
        guard let raw = unsafe getenv("NTB_VMTEST_BREAK").map({ unsafe String(cString: $0) }), !raw.isEmpty else { return nil }
        guard let breakage = Breakage(rawValue: raw) else {
            throw .check("NTB_VMTEST_BREAK=\(raw) is not one of: \(Breakage.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return breakage
    }
}

func sleepMilliseconds(_ ms: Int) {
    _ = usleep(useconds_t(ms * 1000))
}

/// Prints a progress line of a scenario, unbuffered (write(2)), so the lines before a crash are kept.
func report(_ line: String) {
    var text = line + "\n"
    _ = text.withUTF8 { bytes in unsafe write(1, bytes.baseAddress, bytes.count) }
}
