public import PCIKit
public import CNTBShim
public import NTBHardware

/// The `host` backend: the CPU copies each message into a frame in the peer's memory, exactly as
/// Linux `ntb_transport` version 4 does without DMA (`docs/hardware-reference.md` §2.3), so either side may be
/// the stock kernel transport.
public struct HostBackend: TransportBackend {
    public typealias Channel = HostChannel
    public static let name = TransportBackendKind.host.rawValue
    public static let summary = "CPU copy into the peer's memory window, Linux ntb_transport v4 wire format"

    public init<Device: NTBDevice>(device: Device, configuration: TransportConfiguration, options: Void = ()) throws(TransportError) {}

    public func makeChannel(_ memory: QueuePairMemory) throws(TransportError) -> HostChannel {
        guard let tx = HostQueueLayout(areaSize: memory.transmitArea.length, mtu: memory.mtu),
              let rx = HostQueueLayout(areaSize: memory.receiveArea.length, mtu: memory.mtu)
        else {
            throw .invalidConfiguration("queue pair \(memory.queuePair) gets \(min(memory.transmitArea.length, memory.receiveArea.length)) bytes of window, too small for two frames; use fewer queue pairs or larger memory windows")
        }
        return HostChannel(transmit: memory.transmitArea, transmitLayout: tx, receive: memory.receiveArea, receiveLayout: rx)
    }
}

/// One queue pair's v4 rings: frames written into the peer's memory (`tx`), frames read from our
/// inbound buffer (`rx`).
///
/// Ownership of each word (`ntb_transport.c`):
/// - tx frames + headers: written by us (through the outbound window), read by the peer.
/// - tx tail `remote_rx_info->entry`: in OUR memory at the end of the rx area, written by the peer.
/// - rx frames + headers: in our memory, written by the peer; we clear `flags` after consuming.
/// - rx tail `rx_info->entry`: in the PEER's memory at the end of the tx area, written by us.
///
/// Everything read from peer-written words (flags, ver, len, tail) is validated before use.
@safe
public struct HostChannel: FrameChannel, @unchecked Sendable {
    public typealias DataPath = FrameDataPath<Self>
    @usableFromInline let tx: MMIORegion
    @usableFromInline let rx: MMIORegion
    public let transmitLayout: HostQueueLayout
    public let receiveLayout: HostQueueLayout
    // Cached layout numbers (plain stored Ints, so the data path does no arithmetic on layouts).
    @usableFromInline let txFrame: Int
    @usableFromInline let txEntries: UInt32
    @usableFromInline let rxFrame: Int
    @usableFromInline let rxEntries: UInt32
    @usableFromInline let rxMaxPayload: Int
    @usableFromInline let txTailOffset: Int     // remote_rx_info->entry, in rx (own memory)
    @usableFromInline let rxTailOffset: Int     // rx_info->entry, in tx (peer memory)
    @usableFromInline let verOffset: Int
    @usableFromInline let lenOffset: Int
    @usableFromInline let flagsOffset: Int
    @usableFromInline let headerFromFrameEnd: Int
    /// Whether every header and `rx_info` word of the area sits on a 4-byte boundary. Linux lays out
    /// frames of `min(mtu, (S − 4) / 2)` bytes for ANY area size S, so a 64 KiB window gives frames of
    /// 32766 bytes and headers at offsets ≡ 2 (mod 4), and the peer picks S (its MW size scratchpad):
    /// such areas use ``loadWord(_:_:aligned:)`` / ``storeWord(_:_:_:aligned:)``'s unaligned path.
    @usableFromInline let txAligned: Bool
    @usableFromInline let rxAligned: Bool

    // Ring state (ntb_transport_qp: tx_index, tx_pkts, rx_index, rx_pkts).
    @usableFromInline var txIndex: UInt32 = 0
    @usableFromInline var txPackets: UInt32 = 0
    @usableFromInline var txTail: UInt32
    @usableFromInline var txFreeCount: Int
    @usableFromInline var rxIndex: UInt32 = 0
    @usableFromInline var rxPackets: UInt32 = 0
    @usableFromInline var rxLastConsumed: UInt32 = 0
    @usableFromInline var rxUnpublished: Bool = false
    @usableFromInline var staged: Int = 0
    @usableFromInline var stagedFirst: UInt32 = 0

