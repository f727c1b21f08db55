public import PCIKit

/// The contents of `struct ntb_edma_info` (hardware-reference §4.2): what the endpoint publishes at offset 0
/// of the eDMA window so that the host can drive the endpoint's eDMA.
public struct EDMAInfo: Equatable, Sendable {
    /// `reg_size`: R, the eDMA register window size (a power of two).
    public var registerSize: UInt32
    /// `db_base`: endpoint-local address of the notification page (`ntb_edma_db`), the notify channel's
    /// DMA target.
    public var notifyAddress: UInt64
    /// `ll_rd_phys[0 ..< ch_cnt]`: endpoint-local address of each read channel's LL region; the last
    /// one is the notify channel's.
    public var linkedListAddresses: [UInt64]

    /// `ch_cnt`: read channels with an LL region (data channels + the notify channel).
    public var channelCount: Int { linkedListAddresses.count }

    public init(registerSize: UInt32, notifyAddress: UInt64, linkedListAddresses: [UInt64]) {
        precondition(!linkedListAddresses.isEmpty && linkedListAddresses.count <= EDMALayout.infoLinkedListSlots,
                     "ntb_edma_info holds 1-\(EDMALayout.infoLinkedListSlots) LL addresses")
        self.registerSize = registerSize
        self.notifyAddress = notifyAddress
        self.linkedListAddresses = linkedListAddresses
    }

    /// Endpoint side: writes the info page at offset 0 of `window` (the endpoint's view of its own
    /// eDMA window memory). Every field first, then a write barrier, then the magic, so that a host
    /// that sees the magic sees the whole page (RFC v3 patch 25 publishes before link-up; the host reads it
    /// after the link is up).
    public func publish<Space: RegisterSpace>(into window: Space) {
        window.store32(0, at: EDMALayout.infoMagicOffset)
        Barrier.write()
        window.store32(registerSize, at: EDMALayout.infoRegisterSizeOffset)
        window.store16(UInt16(channelCount), at: EDMALayout.infoChannelCountOffset)
        window.store64(notifyAddress, at: EDMALayout.infoNotifyBaseOffset)
        for slot in 0..<EDMALayout.infoLinkedListSlots {
            let address = slot < linkedListAddresses.count ? linkedListAddresses[slot] : 0
            window.store64(address, at: EDMALayout.infoLinkedListOffset(slot))
        }
        Barrier.write()
        window.store32(EDMALayout.infoMagic, at: EDMALayout.infoMagicOffset)
    }

    /// Endpoint side: withdraws a published page (clears the magic), e.g. before unpublishing the window.
    public static func retract<Space: RegisterSpace>(from window: Space) {
        window.store32(0, at: EDMALayout.infoMagicOffset)
        Barrier.write()
    }
}

/// What the host expects of the peer's eDMA window, from the port's ``EDMALocator``.
public struct EDMAWindowExpectation: Equatable, Sendable {
    /// P of the layout.
    public var pageSize: Int
    /// R if the policy fixes it; nil accepts the published `reg_size`.
    public var registerSize: Int?
    /// The `ch_cnt` the endpoint must publish: data channels + the notify channel.
    public var channelCount: Int
    /// The endpoint-local address of window offset 0, when the endpoint backs the whole window with
    /// one contiguous buffer (a vNTB memory window backed by one buffer, and the mock link, do; the
    /// RFC's iATU sub-mappings do not). When known, `db_base` and every LL address must be that base
    /// plus their layout offset, i.e. inside the window; when nil only their form is checked.
    public var peerWindowBase: UInt64?

    public init(pageSize: Int = 4096, registerSize: Int? = nil, channelCount: Int = 5, peerWindowBase: UInt64? = nil) {
        self.pageSize = pageSize
        self.registerSize = registerSize
        self.channelCount = channelCount
        self.peerWindowBase = peerWindowBase
    }

