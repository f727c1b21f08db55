#if canImport(Glibc)
import Glibc
#endif
import PCIKit
import DWEDMA
import CNTBShim
import Synchronization

/// The model's register file: how posted writes are applied and how channel state is mirrored into it.
extension EDMAEngineModel {
    // MARK: Register file

    // The register file is read by the driver's threads (PostedWriteRegisterSpace.load*) while the model
    // writes it: every register is an atomic 32-bit word, stored releasing and loaded acquiring (a driver
    // that reads a status also sees every register the model wrote before it, as with a read completion).
    func reg32(_ offset: Int) -> UInt32 {
        precondition(offset >= 0 && offset <= EDMAModelFiles.registerFileSize - 4 && offset & 3 == 0)
        return unsafe (mapping.regs + offset).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.load(ordering: .acquiring)
    }
    func reg32(_ offset: Int, _ value: UInt32) {
        precondition(offset >= 0 && offset <= EDMAModelFiles.registerFileSize - 4 && offset & 3 == 0)
        unsafe (mapping.regs + offset).assumingMemoryBound(to: Atomic<UInt32>.self).pointee.store(value, ordering: .releasing)
    }
    func count(_ d: EDMADirection) -> Int { d == .write ? configuration.writeChannels : configuration.readChannels }

    /// Publishes a channel's state into the register file (its unrolled block, or the legacy window
    /// when it is the selected channel).
    func mirror(_ d: EDMADirection, _ c: Int) {
        let base: Int
        if configuration.format == .unroll {
            base = EDMARegisters.unrollChannelBase(d, channel: c)
        } else {
            let sel = ViewportSelect(rawValue: reg32(EDMARegisters.viewportSelect))
            guard sel.direction == d && sel.channel == c else { return }
            base = EDMARegisters.legacyChannelWindow
        }
        let ch = channels[d.rawValue][c]
        typealias R = EDMARegisters.Channel
        reg32(base + R.control1, (ch.control1 & ~ChannelControl.csMask) | (ch.status << ChannelControl.csShift))
        reg32(base + R.transferSize, ch.size)
        reg32(base + R.sarLow, UInt32(truncatingIfNeeded: ch.sar)); reg32(base + R.sarHigh, UInt32(truncatingIfNeeded: ch.sar >> 32))
        reg32(base + R.darLow, UInt32(truncatingIfNeeded: ch.dar)); reg32(base + R.darHigh, UInt32(truncatingIfNeeded: ch.dar >> 32))
        reg32(base + R.llpLow, UInt32(truncatingIfNeeded: ch.llp)); reg32(base + R.llpHigh, UInt32(truncatingIfNeeded: ch.llp >> 32))
    }

    /// Applies one posted write: splits 64-bit writes, merges narrow ones into their 32-bit register.
    func apply(offset: Int, width: Int, value: UInt64) {
        guard offset >= 0 && offset + width <= EDMAModelFiles.registerFileSize else { return }
        switch width {
        case 8:
            apply32(offset, UInt32(truncatingIfNeeded: value))
            apply32(offset + 4, UInt32(truncatingIfNeeded: value >> 32))
        case 4:
            apply32(offset, UInt32(truncatingIfNeeded: value))
        default:
            let aligned = offset & ~3, shift = UInt32((offset & 3) * 8)
            let m: UInt32 = (width == 1 ? 0xFF : 0xFFFF) << shift
            apply32(aligned, (reg32(aligned) & ~m) | ((UInt32(truncatingIfNeeded: value) << shift) & m))
        }
    }

    func apply32(_ offset: Int, _ v: UInt32) {
        // Channel registers.
        if let (d, c, r) = channelRegister(offset) { writeChannel(d, c, r, v); return }
        for d in EDMADirection.allCases {
            switch offset {
            case EDMARegisters.engineEnable(d):
                reg32(offset, v)
                if v & 1 == 0 {
                    for c in 0..<count(d) where channels[d.rawValue][c].running {
                        channels[d.rawValue][c].running = false
                        channels[d.rawValue][c].generation &+= 1
                        mirror(d, c)
                    }
                }
                return
            case EDMARegisters.doorbell(d):
                reg32(offset, v)
                let value = DoorbellValue(rawValue: v)
                if value.isStop { stopRequest(d, value.channel) } else { doorbell(d, value.channel) }
                return
            case EDMARegisters.intClear(d):
                reg32(offset, v)
                let s = reg32(EDMARegisters.intStatus(d))
                reg32(EDMARegisters.intStatus(d), s & ~v)
                return
            case EDMARegisters.intStatus(d):
                // Interrupt emulation (§1.7): assert the eDMA IRQ, DONE/ABORT untouched.
                shared.withLock { $0.counters.emulatedInterrupts &+= 1 }
                configuration.localInterrupt?.signal()
                return
            default:
                break
            }
        }
        if offset == EDMARegisters.ctrl { return }   // read-only
        reg32(offset, v)
        if offset == EDMARegisters.viewportSelect && configuration.format == .legacy {
            let sel = ViewportSelect(rawValue: v)
            if sel.channel < count(sel.direction) { mirror(sel.direction, sel.channel) }
        }
    }

