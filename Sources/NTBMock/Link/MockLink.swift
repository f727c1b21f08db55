import CNTBShim
public import NTBHardware
public import PCIKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Which endpoint SoC the mock link imitates: PCI IDs, BAR map and control-region version
/// (docs/hardware-reference.md §3.4).
public enum MockLinkProfile: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// Renesas R-Car S4 (1912:0030): config+spads BAR0, MWs in BAR2 at RFC per-MW offsets (version 1),
    /// doorbells in the fixed 256-byte BAR4.
    case rcarS4 = 0
    /// NXP i.MX8 (1957:0809): config+spads BAR0, doorbells BAR2, MW1 BAR4, MW2 BAR5 (version 0).
    case imx8 = 1

    public var description: String { self == .rcarS4 ? "rcar" : "imx8" }
    public init?(name: String) {
        switch name.lowercased() {
        case "rcar", "rcar-s4", "r-car": self = .rcarS4
        case "imx8", "i.mx8": self = .imx8
        default: return nil
        }
    }
    public var map: EPFBARMap { self == .rcarS4 ? .rcarS4 : .imx8 }
    public var pciID: (vendor: UInt16, device: UInt16) { self == .rcarS4 ? (0x1912, 0x0030) : (0x1957, 0x0809) }
    /// Whether the windows sit at per-MW offsets in a shared BAR (control region version 1).
    public var usesWindowOffsets: Bool { self == .rcarS4 }
    public var maxWindows: Int { 2 }
}

/// The geometry of a mock link, fixed by `ntb-transport mock up` (or ``MockLink/create(at:configuration:)``).
public struct MockLinkConfiguration: Sendable, Equatable {
    public var profile: MockLinkProfile = .rcarS4
    public var memoryWindowCount = 2
    /// Size of each memory window (its BAR, or its part of the shared BAR).
    public var memoryWindowSize = 4 << 20
    public var scratchpadCount = 64
    /// Doorbell slots the endpoint serves (configfs `db_count`).
    public var doorbellSlots = 16
    /// MSI vectors of the endpoint function (vector 0 = link, doorbell bit b = vector b + 2).
    public var msiVectors = 16
    public var hostRAMSize = 64 << 20
    public var endpointRAMSize = 64 << 20
    /// Heartbeat period of each side's monitor; a hung peer is declared gone after 10 missed beats (at least 500 ms).
    public var heartbeatMilliseconds = 50
    /// Host doorbell writes also interrupt the endpoint (vNTB `msi_doorbell`).
    public var msiDoorbell = false

    public init() {}

    /// Where the endpoint's memory writes become the host's MSIs: the x86 MSI window (a write of data v
    /// raises the endpoint function's MSI vector v at the host). The eDMA model's IMWr uses it.
    public static let msiAddress: UInt64 = 0xFEE0_0000

    /// Host IOVAs start at 4 GiB (above a 32-bit hole); endpoint RAM at 2 GiB like an ARM SoC's DRAM.
    public static let hostRAMBus: UInt64 = 0x1_0000_0000
    public static let endpointRAMBus: UInt64 = 0x8000_0000