    public init(transmit: MMIORegion, transmitLayout: HostQueueLayout, receive: MMIORegion, receiveLayout: HostQueueLayout) {
        precondition(transmit.length >= transmitLayout.areaSize && receive.length >= receiveLayout.areaSize)
        tx = transmit
        rx = receive
        self.transmitLayout = transmitLayout
        self.receiveLayout = receiveLayout
        txFrame = transmitLayout.frameSize
        txEntries = UInt32(transmitLayout.entryCount)
        rxFrame = receiveLayout.frameSize
        rxEntries = UInt32(receiveLayout.entryCount)
        rxMaxPayload = receiveLayout.maxPayload
        txTailOffset = receiveLayout.rxInfoOffset
        rxTailOffset = transmitLayout.rxInfoOffset
        verOffset = HostWire.headerVersionOffset
        lenOffset = HostWire.headerLengthOffset
        flagsOffset = HostWire.headerFlagsOffset
        headerFromFrameEnd = HostWire.headerSize
        txTail = UInt32(transmitLayout.entryCount) - 1
        txFreeCount = transmitLayout.entryCount - 1
        txAligned = Self.isWordAligned(transmit, transmitLayout)
        rxAligned = Self.isWordAligned(receive, receiveLayout)
    }

    /// Whether `layout`'s headers and `rx_info` in `region` are all 4-byte aligned addresses.
    static func isWordAligned(_ region: MMIORegion, _ layout: HostQueueLayout) -> Bool {
        unsafe (UInt(bitPattern: region.baseAddress) | UInt(layout.frameSize) | UInt(layout.areaSize)) & 3 == 0
    }

    // MARK: Word access (aligned: one volatile 32-bit access; unaligned: what Linux's iowrite32 does
    // at such an address, one unaligned 32-bit access, fenced so it is neither elided nor reordered).

    /// Reads the 32-bit word at `offset`; `aligned` says whether the channel's layout
    /// is word-aligned (then this is ``MMIORegion/load32(at:)``).
    @inlinable @inline(__always)
    static func loadWord(_ region: MMIORegion, _ offset: Int, aligned: Bool) -> UInt32 {
        if aligned { return region.load32(at: offset) }
        precondition(offset >= 0 && offset <= region.length &- 4, "word at \(offset) outside a \(region.length)-byte area")
        // Compiler barrier on x86 (dma_rmb): the load happens here, every time.
        Barrier.dmaRead()
        let v = unsafe UnsafeRawPointer(region.baseAddress).loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        Barrier.dmaRead()
        return v
    }

    /// Writes the 32-bit word at `offset` (see ``loadWord(_:_:aligned:)``).
    @inlinable @inline(__always)
    static func storeWord(_ region: MMIORegion, _ value: UInt32, _ offset: Int, aligned: Bool) {
        if aligned { region.store32(value, at: offset); return }
        precondition(offset >= 0 && offset <= region.length &- 4, "word at \(offset) outside a \(region.length)-byte area")
        Barrier.dmaWrite()
        unsafe region.baseAddress.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
        Barrier.dmaWrite()
    }

    @inlinable public var maxPayload: Int { txFrame - headerFromFrameEnd }
    @inlinable public var transmitEntries: Int { Int(txEntries) }
    @inlinable public var transmitFree: Int { txFreeCount }

    /// `ntb_transport_setup_qp_mw`: `remote_rx_info->entry = rx_max_entry − 1` and every rx header
    /// zeroed. (Linux initialises the tail with the RECEIVE entry count; both sides compute the same
    /// N from the same window size.)
    public func prepareSharedMemory() {
        Self.storeWord(rx, rxEntries - 1, txTailOffset, aligned: rxAligned)
        for i in 0..<Int(rxEntries) {
            let h = receiveLayout.headerOffset(i)
            Self.storeWord(rx, 0, h + verOffset, aligned: rxAligned)
            Self.storeWord(rx, 0, h + lenOffset, aligned: rxAligned)
            Self.storeWord(rx, 0, h + flagsOffset, aligned: rxAligned)
        }
        Barrier.full()
    }

    public mutating func resetIndices() {
        txIndex = 0
        txPackets = 0
        txTail = txEntries - 1
        txFreeCount = Int(txEntries) - 1
        rxIndex = 0
        rxPackets = 0
        rxLastConsumed = 0
        rxUnpublished = false
        staged = 0
    }

