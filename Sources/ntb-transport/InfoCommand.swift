import ArgumentParser
import NTBPorts
import PCIKit

extension NTBTransportCommand {
    /// `ntb-transport info BDF`: BARs, interrupts, IOMMU group members.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a PCI function's BARs (size, 64-bit, prefetchable, write-combining), interrupts and IOMMU group.",
            discussion: """
                Examples:
                  ntb-transport info 0000:01:00.0
                """)

        @Argument(help: "The function, as 0000:01:00.0 or 01:00.0.")
        var bdf: String

        func validate() throws { _ = try parseAddress(bdf) }

        func run() throws {
            let address = try parseAddress(bdf)
            let discovery = PCIDiscovery()
            let f = try discovery.function(at: address)
            print(f.lspciLine)
            if let ntb = f.ntb {
                print("  NTB: \(ntb.summary) (\(ntb.family.rawValue); Linux driver \(ntb.linuxDriver))")
            }
            // Which adapter `--port \(address)` opens it with (the NTBPorts family table).
            if let (family, entry) = PortAdapters.family(of: PCIID(vendor: f.vendorID, device: f.deviceID), deviceClass: f.deviceClass) {
                if let adapter = PortAdapters.adapter(for: family) {
                    print("  adapter: \(adapter) (--port \(family == .ivshmem ? "ivshmem:" : "")\(address))")
                } else if let entry {
                    print("  adapter: none: \(PortAdapters.noAdapterText(entry.family))")
                }
            }
            let bars = try discovery.bars(of: address)
            if bars.isEmpty { print("  BARs: none") }
            for b in bars {
                var traits = [b.isIO ? "I/O ports" : (b.is64Bit ? "64-bit" : "32-bit")]
                if !b.isIO { traits.append(b.isPrefetchable ? "prefetchable" : "non-prefetchable") }
                if b.writeCombiningPossible { traits.append("write-combining possible (resource\(b.index)_wc)") }
                print("  BAR \(b.index): \(sizeText(b.size)) at 0x\(String(b.start, radix: 16)), \(traits.joined(separator: ", "))")
            }
            if bars.contains(where: { !$0.isIO }) {
                print("  note: VFIO maps BARs uncached; for write-combining map a prefetchable BAR through sysfs resourceN_wc")
            }
            if let irq = try discovery.interrupts(of: address) {
                let pin = irq.intxPin == 0 ? "none" : String(UnicodeScalar(UInt8(64) + irq.intxPin))
                print("  interrupts: MSI \(irq.msiVectors.map { "\($0) vector(s)" } ?? "no"), MSI-X \(irq.msixVectors.map { "\($0) vector(s)" } ?? "no"), INTx pin \(pin)")
            } else {
                print("  interrupts: unknown (reading the capabilities needs root: sudo ntb-transport info \(address))")
            }
            if let group = f.iommuGroup {
                let members = try discovery.groupMembers(group)
                print("  IOMMU group \(group): " + members.map(\.description).joined(separator: ", "))
                let offenders = try discovery.nonViableMembers(ofGroup: group)
                if !offenders.isEmpty { print("  " + PCIKitError.groupNotViable(group: group, offenders: offenders).description) }
            } else {
                print("  IOMMU group: none (VFIO needs an IOMMU; bind to uio_pci_generic instead, without DMA isolation)")
            }
        }
    }
}

/// 16 KiB, 1 MiB, 256 MiB, 4 GiB.
func sizeText(_ bytes: UInt64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
    var v = bytes, u = 0
    while v >= 1024, v % 1024 == 0, u < units.count - 1 { v /= 1024; u += 1 }
    return "\(v) \(units[u])"
}