    /// Checks the geometry; the error names the option to fix.
    public func validate() throws(NTBError) {
        func bad(_ what: String) -> NTBError { .unsupported("mock link: \(what)") }
        guard (1...profile.maxWindows).contains(memoryWindowCount) else { throw bad("--mws must be 1...\(profile.maxWindows) for \(profile)") }
        guard memoryWindowSize >= 4096 && memoryWindowSize % 4096 == 0 && memoryWindowSize <= 1 << 30 else { throw bad("--mw-size must be a multiple of 4 KiB up to 1 GiB") }
        guard (0...EPFControl.maximumScratchpads).contains(scratchpadCount) else { throw bad("--spads must be 0...\(EPFControl.maximumScratchpads)") }
        guard (EPFControl.minimumVectors...EPFControl.slots).contains(doorbellSlots) else { throw bad("--doorbells must be \(EPFControl.minimumVectors)...\(EPFControl.slots)") }
        guard (EPFControl.minimumVectors...EPFControl.maximumVectors).contains(msiVectors) else { throw bad("--msi must be \(EPFControl.minimumVectors)...\(EPFControl.maximumVectors)") }
        guard endpointRAMSize >= memoryWindowCount * memoryWindowSize * 2 && endpointRAMSize % 4096 == 0 else { throw bad("--ep-ram must be a multiple of 4 KiB and at least twice the memory windows") }
        guard hostRAMSize >= 1 << 20 && hostRAMSize % 4096 == 0 else { throw bad("--host-ram must be a multiple of 4 KiB, at least 1 MiB") }
        guard heartbeatMilliseconds >= 1 && heartbeatMilliseconds <= 1000 else { throw bad("--heartbeat-ms must be 1...1000") }
    }

    /// BAR sizes as the host sees them (power-of-two sizes as PCI requires).
    var barSizes: [Int] {
        var sizes = [Int](repeating: 0, count: 6)
        let map = profile.map
        let ctrl = profile.usesWindowOffsets ? EPFControl.sizeVersion1 : EPFControl.sizeVersion0
        sizes[map.config] = Self.pow2(max(4096, ctrl + 8 * scratchpadCount))
        sizes[map.doorbell] = profile == .rcarS4 ? 256 : 4096   // R-Car S4 BAR4 is fixed at 256 bytes
        if profile.usesWindowOffsets {
            sizes[map.memoryWindows[0]!] = Self.pow2(memoryWindowCount * memoryWindowSize)
        } else {
            for n in 0..<memoryWindowCount { sizes[map.memoryWindows[n]!] = Self.pow2(memoryWindowSize) }
        }
        return sizes
    }

    static func pow2(_ n: Int) -> Int { var p = 1; while p < n { p <<= 1 }; return p }
}

/// One piece of bus address space with its CPU mapping in this process (host RAM, endpoint RAM). The DW
/// eDMA engine model takes these as its address map.
@safe
public struct MockMemorySegment: @unchecked Sendable {
    public let name: String
    public let busAddress: UInt64
    public let length: Int
    public let pointer: UnsafeMutableRawPointer
    public var region: DMARegion { unsafe DMARegion(address: pointer, busAddress: busAddress, length: length) }
    /// The segment in the DW eDMA engine model's address map.
    public var busSegment: BusSegment { unsafe BusSegment(base: busAddress, length: length, pointer: pointer) }
    public func contains(_ bus: UInt64, length: Int) -> Bool {
        bus >= busAddress && length >= 0 && bus - busAddress <= UInt64(self.length) && UInt64(length) <= UInt64(self.length) - (bus - busAddress)
    }
}

/// Which side of the link a process plays.
public enum MockRole: String, Sendable, CaseIterable, CustomStringConvertible {
    case host, endpoint
    public var description: String { rawValue }
    var index: Int { self == .host ? 0 : 1 }
    var peer: MockRole { self == .host ? .endpoint : .host }
}

/// A mock NTB link: a directory (default `/dev/shm/ntb-mock`) of shared-memory files that stand for the
/// endpoint function's BARs, both sides' RAM, the MSI wires and the link itself (docs/mock-device.md).
///
/// Each process (or thread) opens one side with ``open(at:role:)``; a side is held with an exclusive
/// `flock` on `<role>.lock`, so a second opener of the same side is refused while the first lives, and a
/// dead side is taken over and started clean. A monitor thread beats a heartbeat and watches the peer:
/// a killed peer (its lock is gone) is seen at the next beat, a hung one after 10 missed beats (at least 500 ms).
@safe
public final class MockLink: @unchecked Sendable {
    public let directory: String
    public let role: MockRole
    public let configuration: MockLinkConfiguration
    /// Bumped each time a process takes this side.
    public let epoch: UInt64