    // MARK: Transmit (ntb_process_tx / ntb_async_tx / ntb_memcpy_tx / ntb_tx_copy_callback)

    @inlinable
    public mutating func reapTransmitted() -> Int {
        let tail = Self.loadWord(rx, txTailOffset, aligned: rxAligned)
        if tail == txTail { return 0 }
        // Validate: the tail is a frame index the peer consumed, within what we have in flight.
        guard tail < txEntries else { return -1 }
        let inFlight = (txEntries &- 1) &- UInt32(txFreeCount)
        let consumed = tail >= txTail ? tail &- txTail : txEntries &- txTail &+ tail
        guard consumed <= inFlight else { return -1 }
        txTail = tail
        // ntb_transport_tx_free_entry: tail >= head ? tail - head : N + tail - head
        txFreeCount = Int(tail >= txIndex ? tail &- txIndex : txEntries &+ tail &- txIndex)
        return Int(consumed)
    }

    /// The payload copy (memcpy_toio): non-temporal for large payloads, as `ntb_memcpy_tx`.
    @inlinable @inline(__always)
    func copyPayload(_ payload: UnsafeRawBufferPointer, toOffset offset: Int) {
        unsafe Self.copyPayload(payload, into: tx, at: offset)
    }

    /// The host backend's payload copy into a window (Linux `ntb_memcpy_tx`: the non-temporal
    /// `__copy_from_user_inatomic_nocache`, which bypasses the cache), for tools that compare the
    /// transport with the copy it is built on.
    @inlinable @inline(__always)
    public static func copyPayload(_ payload: UnsafeRawBufferPointer, into region: MMIORegion, at offset: Int) {
        precondition(offset >= 0 && offset <= region.length - payload.count)
        guard let source = payload.baseAddress else { return }
        unsafe ntb_transport_copy_nocache(region.baseAddress + offset, source, UInt(payload.count))
    }

    @inlinable
    public mutating func transmit(_ payload: UnsafeRawBufferPointer, flags: UInt32) {
        precondition(txFreeCount > 0 && payload.count <= maxPayload)
        let frame = Int(txIndex) &* txFrame
        let header = frame &+ txFrame &- headerFromFrameEnd
        // ntb_async_tx: len and ver first, then the payload (memcpy_toio), then wmb, then flags|DONE.
        Self.storeWord(tx, UInt32(truncatingIfNeeded: payload.count), header &+ lenOffset, aligned: txAligned)
        Self.storeWord(tx, txPackets, header &+ verOffset, aligned: txAligned)
        if payload.count > 0 { unsafe copyPayload(payload, toOffset: frame) }
        // "Ensure that the data is fully copied out before setting the flags" (ntb_memcpy_tx).
        Barrier.write()
        Self.storeWord(tx, flags | HostWire.doneFlag, header &+ flagsOffset, aligned: txAligned)
        txIndex = txIndex &+ 1 == txEntries ? 0 : txIndex &+ 1
        txPackets &+= 1
        txFreeCount &-= 1
    }

    /// Writes a frame's length, packet number and payload but not yet its flags; ``publishStaged()``
    /// sets DONE on every staged frame after one barrier (a batch pays one barrier, not one per frame).
    @inlinable
    public mutating func stageTransmit(_ payload: UnsafeRawBufferPointer) {
        precondition(txFreeCount > 0 && payload.count <= maxPayload)
        let frame = Int(txIndex) &* txFrame
        let header = frame &+ txFrame &- headerFromFrameEnd
        Self.storeWord(tx, UInt32(truncatingIfNeeded: payload.count), header &+ lenOffset, aligned: txAligned)
        Self.storeWord(tx, txPackets, header &+ verOffset, aligned: txAligned)
        if payload.count > 0 { unsafe copyPayload(payload, toOffset: frame) }
        if staged == 0 { stagedFirst = txIndex }
        staged &+= 1
        txIndex = txIndex &+ 1 == txEntries ? 0 : txIndex &+ 1
        txPackets &+= 1
        txFreeCount &-= 1
    }

