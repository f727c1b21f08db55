import DWEDMA
import NTBTools
import Testing

/// The ntb_tool command language parsed on its own, without a device.
@Suite struct ToolLanguageTests {
    static let valid: [(String, ToolOperation?)] = [
        ("", nil),
        ("   \t ", nil),
        ("# a comment", nil),
        ("  #link up", nil),
        ("help", .help),
        ("link up", .linkUp),
        ("link\tdown", .linkDown),
        ("link status", .linkStatus),
        ("link wait up", .linkWait(up: true, milliseconds: 5000)),
        ("link wait down 250", .linkWait(up: false, milliseconds: 250)),
        ("spad count", .spadCount),
        ("spad read 3", .spadRead(index: 3, peer: false)),
        ("peer-spad read 0x1f", .spadRead(index: 31, peer: true)),
        ("spad write 2 0xffffffff", .spadWrite(index: 2, value: 0xFFFF_FFFF, peer: false)),
        ("peer-spad write 0 42", .spadWrite(index: 0, value: 42, peer: true)),
        ("db valid", .doorbellValid),
        ("db read", .doorbellRead),
        ("db clear 0x3", .doorbellClear(3)),
        ("db mask 1", .doorbellMask(1)),
        ("db unmask 0X2", .doorbellUnmask(2)),
        ("db ring 0x1", .doorbellRing(1)),
        ("db wait", .doorbellWait(milliseconds: 5000)),
        ("db wait 0", .doorbellWait(milliseconds: 0)),
        ("mw info", .windowInfo),
        ("mw trans 0 0x100000", .windowTranslate(window: 0, size: 0x100000)),
        ("mw clear 1", .windowClear(window: 1)),
        ("mw read 0 16 4096", .windowRead(window: 0, offset: 16, length: 4096, peer: false)),
        ("peer-mw read 1 0 8", .windowRead(window: 1, offset: 0, length: 8, peer: true)),
        ("mw write 0 0 00ff7A", .windowWrite(window: 0, offset: 0, bytes: [0, 0xFF, 0x7A], peer: false)),
        ("peer-mw write 0 0x10 de", .windowWrite(window: 0, offset: 16, bytes: [0xDE], peer: true)),
        ("edma publish", .edmaPublish),
        ("edma retract", .edmaRetract),
        ("edma probe", .edmaProbe),
        ("edma inject-abort write 1 3", .edmaInjectAbort(direction: .write, channel: 1, element: 3)),
        ("edma dma 0x1000 0x2000 64", .edmaDMA(source: 0x1000, destination: 0x2000, length: 64, count: 1)),
        ("edma dma 0x1000 0x2000 64 8", .edmaDMA(source: 0x1000, destination: 0x2000, length: 64, count: 8)),
        ("events", .events),
        ("sleep 10", .sleep(milliseconds: 10)),
    ]

    @Test(arguments: valid)
    func aValidLineParsesToItsOperation(line: String, operation: ToolOperation?) throws {
        #expect(try ToolOperation.parse(line) == operation)
    }

    static let invalid: [(String, String)] = [
        ("bogus", "unknown tool command `bogus`; try `help`"),
        ("link sideways", "unknown tool command `link sideways`; try `help`"),
        ("link wait", "`link wait` needs up or down; try `help`"),
        ("link wait left", "link wait: expected up or down"),
        ("spad read", "`spad read` needs scratchpad; try `help`"),
        ("spad read x", "scratchpad `x` is not a number (decimal or 0x hex)"),
        ("spad write 0 0x100000000", "scratchpads hold 32 bits; 0x100000000 is too big"),
        ("db ring 0xg", "bits `0xg` is not a number (decimal or 0x hex)"),
        ("mw read 0 0 4097", "mw read: at most 4096 bytes per read, not 4097"),
        ("mw write 0 0 abc", "hex data must be pairs of hex digits"),
        ("mw write 0 0 zz", "hex data must be pairs of hex digits"),
        ("edma inject-abort sideways 0 1", "edma inject-abort: expected read or write, not `sideways`"),
        ("edma dma 0 0 0", "edma dma: the length must be 1...4294967295"),
        ("edma dma 0 0 1 65", "edma dma: the count must be 1...64 (one LL page)"),
        // Inputs that trapped before the parser checked them.
        ("link wait up 18446744073709551615", "milliseconds 18446744073709551615 is out of range (0...3600000)"),
        ("db wait 9223372036854775808", "milliseconds 9223372036854775808 is out of range (0...3600000)"),
        ("edma inject-abort read 0 18446744073709551615", "element 18446744073709551615 is out of range (0...65535)"),
        ("edma dma 0xffffffffffffff00 0 0x100 2", "edma dma: 2 × 256 bytes from 0xffffffffffffff00 run past the end of the bus address space"),
        ("sleep 99999999999999999999", "milliseconds `99999999999999999999` is not a number (decimal or 0x hex)"),
    ]

    @Test(arguments: invalid)
    func aBadLineFailsWithAMessageThatSaysWhy(line: String, message: String) {
        #expect(throws: ToolFailure(message)) { try ToolOperation.parse(line) }
    }

    @Test func theHelpNamesEveryVerb() {
        for verb in ["link up", "link wait", "spad", "peer-spad", "db ring", "db wait", "mw trans", "mw read", "peer-mw", "edma publish",
                     "edma probe", "edma dma", "edma inject-abort", "events", "sleep"] {
            #expect(ToolOperation.helpText.contains(verb), "\(verb)")
        }
        #expect(!ToolOperation.helpText.contains("mask-show"))   // no device reads its doorbell mask back
    }
}