    let pageFD: Int32
    let page: MMIORegion
    private let lockFD: Int32
    private let peerLockFD: Int32
    /// Fires when the peer comes or goes; part of the device's event sources.
    public let monitorNotifier: EventNotifier
    private let peerState = Mutex<(present: Bool, epoch: UInt64, lastBeat: UInt64, staleTicks: Int)>((false, 0, 0, 0))
    private let stopping = Atomic<Bool>(false)
    private var monitor: pthread_t?
    private let handlers = Mutex<[@Sendable (Bool) -> Void]>([])
    private let tickHandlers = Mutex<[@Sendable () -> Void]>([])
    private var mappings: [(UnsafeMutableRawPointer, Int)] = unsafe []
    private var descriptors: [Int32] = []

    // MARK: Files

    public static let defaultDirectory = "/dev/shm/ntb-mock"
    static let pageFile = "link"
    static func lockFile(_ role: MockRole) -> String { "\(role).lock" }
    static let configFile = "config.bar"
    static let doorbellFile = "doorbell.bar"
    static func windowFile(_ n: Int) -> String { "mw\(n).bar" }
    static let hostRAMFile = "host.ram"
    static let endpointRAMFile = "ep.ram"
    static func msiFile(_ n: Int) -> String { "msi\(n).fifo" }
    static let endpointDoorbellFile = "ep-doorbell.fifo"

    func path(_ file: String) -> String { "\(directory)/\(file)" }

    // MARK: Create / remove

    /// Creates (or re-creates) the link directory with `configuration`. Refuses while a process holds a side.
    public static func create(at directory: String, configuration: MockLinkConfiguration) throws(NTBError) {
        try configuration.validate()
        try MockSys.makeDirectory(directory)
        if let holder = liveSides(at: directory).first {
            throw .unsupported("mock:\(directory): the \(holder) side is in use; stop that process before `mock up` again, or use another directory")
        }
        // Files with our names in a directory that is not a mock link are someone else's: keep them.
        if MockSys.listDirectory(directory).contains(where: isOurFile) { try requireMockLink(at: directory) }
        for name in MockSys.listDirectory(directory) where isOurFile(name) { MockSys.remove("\(directory)/\(name)") }
        let c = configuration
        func make(_ name: String, _ size: Int) throws(NTBError) { MockSys.closeFile(try MockSys.openFile("\(directory)/\(name)", create: true, size: size)) }
        try make(configFile, c.barSizes[c.profile.map.config])
        try make(doorbellFile, max(4096, c.barSizes[c.profile.map.doorbell]))
        for n in 0..<c.memoryWindowCount { try make(windowFile(n), c.memoryWindowSize) }
        try make(hostRAMFile, c.hostRAMSize)
        try make(endpointRAMFile, c.endpointRAMSize)
        try make(lockFile(.host), 0)
        try make(lockFile(.endpoint), 0)
        for n in 0..<c.msiVectors { _ = try fifo("\(directory)/\(msiFile(n))") }
        _ = try fifo("\(directory)/\(endpointDoorbellFile)")
        // The page last: its magic says the directory is complete.
        let fd = try MockSys.openFile("\(directory)/\(pageFile)", create: true, size: 4096)
        defer { MockSys.closeFile(fd) }
        let p = try unsafe MockSys.map(fd, offset: 0, length: 4096, what: "\(directory)/\(pageFile)")
        defer { unsafe MockSys.unmap(p, 4096) }
        let page = unsafe MMIORegion(base: p, length: 4096)
        for off in stride(from: 0, to: 4096, by: 8) { page.store64(0, at: off) }
        page.store32(UInt32(NTB_MOCK_LAYOUT_VERSION), at: Page.layoutVersion)
        page.store32(c.profile.rawValue, at: Page.profile)
        page.store32(UInt32(c.memoryWindowCount), at: Page.numMWs)
        page.store32(UInt32(c.scratchpadCount), at: Page.spadCount)
        page.store32(UInt32(c.doorbellSlots), at: Page.dbCount)
        page.store32(UInt32(c.msiVectors), at: Page.msiVectors)
        page.store32(UInt32(c.heartbeatMilliseconds), at: Page.heartbeat)
        page.store32((c.msiDoorbell ? UInt32(NTB_MOCK_FLAG_MSI_DOORBELL) : 0) | (c.profile.usesWindowOffsets ? UInt32(NTB_MOCK_FLAG_RFC_OFFSETS) : 0), at: Page.flags)
        for n in 0..<c.memoryWindowCount { page.store64(UInt64(c.memoryWindowSize), at: Page.mwSize + 8 * n) }
        page.store64(MockLinkConfiguration.hostRAMBus, at: Page.hostRAMBus)
        page.store64(UInt64(c.hostRAMSize), at: Page.hostRAMSize)
        page.store64(MockLinkConfiguration.endpointRAMBus, at: Page.endpointRAMBus)
        page.store64(UInt64(c.endpointRAMSize), at: Page.endpointRAMSize)
        for (n, s) in c.barSizes.enumerated() { page.store64(UInt64(s), at: Page.barSize + 8 * n) }
        Barrier.full()
        page.store32(UInt32(NTB_MOCK_MAGIC), at: Page.magic)
    }

