import ArgumentParser
import PCIKit

extension NTBTransportCommand {
    /// `ntb-transport bind BDF [--driver vfio-pci|uio_pci_generic] [--group NAME] [--force]`.
    struct Bind: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bind a PCI function to vfio-pci (or uio_pci_generic) so ntb-transport can drive it.",
            discussion: """
                Uses driver_override and drivers_probe; rolls back to the previous driver if the bind does \
                not take. With --group, /dev/vfio/N (or /dev/uioN) is given to that Unix group so later runs \
                need no root.

                Examples:
                  sudo ntb-transport bind 0000:01:00.0 --group ntb
                  sudo ntb-transport bind 01:00.0 --driver uio_pci_generic
                """)

        @Argument(help: "The function, as 0000:01:00.0 or 01:00.0.")
        var bdf: String

        @Option(name: .long, help: "vfio-pci (default) or uio_pci_generic.")
        var driver = "vfio-pci"

        @Option(name: .long, help: "Give the device node to this Unix group (mode 0660).")
        var group: String?

        @Flag(name: .long, help: "Take the function even if the host is using it.")
        var force = false

        func validate() throws {
            _ = try parseAddress(bdf)
            guard PCIBinder.userspaceDrivers.contains(driver) else {
                throw ValidationError("--driver must be one of \(PCIBinder.userspaceDrivers.joined(separator: ", ")), not '\(driver)'")
            }
        }

        func run() throws {
            let outcome = try PCIBinder().bind(try parseAddress(bdf), to: driver, force: force, unixGroup: group)
            for w in outcome.warnings { printWarning(w) }
            if outcome.previousDriver == outcome.driver {
                print("\(outcome.address) is bound to \(driver)" + (outcome.deviceNode.map { "; device node \($0)" } ?? ""))
            } else {
                print("\(outcome.address): \(outcome.previousDriver ?? "no driver") -> \(driver)" + (outcome.deviceNode.map { "; device node \($0)" } ?? ""))
            }
        }
    }

    /// `ntb-transport unbind BDF [--restore]`.
    struct Unbind: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Unbind a PCI function from its driver and clear driver_override.",
            discussion: """
                With --restore the kernel probes the function again, so its default driver takes it back.

                Examples:
                  sudo ntb-transport unbind 0000:01:00.0 --restore
                """)

        @Argument(help: "The function, as 0000:01:00.0 or 01:00.0.")
        var bdf: String

        @Flag(name: .long, help: "Re-probe so the default kernel driver binds it again.")
        var restore = false

        @Flag(name: .long, help: "Unbind even if the host is using the function.")
        var force = false

        func validate() throws { _ = try parseAddress(bdf) }

        func run() throws {
            let outcome = try PCIBinder().unbind(try parseAddress(bdf), restore: restore, force: force)
            print("\(outcome.address): \(outcome.previousDriver ?? "no driver") -> \(outcome.driver ?? "no driver")")
        }
    }
}
