import PCIKit

/// Two guests, one ivshmem-plain window: the ground scenario 4 (the transport between two guests)
/// will stand on. Each guest maps BAR2 of its ivshmem device through VFIO (PCIKit) and the two
/// exchange a pattern through it, the way two hosts share an NTB memory window.
///
/// Layout of the LAST 12 KiB of the window (this scenario's own; relative offsets below):
/// 0x0 guest a's flag, 0x4 guest b's flag, 0x1000 a's 2048-byte pattern, 0x2000 b's pattern.
/// The rig zeroes the backing file before the guests boot. The end, not the start: the transport
/// scenarios that follow put the ivshmem NTB header at offset 0 (which must be zeroed or valid) and
/// reinitialise the window headers they use, so leftovers at the end are harmless.
enum IvshmemShare {
    static let flagA = 0x0
    static let flagB = 0x4
    static let dataA = 0x1000
    static let dataB = 0x2000
    static let readyA: UInt32 = 0x4e54_4241   // "NTBA"
    static let readyB: UInt32 = 0x4e54_4242   // "NTBB"
    static let seedA: UInt8 = 0x31
    static let seedB: UInt8 = 0x42
    static let count = 2048
    /// The other guest boots at the same time but reaches this step at its own pace.
    static let waitMilliseconds = 100_000   // under the guest script's 120 s step limit
}

func runIvshmemShare(_ address: PCIAddress, role: String) throws(VMTestError) {
    guard role == "a" || role == "b" else { throw .check("--role must be a or b, not \(role)") }
    let device = try attempt("opening \(address) through VFIO") { () throws(PCIKitError) in try VFIODevice.open(address) }
    let bar2 = try attempt("mapping BAR2") { () throws(PCIKitError) in try device.mapBAR(2) }
    report("guest \(role): ivshmem BAR2 mapped, \(bar2.length) bytes")
    let area = IvshmemShare.dataB + 0x1000
    guard bar2.length >= area else {
        throw .check("the ivshmem window has \(bar2.length) bytes, the scenario needs \(area)")
    }
    let window = bar2.mmio.subregion(offset: bar2.length - area, length: area)
    let (mine, theirs) = role == "a" ? (IvshmemShare.flagA, IvshmemShare.flagB) : (IvshmemShare.flagB, IvshmemShare.flagA)
    let (myReady, theirReady) = role == "a" ? (IvshmemShare.readyA, IvshmemShare.readyB) : (IvshmemShare.readyB, IvshmemShare.readyA)
    let (myData, theirData) = role == "a" ? (IvshmemShare.dataA, IvshmemShare.dataB) : (IvshmemShare.dataB, IvshmemShare.dataA)
    let (mySeed, theirSeed) = role == "a" ? (IvshmemShare.seedA, IvshmemShare.seedB) : (IvshmemShare.seedB, IvshmemShare.seedA)

    func publish() {
        for i in 0..<IvshmemShare.count { window.store8(patternByte(i, seed: mySeed), at: myData + i) }
        Barrier.write()   // the data before the flag, as a producer on an NTB window does
        window.store32(myReady, at: mine)
        report("guest \(role): pattern written, flag \(hex(myReady)) raised")
    }
    func awaitPeer() throws(VMTestError) {
        var waited = 0
        while window.load32(at: theirs) != theirReady {
            guard waited < IvshmemShare.waitMilliseconds else {
                throw .check("guest \(role): the other guest's flag never appeared in the shared window (reads \(hex(window.load32(at: theirs))) after \(waited / 1000) s)")
            }
            sleepMilliseconds(10)
            waited += 10
        }
        Barrier.read()
        var differing = 0
        for i in 0..<IvshmemShare.count where window.load8(at: theirData + i) != patternByte(i, seed: theirSeed) { differing += 1 }
        guard differing == 0 else { throw .check("guest \(role): \(differing) of \(IvshmemShare.count) bytes from the other guest differ") }
        report("guest \(role): the other guest's \(IvshmemShare.count) bytes arrived intact")
    }
    // a speaks first and b answers, so each side's success proves the other side's write.
    if role == "a" { publish(); try awaitPeer() } else { try awaitPeer(); publish() }
}