    /// Removes the link directory. Refuses while a process holds a side unless `force`.
    public static func remove(at directory: String, force: Bool = false) throws(NTBError) {
        guard MockSys.exists(directory) else { return }
        // Never delete files in a directory that is not a mock link (files named `link`, `*.bar`, `stats.*`
        // may be anyone's), `--force` or not.
        try requireMockLink(at: directory)
        if !force, let holder = liveSides(at: directory).first {
            throw .unsupported("mock:\(directory): the \(holder) side is in use; stop it first or pass --force")
        }
        let names = MockSys.listDirectory(directory)
        for name in names where isOurFile(name) { MockSys.remove("\(directory)/\(name)") }
        let others = names.filter { !isOurFile($0) }
        if !MockSys.removeDirectory(directory) && !others.isEmpty {
            throw .unsupported("mock:\(directory): removed the link files but left the directory, which also holds \(others.sorted().joined(separator: ", ")); remove those yourself")
        }
    }

    /// Checks that `directory` is a mock link: its `link` page carries the mock magic (any layout
    /// version: an old link must still be removable), or, for a `mock up` that stopped before writing
    /// the page, it holds both side locks and the config BAR file and nothing but link files.
    static func requireMockLink(at directory: String) throws(NTBError) {
        let names = MockSys.listDirectory(directory)
        let refuse = NTBError.unsupported("\(directory) is not a mock link (no `\(pageFile)` page with the mock magic); nothing was removed. Pass the --dir that `ntb-transport mock up` created")
        let path = "\(directory)/\(pageFile)"
        if names.contains(pageFile) {
            guard let fd = try? MockSys.openFile(path, create: false) else { throw refuse }
            defer { MockSys.closeFile(fd) }
            if MockSys.fileSize(fd) == 4096, let p = try? unsafe MockSys.map(fd, offset: 0, length: 4096, what: path) {
                defer { unsafe MockSys.unmap(p, 4096) }
                if unsafe MMIORegion(base: p, length: 4096).load32(at: Page.magic) == UInt32(NTB_MOCK_MAGIC) { return }
            }
        }
        let unfinished = [lockFile(.host), lockFile(.endpoint), configFile].allSatisfy(names.contains)
            && names.allSatisfy(isOurFile)
        guard unfinished else { throw refuse }
    }

