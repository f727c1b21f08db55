public import NTBHardware
public import PCIKit

/// The eDMA window on an NTB device: the endpoint publishes it, the host probes it (hardware-reference §4.2,
/// §4.3 "Init order": the endpoint publishes before link-up, the host connects after the handshake).
public enum EDMAPeerWindow {
    /// Host: finds the peer's eDMA window named by `locator` and validates the info published in it.
    ///
    /// - Parameter peerWindowBase: the endpoint-side address of the window's offset 0 when the
    ///   endpoint backs it with one buffer (then every address is checked against the layout).
    /// - Returns: the validated window, or why it is not usable (the policy's `auto` falls back on it,
    ///   `edma` refuses the port).
    public static func probe<Device: NTBDevice>(_ device: Device, locator: EDMALocator,
                                                peerWindowBase: UInt64? = nil) -> Result<ValidatedEDMAWindow, EDMAWindowError> {
        let count = device.peerMemoryWindowCount
        guard let index = locator.window.resolve(windowCount: count) else {
            return .failure(EDMAWindowError(window: -1, .noSuchWindow(selector: locator.window, count: count)))
        }
        let window: MMIORegion
        do throws(NTBError) {
            window = try device.peerMemoryWindow(index)
        } catch {
            return .failure(EDMAWindowError(window: index, .windowUnavailable(error.description)))
        }
        return Result { () throws(EDMAWindowError) in
            try EDMAInfo.validate(window: window, windowIndex: index,
                                  expecting: EDMAWindowExpectation(locator, peerWindowBase: peerWindowBase))
        }
    }

    /// Endpoint: the memory part of the eDMA window, published.
    public struct Published {
        /// The inbound window index.
        public let window: Int
        /// The buffer behind the window (info, notification page, register-block slot, LL regions).
        public let buffer: DMABuffer
        public let layout: EDMAWindowLayout
        public let info: EDMAInfo
        /// The notification page (this side's memory, scanned on the notify channel's completion).
        public var notifyPage: MMIORegion { buffer.region.mmio.subregion(offset: layout.notifyOffset, length: layout.pageSize) }
        /// Read channel `channel`'s LL region: the CPU view and the address the eDMA uses.
        public func linkedList(_ channel: Int) -> (region: MMIORegion, busAddress: UInt64) {
            let offset = layout.linkedListOffset(channel)
            return (buffer.region.mmio.subregion(offset: offset, length: layout.pageSize), info.linkedListAddresses[channel])
        }
    }

    /// Endpoint: allocates one buffer for the window named by `locator`, points the inbound window at
    /// it, lays out info, notification page and one LL region per read channel (data channels + the
    /// notify channel), and publishes the info (magic last).
    ///
    /// The register block at 2P is left to the platform: on silicon the endpoint maps its eDMA
    /// registers there with an inbound iATU sub-mapping (RFC v3 patch 25), which the generic NTB operations
    /// cannot express; the mock link's host reaches the engine model's registers directly.
    /// - Parameter registerSize: R, a power of two (the policy's `regs=`, else the eDMA's block rounded up).
    public static func publish<Device: NTBDevice>(_ device: Device, locator: EDMALocator,
                                                  registerSize: Int) throws(NTBError) -> Published {
        let count = device.memoryWindowCount
        guard let index = locator.window.resolve(windowCount: count) else {
            throw .unsupported("the policy puts the eDMA window in memory window \(locator.window), but \(device.name) has \(count); set window= to one of 0-\(max(0, count - 1)) or last")
        }
        let layout = EDMAWindowLayout(pageSize: locator.pageSize, registerSize: registerSize,
                                      channelCount: locator.publishedChannelCount)
        let limits = try device.memoryWindowAlignment(index)
        var size = layout.requiredSize
        if limits.sizeAlignment > 1 {
            let a = Int(limits.sizeAlignment)
            size = (size + a - 1) / a * a
        }
        guard UInt64(size) <= limits.maxSize else {
            throw .unsupported("the eDMA window needs \(formatSize(size)) but memory window \(index) of \(device.name) translates at most \(formatSize(Int(limits.maxSize))); lower regs= or page=, or enlarge the window")
        }
        let buffer = try device.allocateInboundBuffer(length: size, alignment: max(Int(limits.addressAlignment), layout.pageSize))
        let base = buffer.region.busAddress
        let info = EDMAInfo(registerSize: UInt32(registerSize), notifyAddress: base + UInt64(layout.notifyOffset),
                            linkedListAddresses: (0..<layout.channelCount).map { base + UInt64(layout.linkedListOffset($0)) })
        info.publish(into: buffer.region.mmio)
        do throws(NTBError) {
            try device.setMemoryWindowTranslation(index, busAddress: base, size: size)
        } catch {
            EDMAInfo.retract(from: buffer.region.mmio)
            buffer.close()
            throw error
        }
        return Published(window: index, buffer: buffer, layout: layout, info: info)
    }
}
