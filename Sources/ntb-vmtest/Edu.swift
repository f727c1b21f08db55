import PCIKit

/// Register map and constants of QEMU's `edu` teaching device (1234:11e8).
///
/// Register map from QEMU `docs/specs/edu.rst` and `hw/misc/edu.c` (QEMU 7.2, the version the rig
/// runs): a 1 MiB BAR0 whose registers below 0x80 take 32-bit accesses and whose DMA registers from
/// 0x80 take 32- or 64-bit accesses; a 4096-byte buffer inside the device at device address 0x40000;
/// one DMA engine moving between that buffer and bus addresses; one interrupt (MSI when enabled,
/// else INTx) whose cause bits sit in the interrupt status register.
///
/// Quirks the rig works around:
/// - QEMU 7.2's range check (`edu_check_range`) rejects a transfer that ends exactly at the end of
///   the buffer, and rejection is `hw_error`, which aborts QEMU: transfers stay ≤ ``maxTransfer``.
/// - The device masks DMA addresses with its `dma_mask` property (default 28 bits); the rig starts
///   QEMU with `dma_mask=0xffffffffffffffff` so any IOVA is reachable, as on real hardware.
/// - A DMA starts 100 ms (virtual time) after the command write; completion clears bit 0 of the
///   command register and, if asked, raises interrupt cause 0x100.
enum EduMap {
    enum Register {
        static let identification = 0x00   // 0x010000ed: major 1, minor 0
        static let liveness = 0x04         // reads back the bitwise inverse of what was written
        static let interruptStatus = 0x24
        static let interruptRaise = 0x60
        static let interruptAcknowledge = 0x64
        static let dmaSource = 0x80
        static let dmaDestination = 0x88
        static let dmaCount = 0x90
        static let dmaCommand = 0x98
    }
    enum Command {
        static let start: UInt64 = 0x1
        static let toRAM: UInt64 = 0x2        // direction: 0 = RAM -> edu, 1 = edu -> RAM
        static let interrupt: UInt64 = 0x4    // raise cause 0x100 when done
    }
    static let identification: UInt32 = 0x0100_00ed
    /// Device address of the internal DMA buffer.
    static let bufferAddress: UInt64 = 0x40000
    /// Largest transfer the rig issues (see the range-check quirk above).
    static let maxTransfer = 2048
    /// Interrupt cause raised when a DMA with ``Command/interrupt`` completes.
    static let dmaCause: UInt32 = 0x100
}

/// QEMU's edu device driven through a ``RegisterSpace`` (its BAR0); see ``EduMap``.
struct Edu<Registers: RegisterSpace> {
    typealias Register = EduMap.Register
    typealias Command = EduMap.Command

    let registers: Registers

    /// Checks the identification register and the liveness register (which inverts what is written).
    func probe() throws(VMTestError) {
        let id = registers.load32(at: Register.identification)
        guard id == EduMap.identification else {
            throw .check("edu identification register reads \(hex(id)), expected \(hex(EduMap.identification)): BAR0 is not edu's register block")
        }
        let probe: UInt32 = 0x5a5a_1234
        registers.store32(probe, at: Register.liveness)
        let back = registers.load32(at: Register.liveness)
        guard back == ~probe else {
            throw .check("edu liveness register read \(hex(back)) after writing \(hex(probe)), expected \(hex(~probe))")
        }
    }

    /// Starts a DMA of `count` bytes. `toRAM` false: bus address `source` -> device buffer; true:
    /// device buffer -> bus address `destination`.
    func startDMA(source: UInt64, destination: UInt64, count: Int, toRAM: Bool, interrupt: Bool) {
        precondition(count > 0 && count <= EduMap.maxTransfer, "edu transfers are 1...\(EduMap.maxTransfer) bytes")
        registers.store64(source, at: Register.dmaSource)
        registers.store64(destination, at: Register.dmaDestination)
        registers.store64(UInt64(count), at: Register.dmaCount)
        var command = Command.start
        if toRAM { command |= Command.toRAM }
        if interrupt { command |= Command.interrupt }
        registers.store64(command, at: Register.dmaCommand)
    }

    /// Waits until the engine clears its run bit (polling; the interrupt is checked separately).
    func waitDMA(timeoutMilliseconds: Int) throws(VMTestError) {
        var waited = 0
        while registers.load64(at: Register.dmaCommand) & Command.start != 0 {
            guard waited < timeoutMilliseconds else {
                throw .check("edu DMA still running after \(timeoutMilliseconds) ms (command register \(hex(registers.load64(at: Register.dmaCommand))))")
            }
            sleepMilliseconds(1)
            waited += 1
        }
    }

    var interruptStatus: UInt32 { registers.load32(at: Register.interruptStatus) }

    func raiseInterrupt(_ cause: UInt32) { registers.store32(cause, at: Register.interruptRaise) }

    func acknowledgeInterrupt(_ cause: UInt32) { registers.store32(cause, at: Register.interruptAcknowledge) }
}

func hex<T: FixedWidthInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
