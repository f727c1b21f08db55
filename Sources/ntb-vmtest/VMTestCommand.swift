import ArgumentParser
import PCIKit

/// `ntb-vmtest`: the QEMU rig's scenario binary (docs/qemu-rig.md). It runs inside the rig's guest
/// against QEMU edu devices and exits 0 only when the scenario's checks pass; the last line it prints
/// on failure says why. Set `NTB_VMTEST_BREAK=region-index` to make it issue a broken ioctl.
@main
struct VMTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ntb-vmtest",
        abstract: "The QEMU rig's scenarios: PCIKit's VFIO and UIO paths against QEMU's edu device.",
        subcommands: [VFIODMA.self, IOMMUIsolation.self, UIOInterrupt.self, IvshmemShareCommand.self]
    )

    struct VFIODMA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "vfio-dma",
            abstract: "BAR0, an IOMMU-mapped DMA buffer, an edu DMA round trip and its MSI, through VFIO.")
        @Argument(help: "The edu function bound to vfio-pci.") var address: String
        func run() throws { try runVFIODMA(try pciAddress(address)) }
    }

    struct IOMMUIsolation: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "iommu-isolation",
            abstract: "A DMA to an IOVA that was not mapped must not land.")
        @Argument(help: "The edu function bound to vfio-pci.") var address: String
        @Option(help: "An edu function bound to uio_pci_generic (its DMA allocator gives memory with a known physical address).")
        var physicalFrom: String
        func run() throws { try runIOMMUIsolation(try pciAddress(address), physicalFrom: try pciAddress(physicalFrom)) }
    }

    struct UIOInterrupt: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "uio-irq",
            abstract: "BAR0 and INTx through uio_pci_generic.")
        @Argument(help: "The edu function bound to uio_pci_generic.") var address: String
        func run() throws { try runUIOInterrupt(try pciAddress(address)) }
    }
}

extension VMTestCommand {
    struct IvshmemShareCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ivshmem-share",
            abstract: "Two guests exchange data through one ivshmem-plain window (BAR2 through VFIO).")
        @Argument(help: "The ivshmem-plain function bound to vfio-pci.") var address: String
        @Option(help: "a (writes first) or b (answers).") var role: String
        func run() throws { try runIvshmemShare(try pciAddress(address), role: role) }
    }
}

func pciAddress(_ text: String) throws -> PCIAddress {
    do { return try PCIAddress(parsing: text) } catch { throw ValidationError(error.description) }
}