    /// Files the link, and the tools run on it, create: the link page, locks, BARs, RAMs, MSI FIFOs,
    /// the hosted eDMA model's files, and the transport's per-role counter files (`stats.host`,
    /// `stats.endpoint`).
    static func isOurFile(_ name: String) -> Bool {
        name == pageFile || name.hasPrefix("stats.") || name == EDMAModelFiles.registers || name == EDMAModelFiles.rings
            || name.hasSuffix(".lock") || name.hasSuffix(".bar") || name.hasSuffix(".ram") || name.hasSuffix(".fifo")
    }

    /// Sides whose lock is held by a live process.
    public static func liveSides(at directory: String) -> [MockRole] {
        MockRole.allCases.filter { role in
            let path = "\(directory)/\(lockFile(role))"
            guard MockSys.exists(path), let fd = try? MockSys.openFile(path, create: false) else { return false }
            defer { MockSys.closeFile(fd) }
            return MockSys.isLocked(fd)
        }
    }

    static func fifo(_ path: String) throws(NTBError) -> EventNotifier {
        do { return try EventNotifier(fifoAt: path) } catch { throw .pci(error) }
    }

    /// Slot of `fifo_pending[]` for the endpoint doorbell FIFO (MSI vector n uses slot n).
    static let endpointDoorbellSlot = Int(NTB_MOCK_FIFO_SLOTS) - 1

    /// An interrupt FIFO of this link that coalesces through its `fifo_pending[slot]` word in the link page
    /// (raised again while pending = no system call; see `EventNotifier(fifoAt:pendingWord:retaining:)`).
    func interrupt(_ file: String, slot: Int) throws(NTBError) -> EventNotifier {
        precondition(slot >= 0 && slot < Int(NTB_MOCK_FIFO_SLOTS))
        let word = unsafe (page.baseAddress + Page.fifoPending + 4 * slot).assumingMemoryBound(to: UInt32.self)
        do { return try unsafe EventNotifier(fifoAt: path(file), pendingWord: word, retaining: self) } catch { throw .pci(error) }
    }

    /// Reads the configuration a directory was made with.
    public static func configuration(at directory: String) throws(NTBError) -> MockLinkConfiguration {
        let path = "\(directory)/\(pageFile)"
        guard MockSys.exists(path) else {
            throw .unsupported("mock:\(directory) is not a mock link; create it with `ntb-transport mock up --dir \(directory)`")
        }
        let fd = try MockSys.openFile(path, create: false)
        defer { MockSys.closeFile(fd) }
        guard MockSys.fileSize(fd) >= 4096 else { throw stale(directory, "its link page is truncated") }
        let p = try unsafe MockSys.map(fd, offset: 0, length: 4096, what: path)
        defer { unsafe MockSys.unmap(p, 4096) }
        return try readConfiguration(unsafe MMIORegion(base: p, length: 4096), directory)
    }

    static func stale(_ directory: String, _ why: String) -> NTBError {
        .unsupported("mock:\(directory): \(why); run `ntb-transport mock down --dir \(directory) --force` and `mock up` again")
    }

    static func readConfiguration(_ page: MMIORegion, _ directory: String) throws(NTBError) -> MockLinkConfiguration {
        guard page.load32(at: Page.magic) == UInt32(NTB_MOCK_MAGIC) else { throw stale(directory, "the link page has no valid magic (unfinished `mock up` or not a mock link)") }
        let version = page.load32(at: Page.layoutVersion)
        guard version == UInt32(NTB_MOCK_LAYOUT_VERSION) else { throw stale(directory, "it was made by another mock layout version (\(version))") }
        guard let profile = MockLinkProfile(rawValue: page.load32(at: Page.profile)) else { throw stale(directory, "unknown profile") }
        var c = MockLinkConfiguration()
        c.profile = profile
        c.memoryWindowCount = Int(page.load32(at: Page.numMWs))
        c.memoryWindowSize = Int(page.load64(at: Page.mwSize))
        c.scratchpadCount = Int(page.load32(at: Page.spadCount))
        c.doorbellSlots = Int(page.load32(at: Page.dbCount))
        c.msiVectors = Int(page.load32(at: Page.msiVectors))
        c.heartbeatMilliseconds = Int(page.load32(at: Page.heartbeat))
        c.msiDoorbell = page.load32(at: Page.flags) & UInt32(NTB_MOCK_FLAG_MSI_DOORBELL) != 0
        c.hostRAMSize = Int(page.load64(at: Page.hostRAMSize))
        c.endpointRAMSize = Int(page.load64(at: Page.endpointRAMSize))
        do { try c.validate() } catch { throw stale(directory, "its link page holds an invalid geometry (\(error))") }
        return c
    }