    @inlinable
    public mutating func publishStaged() {
        guard staged > 0 else { return }
        // Every staged payload before any of their flags (ntb_memcpy_tx's wmb, once per batch).
        Barrier.write()
        var i = stagedFirst
        for _ in 0..<staged {
            Self.storeWord(tx, HostWire.doneFlag, (Int(i) &+ 1) &* txFrame &- headerFromFrameEnd &+ flagsOffset, aligned: txAligned)
            i = i &+ 1 == txEntries ? 0 : i &+ 1
        }
        staged = 0
    }

    @inlinable
    public func flushTransmit() {
        // Read back the last flags written: a read completion pushes the posted (write-combined)
        // stores out before the doorbell, the 2026 fix for WC windows.
        let last = txIndex == 0 ? txEntries &- 1 : txIndex &- 1
        _ = Self.loadWord(tx, (Int(last) &+ 1) &* txFrame &- headerFromFrameEnd &+ flagsOffset, aligned: txAligned)
    }

    // MARK: Receive (ntb_process_rxc / ntb_memcpy_rx / ntb_complete_rxc)

    @inlinable
    public func receivePending() -> Bool {
        let header = (Int(rxIndex) &+ 1) &* rxFrame &- headerFromFrameEnd
        return Self.loadWord(rx, header &+ flagsOffset, aligned: rxAligned) & HostWire.doneFlag != 0
    }

    @inlinable
    public mutating func peekReceive() -> ReceivePeek {
        let header = (Int(rxIndex) &+ 1) &* rxFrame &- headerFromFrameEnd
        let flags = Self.loadWord(rx, header &+ flagsOffset, aligned: rxAligned)
        if flags & HostWire.doneFlag == 0 { return .empty }
        // Flags before the rest of the frame (the peer wrote them last).
        Barrier.dmaRead()
        if flags & HostWire.linkDownFlag != 0 { return .linkDown }
        let ver = Self.loadWord(rx, header &+ verOffset, aligned: rxAligned)
        if ver != rxPackets { return .badVersion(found: ver, expected: rxPackets) }
        let len = Self.loadWord(rx, header &+ lenOffset, aligned: rxAligned)
        if Int(len) > rxMaxPayload { return .badLength(len) }
        return .frame(length: Int(len))
    }

    @inlinable
    public func receivedBytes(length: Int) -> UnsafeRawBufferPointer {
        precondition(length >= 0 && length <= rxMaxPayload)
        return unsafe UnsafeRawBufferPointer(start: rx.baseAddress + Int(rxIndex) &* rxFrame, count: length)
    }

    @inlinable
    public mutating func consumeReceived() {
        let header = (Int(rxIndex) &+ 1) &* rxFrame &- headerFromFrameEnd
        // Our copy-out is ordered before the peer may reuse the frame by the barrier in
        // publishReceiveTail (the peer reuses it only after seeing the tail).
        Self.storeWord(rx, 0, header &+ flagsOffset, aligned: rxAligned)
        rxLastConsumed = rxIndex
        rxUnpublished = true
        rxIndex = rxIndex &+ 1 == rxEntries ? 0 : rxIndex &+ 1
        rxPackets &+= 1
    }

    /// Skips a LINK_DOWN frame: clears its flags without counting a packet (`hdr->flags = 0`).
    @inlinable
    public mutating func clearLinkDownFrame() {
        let header = (Int(rxIndex) &+ 1) &* rxFrame &- headerFromFrameEnd
        Self.storeWord(rx, 0, header &+ flagsOffset, aligned: rxAligned)
    }

    @inlinable
    public mutating func publishReceiveTail() {
        guard rxUnpublished else { return }
        // ntb_memcpy_rx: "Ensure that the data is fully copied out before clearing the flag": every
        // read of the consumed frames and their cleared flags before the tail the peer acts on.
        Barrier.full()
        // ntb_complete_rxc: iowrite32(entry->rx_index, &qp->rx_info->entry), once per batch.
        Self.storeWord(tx, rxLastConsumed, rxTailOffset, aligned: txAligned)
        rxUnpublished = false
    }

    // Diagnostics for counters.
    @inlinable public var transmitIndex: UInt32 { txIndex }
    @inlinable public var transmitTail: UInt32 { txTail }
    @inlinable public var receiveIndex: UInt32 { rxIndex }
    @inlinable public var receiveEntries: Int { Int(rxEntries) }
}