    /// Maps an offset to (direction, channel, register) when it addresses a channel block.
    func channelRegister(_ offset: Int) -> (EDMADirection, Int, Int)? {
        if configuration.format == .legacy {
            let r = offset - EDMARegisters.legacyChannelWindow
            guard r >= 0 && r < EDMARegisters.channelBlockSize else { return nil }
            let sel = ViewportSelect(rawValue: reg32(EDMARegisters.viewportSelect))
            guard sel.channel < count(sel.direction) else { return nil }
            return (sel.direction, sel.channel, r)
        }
        let rel = offset - 0x200
        guard rel >= 0 && rel < 8 * 0x200 else { return nil }
        let c = rel / 0x200, within = rel % 0x200
        if within < EDMARegisters.channelBlockSize, c < count(.write) { return (.write, c, within) }
        if within >= 0x100 && within - 0x100 < EDMARegisters.channelBlockSize, c < count(.read) { return (.read, c, within - 0x100) }
        return nil
    }

    func writeChannel(_ d: EDMADirection, _ c: Int, _ r: Int, _ v: UInt32) {
        typealias R = EDMARegisters.Channel
        var ch = channels[d.rawValue][c]
        switch r {
        case R.control1:
            ch.control1 = v
            ch.ccs = v & ChannelControl.ccs != 0
            ch.lle = v & ChannelControl.lle != 0
        case R.transferSize: ch.size = v
        case R.sarLow: ch.sar = (ch.sar & 0xFFFF_FFFF_0000_0000) | UInt64(v)
        case R.sarHigh: ch.sar = (ch.sar & 0xFFFF_FFFF) | UInt64(v) << 32
        case R.darLow: ch.dar = (ch.dar & 0xFFFF_FFFF_0000_0000) | UInt64(v)
        case R.darHigh: ch.dar = (ch.dar & 0xFFFF_FFFF) | UInt64(v) << 32
        case R.llpLow: ch.llp = (ch.llp & 0xFFFF_FFFF_0000_0000) | UInt64(v)
        case R.llpHigh: ch.llp = (ch.llp & 0xFFFF_FFFF) | UInt64(v) << 32
        default: break
        }
        channels[d.rawValue][c] = ch
        mirror(d, c)
    }

    /// Doorbell with the STOP bit (databook; inferred for silicon): a running channel halts at once,
    /// CS = halted, no DONE/ABORT; a copy in progress is dropped (its generation is stale).
    func stopRequest(_ d: EDMADirection, _ c: Int) {
        guard c < count(d), channels[d.rawValue][c].running else { return }
        channels[d.rawValue][c].running = false
        channels[d.rawValue][c].generation &+= 1
        channels[d.rawValue][c].status = ChannelStatus.halted.rawValue
        channels[d.rawValue][c].pendingLIE = false
        channels[d.rawValue][c].pendingRIE = false
        mirror(d, c)
    }

    func doorbell(_ d: EDMADirection, _ c: Int) {
        let enabled = reg32(EDMARegisters.engineEnable(d)) & 1 != 0
        guard enabled, c < count(d), !channels[d.rawValue][c].running else {
            shared.withLock { $0.counters.doorbellsIgnored &+= 1 }
            return
        }
        shared.withLock { $0.counters.doorbells &+= 1 }
        channels[d.rawValue][c].running = true
        channels[d.rawValue][c].status = ChannelStatus.running.rawValue
        channels[d.rawValue][c].ordinal = 0
        channels[d.rawValue][c].linkHops = 0
        channels[d.rawValue][c].pendingLIE = false
        channels[d.rawValue][c].pendingRIE = false
        channels[d.rawValue][c].generation &+= 1
        mirror(d, c)
        kickMover(d)
    }
}