    public init(_ locator: EDMALocator, peerWindowBase: UInt64? = nil) {
        self.init(pageSize: locator.pageSize, registerSize: locator.registerWindowSize,
                  channelCount: locator.publishedChannelCount, peerWindowBase: peerWindowBase)
    }
}

/// A peer eDMA window that passed validation: its info and the layout it implies.
public struct ValidatedEDMAWindow: Equatable, Sendable, CustomStringConvertible {
    public let window: Int
    public let info: EDMAInfo
    public let layout: EDMAWindowLayout
    public let windowLength: Int

    public var description: String {
        "the peer published ntb_edma_info in window \(window): \(info.channelCount) read channels "
            + "(\(info.channelCount - 1) data + notify), reg_size \(formatSize(Int(info.registerSize))), "
            + "layout needs \(formatSize(layout.requiredSize)) of \(formatSize(windowLength))"
    }
}

/// Why a peer's eDMA window was refused. Everything in it was written by the peer, so every field is
/// checked and a bad one is this error, never a crash.
public struct EDMAWindowError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Problem: Equatable, Sendable {
        /// The device has no window the policy's `window=` names.
        case noSuchWindow(selector: EDMAWindowSelector, count: Int)
        /// The window could not be mapped (the device's message).
        case windowUnavailable(String)
        /// The window cannot even hold what must be in it.
        case windowTooSmall(length: Int, required: Int)
        /// `magic` is not 0x45444D41: nothing (or something else) is published.
        case badMagic(found: UInt32)
        /// `ch_cnt` is outside 2...5 (at least one data channel plus the notify channel; 5 LL slots).
        case channelCountOutOfRange(found: Int)
        /// `ch_cnt` differs from the policy's channels + 1.
        case channelCountMismatch(published: Int, expected: Int)
        /// `reg_size` is zero or not a power of two.
        case registerSizeNotPowerOfTwo(found: UInt32)
        /// `reg_size` is smaller than the read-channel registers the eDMA needs.
        case registerSizeTooSmall(found: UInt32, needed: Int)
        /// `reg_size` differs from the policy's `regs=`.
        case registerSizeMismatch(published: UInt32, expected: Int)
        /// `db_base` is zero or not 4-byte aligned.
        case badNotifyAddress(UInt64)
        /// `db_base` is not the notification page of the window (window base known).
        case notifyAddressOutsideWindow(found: UInt64, expected: UInt64)
        /// `ll_rd_phys[channel]` is zero.
        case linkedListAddressZero(channel: Int)
        /// `ll_rd_phys[channel]` is not aligned to the page size.
        case linkedListAddressMisaligned(channel: Int, address: UInt64, pageSize: Int)
        /// `ll_rd_phys[channel]`'s region overlaps another LL region or the notification page.
        case linkedListOverlap(channel: Int, address: UInt64, with: String)
        /// `ll_rd_phys[channel]` is not its LL region inside the window (window base known).
        case linkedListOutsideWindow(channel: Int, address: UInt64, expected: UInt64)
    }

    /// The peer memory window index.
    public let window: Int
    public let problem: Problem

    public init(window: Int, _ problem: Problem) {
        self.window = window
        self.problem = problem
    }

    /// What is wrong, without the remedy (used in policy decisions).
    public var finding: String {
        switch problem {
        case let .noSuchWindow(selector, count):
            return "the policy puts the eDMA window in memory window \(selector), but the device has \(count) peer windows"
        case let .windowUnavailable(why):
            return "memory window \(window) cannot be mapped: \(why)"
        case let .windowTooSmall(length, required):
            return "window \(window) is \(formatSize(length)), the eDMA window layout needs \(formatSize(required))"
        case let .badMagic(found):
            return "bad magic \(hex32(found)) at offset 0 of window \(window) (expected \(hex32(EDMALayout.infoMagic)) \"EDMA\")"
        case let .channelCountOutOfRange(found):
            return "ch_cnt \(found) in window \(window) is out of range (2-\(EDMALayout.infoLinkedListSlots): data channels plus the notify channel)"
        case let .channelCountMismatch(published, expected):
            return "the peer published ch_cnt \(published) in window \(window), the policy expects \(expected) (channels=\(expected - 1) plus the notify channel)"
        case let .registerSizeNotPowerOfTwo(found):
            return "reg_size \(hex(UInt64(found))) in window \(window) is not a power of two"
        case let .registerSizeTooSmall(found, needed):
            return "reg_size \(hex(UInt64(found))) in window \(window) is smaller than the \(hex(UInt64(needed))) bytes of eDMA read-channel registers"
        case let .registerSizeMismatch(published, expected):
            return "the peer published reg_size \(formatSize(Int(published))) in window \(window), the policy says regs=\(formatSize(expected))"
        case let .badNotifyAddress(address):
            return "db_base \(hex(address)) in window \(window) is not a valid notification address (zero or not 4-byte aligned)"
        case let .notifyAddressOutsideWindow(found, expected):
            return "db_base \(hex(found)) in window \(window) is not the window's notification page (expected \(hex(expected)))"
        case let .linkedListAddressZero(channel):
            return "ll_rd_phys[\(channel)] in window \(window) is zero"
        case let .linkedListAddressMisaligned(channel, address, pageSize):
            return "ll_rd_phys[\(channel)] \(hex(address)) in window \(window) is not aligned to the \(formatSize(pageSize)) page size"
        case let .linkedListOverlap(channel, address, other):
            return "ll_rd_phys[\(channel)] \(hex(address)) in window \(window) overlaps \(other)"
        case let .linkedListOutsideWindow(channel, address, expected):
            return "ll_rd_phys[\(channel)] \(hex(address)) is outside its LL region of window \(window) (expected \(hex(expected)))"
        }
    }

    public var description: String {
        let remedy: String
        switch problem {
        case .channelCountMismatch:
            remedy = "set channels= in the policy to match the endpoint (ntb-transport policy show)"
        case .registerSizeMismatch:
            remedy = "set regs= in the policy to the endpoint's register window size, or remove it"
        case .windowTooSmall:
            remedy = "give the endpoint's eDMA memory window at least the required size, or check window= and page= in the policy"
        case .noSuchWindow:
            remedy = "set window= in the policy to an existing window (the RFC uses the last)"
        case .windowUnavailable:
            remedy = "check the device and its BARs (ntb-transport info)"
        case .badMagic:
            remedy = "the endpoint has not published its eDMA window: run it with the edma (or auto) backend, or use host for this port"
        default:
            remedy = "the endpoint published a corrupt eDMA window; restart it, and check that both sides use the same page= size"
        }
        return "the peer's eDMA window is not usable: \(finding); \(remedy)"
    }
}

