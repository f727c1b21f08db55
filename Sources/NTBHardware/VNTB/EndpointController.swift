public import PCIKit

/// What a vNTB endpoint function needs from its endpoint controller (the `pci_epc_*` calls of
/// `pci-epf-vntb.c`): its BAR backing memory, inbound and outbound address translation, and MSI.
///
/// The mock link implements it with shared-memory files (`NTBMock.MockEndpointController`); a real
/// endpoint would implement it with the EPC driver.
public protocol EndpointController: AnyObject, SendableMetatype {
    /// Endpoint memory behind the config BAR: control region, then the two scratchpad halves.
    var configSpace: MMIORegion { get }
    /// Endpoint memory behind the doorbell BAR (`epf_db`).
    var doorbellSpace: MMIORegion { get }
    /// Size of each memory window BAR (configfs `mwN`); its count is the number of windows.
    var memoryWindowSizes: [Int] { get }
    /// Where each memory window sits in its BAR (RFC `mwN_offset`); nil when every window has its own BAR
    /// (then the control region stays version 0).
    var memoryWindowOffsets: [Int]? { get }
    /// MSI vectors the function offers to the host (its MSI capability).
    var msiVectorCount: Int { get }

    /// Points inbound window `window` (the MW BAR) at endpoint memory `busAddress` (`vntb_epf_mw_set_trans`:
    /// `pci_epc_set_bar` / `pci_epc_map_inbound`).
    func setInboundTranslation(window: Int, busAddress: UInt64, size: Int) throws(NTBError)
    /// Restores the window's default backing (`vntb_epf_mw_clear_trans`).
    func clearInboundTranslation(window: Int)
    /// Maps outbound window `window` onto host address `hostAddress` (`epf_ntb_configure_mw`: `pci_epc_map_addr`).
    func mapOutbound(window: Int, hostAddress: UInt64, size: Int) throws(NTBError)
    /// Unmaps outbound window `window` (`epf_ntb_teardown_mw`).
    func unmapOutbound(window: Int)
    /// The CPU view of outbound window `window` (what the endpoint writes to reach host memory).
    func outboundWindow(_ window: Int) -> MMIORegion
    /// Raises MSI `number` (1-based, as `pci_epc_raise_irq`) at the host if it enabled that many vectors.
    func raiseMSI(_ number: Int)
    /// Tells the controller how many vectors the host enabled (CONFIGURE_DOORBELL argument); 0 disables.
    func enableMSI(vectors: Int, msix: Bool)
    /// Allocates endpoint memory for an inbound window (`pci_epf_alloc_space` / `dma_alloc_coherent`).
    func allocate(length: Int, alignment: Int) throws(NTBError) -> DMABuffer
}