    // MARK: Open a side

    /// Takes `role` of the link at `directory`. Refuses if a live process holds it; takes over and starts
    /// clean if its holder died.
    public init(at directory: String, role: MockRole) throws(NTBError) {
        self.directory = directory
        self.role = role
        let c = try MockLink.configuration(at: directory)
        self.configuration = c
        let lock = try MockSys.openFile("\(directory)/\(MockLink.lockFile(role))", create: false)
        let pfd = try MockSys.openFile("\(directory)/\(MockLink.pageFile)", create: false)
        let pp: UnsafeMutableRawPointer
        do { unsafe pp = try unsafe MockSys.map(pfd, offset: 0, length: 4096, what: "\(directory)/\(MockLink.pageFile)") } catch {
            MockSys.closeFile(lock); MockSys.closeFile(pfd); throw error
        }
        let page = unsafe MMIORegion(base: pp, length: 4096)
        // A peer probing our lock holds it shared for an instant: retry briefly before refusing.
        var locked = false
        for _ in 0..<50 where !locked {
            locked = MockSys.tryLock(lock)
            if !locked { usleep(1000) }
        }
        guard locked else {
            let pid = page.load32(at: Page.side(role.index) + Page.sidePID)
            unsafe MockSys.unmap(pp, 4096); MockSys.closeFile(lock); MockSys.closeFile(pfd)
            throw .unsupported("mock:\(directory): the \(role) side is held by pid \(pid); stop that process or use another directory")
        }
        let peerLock: Int32
        do { peerLock = try MockSys.openFile("\(directory)/\(MockLink.lockFile(role.peer))", create: false) } catch {
            unsafe MockSys.unmap(pp, 4096); MockSys.closeFile(lock); MockSys.closeFile(pfd); throw error
        }
        self.pageFD = pfd
        self.page = page
        self.lockFD = lock
        self.peerLockFD = peerLock
        do { self.monitorNotifier = try EventNotifier() } catch {
            unsafe MockSys.unmap(pp, 4096); MockSys.closeFile(lock); MockSys.closeFile(pfd); MockSys.closeFile(peerLock)
            throw .pci(error)
        }
        unsafe mappings.append((pp, 4096))
        descriptors += [pfd]
        // Claim the side: not ready until the role has initialised its state (markReady).
        let side = Page.side(role.index)
        page.store32(0, at: side + Page.sideReady)
        page.store32(UInt32(bitPattern: MockSys.pid), at: side + Page.sidePID)
        page.store64(MockSys.startTime(of: MockSys.pid), at: side + Page.sideStart)
        let epoch = page.load64(at: side + Page.sideEpoch) &+ 1
        page.store64(epoch, at: side + Page.sideEpoch)
        page.store64(0, at: side + Page.sideHeartbeat)
        self.epoch = epoch
    }

    deinit {
        close()
        for unsafe (p, n) in unsafe mappings { unsafe MockSys.unmap(p, n) }
        for fd in descriptors { MockSys.closeFile(fd) }
        MockSys.closeFile(peerLockFD)
        MockSys.closeFile(lockFD)   // releases the side
    }

