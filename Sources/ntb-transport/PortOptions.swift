import ArgumentParser
import NTBHardware
import NTBMock

extension MockRole: ExpressibleByArgument {}

/// Which NTB port a command works on: `--port mock[:DIR] --role host|endpoint` (a mock link in
/// DIR, default /dev/shm/ntb-mock). Shared by `tool`, `perf`, `pingpong` and the other commands that open a port.
struct PortOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The NTB port: mock[:DIR] for a mock link (default DIR: \(MockLink.defaultDirectory)).", valueName: "port"))
    var port: String = "mock"

    @Option(name: .long, help: "The side this process plays on a mock link: host or endpoint.")
    var role: MockRole?

    @Flag(name: .long, help: "Fast mode: the endpoint polls commands and doorbells every 100 µs instead of 5 ms (as vNTB).")
    var fast = false

    @Option(name: .customLong("poll-us"), help: ArgumentHelp("Endpoint poll interval in microseconds (overrides --fast).", valueName: "us"))
    var pollMicroseconds: Int?

    /// Where the port is.
    enum Target: Equatable {
        case mock(directory: String)
    }

    var target: Target {
        get throws {
            if port == "mock" { return .mock(directory: MockLink.defaultDirectory) }
            if port.hasPrefix("mock:") {
                let dir = String(port.dropFirst(5))
                guard !dir.isEmpty else { throw ValidationError("--port mock: needs a directory, e.g. mock:/dev/shm/ntb0") }
                return .mock(directory: dir)
            }
            throw ValidationError("--port \(port): expected mock or mock:DIR")
        }
    }

    mutating func validate() throws {
        switch try target {
        case .mock:
            guard role != nil else { throw ValidationError("--port \(port) needs --role host or --role endpoint") }
        }
        if let us = pollMicroseconds, us < 0 || us > 1_000_000 {
            throw ValidationError("--poll-us must be 0...1000000")
        }
    }

    /// Options for opening a mock side.
    var mockOptions: MockNTBDevice.Options {
        var o: MockNTBDevice.Options = fast ? .fast : .init()
        if let us = pollMicroseconds { o.pollInterval = .microseconds(us) }
        return o
    }

    /// Opens the port.
    func open() throws -> MockNTBDevice {
        switch try target {
        case let .mock(directory):
            return try MockNTBDevice(directory: directory, role: role!, options: mockOptions)
        }
    }
}