extension EDMAInfo {
    /// Host side: reads and validates the info page the peer published at offset 0 of `window` (its
    /// eDMA memory window, index `windowIndex`), as RFC v3 patch 25 `ntb_edma_setup_peer` does (magic, ch_cnt)
    /// and further: register size, the layout fitting the window, the notify and LL addresses.
    ///
    /// - Returns: the info and the window layout it implies.
    /// - Throws: ``EDMAWindowError`` naming the first bad field.
    public static func validate<Space: RegisterSpace>(
        window: Space, windowIndex: Int, expecting expected: EDMAWindowExpectation
    ) throws(EDMAWindowError) -> ValidatedEDMAWindow {
        func fail(_ problem: EDMAWindowError.Problem) -> EDMAWindowError { EDMAWindowError(window: windowIndex, problem) }
        let length = window.length
        let page = expected.pageSize
        guard length >= max(page, EDMALayout.infoSize) else { throw fail(.windowTooSmall(length: length, required: max(page, EDMALayout.infoSize))) }

        let magic = window.load32(at: EDMALayout.infoMagicOffset)
        guard magic == EDMALayout.infoMagic else { throw fail(.badMagic(found: magic)) }
        // Read the rest only after the magic, as the endpoint wrote it last (EDMAInfo.publish).
        Barrier.read()
        let channels = Int(window.load16(at: EDMALayout.infoChannelCountOffset))
        guard (2...EDMALayout.infoLinkedListSlots).contains(channels) else { throw fail(.channelCountOutOfRange(found: channels)) }
        guard channels == expected.channelCount else { throw fail(.channelCountMismatch(published: channels, expected: expected.channelCount)) }

        let registerSize = window.load32(at: EDMALayout.infoRegisterSizeOffset)
        guard registerSize != 0, registerSize & (registerSize &- 1) == 0 else { throw fail(.registerSizeNotPowerOfTwo(found: registerSize)) }
        let needed = EDMAWindowLayout.registerBytesNeeded(readChannels: channels)
        guard Int(registerSize) >= needed else { throw fail(.registerSizeTooSmall(found: registerSize, needed: needed)) }
        if let fixed = expected.registerSize, fixed != Int(registerSize) {
            throw fail(.registerSizeMismatch(published: registerSize, expected: fixed))
        }
        let layout = EDMAWindowLayout(pageSize: page, registerSize: Int(registerSize), channelCount: channels)
        guard layout.requiredSize <= length else { throw fail(.windowTooSmall(length: length, required: layout.requiredSize)) }

        let notify = window.load64(at: EDMALayout.infoNotifyBaseOffset)
        guard notify != 0, notify & 3 == 0 else { throw fail(.badNotifyAddress(notify)) }
        if let base = expected.peerWindowBase, notify != base &+ UInt64(layout.notifyOffset) {
            throw fail(.notifyAddressOutsideWindow(found: notify, expected: base &+ UInt64(layout.notifyOffset)))
        }

        var addresses: [UInt64] = []
        for channel in 0..<channels {
            let address = window.load64(at: EDMALayout.infoLinkedListOffset(channel))
            guard address != 0 else { throw fail(.linkedListAddressZero(channel: channel)) }
            guard address % UInt64(page) == 0 else {
                throw fail(.linkedListAddressMisaligned(channel: channel, address: address, pageSize: page))
            }
            if let base = expected.peerWindowBase {
                let want = base &+ UInt64(layout.linkedListOffset(channel))
                guard address == want else { throw fail(.linkedListOutsideWindow(channel: channel, address: address, expected: want)) }
            }
            if overlaps(address, UInt64(page), notify, UInt64(EDMALayout.notifyPageSize)) {
                throw fail(.linkedListOverlap(channel: channel, address: address, with: "the notification page at db_base"))
            }
            if let other = addresses.firstIndex(where: { overlaps(address, UInt64(page), $0, UInt64(page)) }) {
                throw fail(.linkedListOverlap(channel: channel, address: address, with: "ll_rd_phys[\(other)]"))
            }
            addresses.append(address)
        }
        let info = EDMAInfo(registerSize: registerSize, notifyAddress: notify, linkedListAddresses: addresses)
        return ValidatedEDMAWindow(window: windowIndex, info: info, layout: layout, windowLength: length)
    }
}

extension EDMAProbe {
    /// The policy's view of a validation: usable with what was found, or unusable and why.
    public init(_ result: Result<ValidatedEDMAWindow, EDMAWindowError>) {
        switch result {
        case let .success(window): self = .usable(window.description)
        case let .failure(error): self = .unusable(error.finding)
        }
    }
}

/// Whether [a, a+la) and [b, b+lb) intersect (no overflow for addresses near the top).
private func overlaps(_ a: UInt64, _ la: UInt64, _ b: UInt64, _ lb: UInt64) -> Bool {
    a < b ? b - a < la : a - b < lb
}

@usableFromInline func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