    /// Stops the monitor and marks the side gone. The lock is released when the link is freed.
    public func close() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        if let monitor {
            if pthread_equal(monitor, pthread_self()) != 0 { pthread_detach(monitor) } else { pthread_join(monitor, nil) }
        }
        monitor = nil
        page.store32(0, at: Page.side(role.index) + Page.sideReady)
    }

    /// Marks this side initialised and starts the monitor thread.
    func markReady() {
        page.store32(1, at: Page.side(role.index) + Page.sideReady)
        tick()   // know the peer before the first call
        let weakSelf = WeakLink(self)
        monitor = spawnThread { weakSelf.run() }
    }

    private final class WeakLink: @unchecked Sendable {
        weak var link: MockLink?
        let period: Duration
        init(_ link: MockLink) { self.link = link; self.period = .milliseconds(link.configuration.heartbeatMilliseconds) }
        func run() {
            while true {
                guard let link, !link.stopping.load(ordering: .acquiring) else { return }
                link.tick()
                usleep(UInt32(period.components.seconds * 1_000_000 + period.components.attoseconds / 1_000_000_000_000))
            }
        }
    }

    /// Registers `handler(peerPresent)`, called on the monitor thread when the peer comes or goes.
    func onPeerChange(_ handler: @escaping @Sendable (Bool) -> Void) { handlers.withLock { $0.append(handler) } }
    /// Registers work done on every monitor tick (e.g. re-linking).
    func onTick(_ handler: @escaping @Sendable () -> Void) { tickHandlers.withLock { $0.append(handler) } }

    /// One monitor beat: our heartbeat, then the peer's presence.
    func tick() {
        let side = Page.side(role.index)
        page.store64(page.load64(at: side + Page.sideHeartbeat) &+ 1, at: side + Page.sideHeartbeat)
        let present = checkPeer()
        let changed = peerState.withLock { s -> Bool in
            defer { s.present = present }
            return s.present != present
        }
        if changed {
            for h in handlers.withLock({ $0 }) { h(present) }
            monitorNotifier.signal()
        }
        for h in tickHandlers.withLock({ $0 }) { h() }
    }

    /// Whether the peer holds its side, has initialised it, and beats.
    private func checkPeer() -> Bool {
        let peer = Page.side(role.peer.index)
        guard MockSys.isLocked(peerLockFD), page.load32(at: peer + Page.sideReady) == 1 else {
            peerState.withLock { $0.staleTicks = 0 }
            return false
        }
        let beat = page.load64(at: peer + Page.sideHeartbeat)
        let epoch = page.load64(at: peer + Page.sideEpoch)
        return peerState.withLock { s -> Bool in
            if s.epoch != epoch {
                s.epoch = epoch; s.lastBeat = beat; s.staleTicks = 0
                // A new peer process: report it gone first so the survivor resets, then present.
                if s.present { s.present = false; return false }
                return true
            }
            if beat != s.lastBeat { s.lastBeat = beat; s.staleTicks = 0; return true }
            s.staleTicks += 1
            // Hung: no beat for 10 periods, and at least 500 ms so a loaded machine is not mistaken for a dead peer.
            return s.staleTicks < max(10, 500 / max(1, configuration.heartbeatMilliseconds))
        }
    }

    /// Whether the peer is present (as of the last monitor beat).
    public var isPeerPresent: Bool { peerState.withLock { $0.present } }

    /// Waits until the peer's monitor has beaten `beats` more times (so it has looked at this side
    /// since it became ready), or `timeout` passes (a hung peer: go on; the link stays down).
    public func waitForPeerBeats(_ beats: UInt64, timeout: Duration) {
        let peer = Page.side(role.peer.index) + Page.sideHeartbeat
        let start = page.load64(at: peer)
        let deadline = ContinuousClock.now + timeout
        let nap = UInt32(max(1, configuration.heartbeatMilliseconds) * 250)   // a quarter beat, in µs
        while page.load64(at: peer) &- start < beats && ContinuousClock.now < deadline { usleep(nap) }
    }

    /// The peer's pid as it published it (0 if none).
    public var peerPID: Int32 { Int32(bitPattern: page.load32(at: Page.side(role.peer.index) + Page.sidePID)) }

    // MARK: Mappings

    /// Maps a whole file of the directory.
    func mapFile(_ name: String, length: Int? = nil) throws(NTBError) -> (fd: Int32, region: MMIORegion) {
        let fd = try MockSys.openFile(path(name), create: false)
        descriptors.append(fd)
        let size = length ?? MockSys.fileSize(fd)
        let mapped = MockSys.roundUp(max(size, 1), MockSys.pageSize)
        let p = try unsafe MockSys.map(fd, offset: 0, length: mapped, what: path(name))
        unsafe mappings.append((p, mapped))
        return (fd, unsafe MMIORegion(base: p, length: size))
    }

    func openFD(_ name: String) throws(NTBError) -> Int32 {
        let fd = try MockSys.openFile(path(name), create: false)
        descriptors.append(fd)
        return fd
    }

    func reserve(_ length: Int) throws(NTBError) -> UnsafeMutableRawPointer {
        let n = MockSys.roundUp(length, MockSys.pageSize)
        let p = try unsafe MockSys.mapAnonymous(length: n)
        unsafe mappings.append((p, n))
        return unsafe p
    }
}

