/// A mapped BAR (or other device region) that stays mapped while this object lives: the owner of the
/// memory an ``MMIORegion`` view points at. It keeps its device open, so the mapping is always
/// unmapped before the device descriptor is closed.
///
/// ```swift
/// let bar0 = try device.mapBAR(0)
/// let regs = bar0.mmio           // volatile view; do not use it after `bar0` goes away
/// let version = regs.load32(at: 0x0)
/// ```
@safe
public final class MappedRegion: @unchecked Sendable {
    /// The region index (the BAR number for BARs 0–5).
    public let index: Int
    /// Size of the region in bytes.
    public let length: Int
    /// Whether stores are write-combined (sysfs `resourceN_wc`); VFIO and UIO mappings are uncached.
    public let writeCombining: Bool
    /// The mmappable (offset, size) areas; the whole region unless VFIO reported sparse areas (e.g. a
    /// BAR holding the MSI-X table). Accessing outside them faults.
    public let areas: [(offset: Int, size: Int)]
    let mapping: OwnedMapping
    private let owner: AnyObject?

    init(index: Int, mapping: OwnedMapping, length: Int, writeCombining: Bool, areas: [(Int, Int)], owner: AnyObject?) {
        self.index = index
        self.mapping = mapping
        self.length = length
        self.writeCombining = writeCombining
        self.areas = areas.map { (offset: $0.0, size: $0.1) }
        self.owner = owner
    }

    // Unmap before the owner (the device) is released, so the device descriptor closes after the mapping.
    deinit { mapping.release() }

    /// A volatile register/memory view of the whole region.
    public var mmio: MMIORegion { unsafe MMIORegion(base: mapping.base, length: length) }
}