/// Byte offsets in the link page (`struct ntb_mock_link`, ntb_epf.h).
enum Page {
    static let magic = MemoryLayout<ntb_mock_link>.offset(of: \.magic)!
    static let layoutVersion = MemoryLayout<ntb_mock_link>.offset(of: \.layout_version)!
    static let profile = MemoryLayout<ntb_mock_link>.offset(of: \.profile)!
    static let numMWs = MemoryLayout<ntb_mock_link>.offset(of: \.num_mws)!
    static let spadCount = MemoryLayout<ntb_mock_link>.offset(of: \.spad_count)!
    static let dbCount = MemoryLayout<ntb_mock_link>.offset(of: \.db_count)!
    static let msiVectors = MemoryLayout<ntb_mock_link>.offset(of: \.msi_vectors)!
    static let heartbeat = MemoryLayout<ntb_mock_link>.offset(of: \.heartbeat_ms)!
    static let flags = MemoryLayout<ntb_mock_link>.offset(of: \.flags)!
    static let mwSize = MemoryLayout<ntb_mock_link>.offset(of: \.mw_size)!
    static let hostRAMBus = MemoryLayout<ntb_mock_link>.offset(of: \.host_ram_bus)!
    static let hostRAMSize = MemoryLayout<ntb_mock_link>.offset(of: \.host_ram_size)!
    static let endpointRAMBus = MemoryLayout<ntb_mock_link>.offset(of: \.ep_ram_bus)!
    static let endpointRAMSize = MemoryLayout<ntb_mock_link>.offset(of: \.ep_ram_size)!
    static let barSize = MemoryLayout<ntb_mock_link>.offset(of: \.bar_size)!
    static let sides = MemoryLayout<ntb_mock_link>.offset(of: \.side)!
    static let inboundSeq = MemoryLayout<ntb_mock_link>.offset(of: \.mw_inbound_seq)!
    static let inboundBus = MemoryLayout<ntb_mock_link>.offset(of: \.mw_inbound_bus)!
    static let fifoPending = MemoryLayout<ntb_mock_link>.offset(of: \.fifo_pending)!
    static func side(_ n: Int) -> Int { sides + n * MemoryLayout<ntb_mock_side>.stride }
    static let sidePID = MemoryLayout<ntb_mock_side>.offset(of: \.pid)!
    static let sideReady = MemoryLayout<ntb_mock_side>.offset(of: \.ready)!
    static let sideStart = MemoryLayout<ntb_mock_side>.offset(of: \.start_time)!
    static let sideEpoch = MemoryLayout<ntb_mock_side>.offset(of: \.epoch)!
    static let sideHeartbeat = MemoryLayout<ntb_mock_side>.offset(of: \.heartbeat)!
}
