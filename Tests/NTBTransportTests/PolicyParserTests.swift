import Testing
@testable import NTBTransport

/// Good policies: each case gives the text and the backend (and, where it matters, options) each
/// port ends up with.
struct GoodPolicyCase: CustomTestStringConvertible, Sendable {
    let name: String
    let text: String
    /// port → expected backend
    let backends: [String: PolicyBackend]
    let defaultBackend: PolicyBackend?
    var testDescription: String { name }
}

/// Bad policies: each case gives the text and every diagnostic it must produce, exactly.
struct BadPolicyCase: CustomTestStringConvertible, Sendable {
    let name: String
    let text: String
    let messages: [String]
    var testDescription: String { name }
}

private func port(_ text: String) -> PolicyPort {
    guard case let .success(p) = PolicyPort.parse(text) else { preconditionFailure("bad test port \(text)") }
    return p
}

@Suite struct PolicyParserTests {
    static let good: [GoodPolicyCase] = [
        GoodPolicyCase(name: "empty file", text: "", backends: [:], defaultBackend: nil),
        GoodPolicyCase(name: "comments and blank lines only", text: "# policy\n\n   # indented comment\n\t\n",
                       backends: [:], defaultBackend: nil),
        GoodPolicyCase(name: "kernel-parameter syntax from the review",
                       text: "edma@0000:01:00.0,host@0000:5f:00.0",
                       backends: ["0000:01:00.0": .edma, "0000:5f:00.0": .host], defaultBackend: nil),
        GoodPolicyCase(name: "one entry per line, comments, default",
                       text: """
                       # ports of the lab machine
                       default=auto
                       edma@0000:01:00.0   # R-Car S4 endpoint
                       host@5f:00.0
                       kernel@0000:02:00.0 # keep ntb_netdev here
                       """,
                       backends: ["0000:01:00.0": .edma, "0000:5f:00.0": .host, "0000:02:00.0": .kernel],
                       defaultBackend: .auto),
        GoodPolicyCase(name: "spaces around '=' and ',' and CRLF line ends",
                       text: "default = host\r\nauto@01:00.0 , edma@mock:/tmp/ntb-a\r\n",
                       backends: ["0000:01:00.0": .auto, "mock:/tmp/ntb-a": .edma], defaultBackend: .host),
        GoodPolicyCase(name: "mock ports and upper-case hex",
                       text: "host@mock:/run/ntb-mock0\nedma@mock:relative/dir\nhost@0000:AF:1F.7",
                       backends: ["mock:/run/ntb-mock0": .host, "mock:relative/dir": .edma, "0000:af:1f.7": .host],
                       defaultBackend: nil),
        GoodPolicyCase(name: "order list followed by another entry (comma disambiguation)",
                       text: "auto@01:00.0 order=edma,host,host@02:00.0,default=kernel",
                       backends: ["0000:01:00.0": .auto, "0000:02:00.0": .host], defaultBackend: .kernel),
        GoodPolicyCase(name: "options on edma and auto entries and on the default",
                       text: """
                       default=auto window=1 page=16K
                       edma@0000:01:00.0 window=last page=4096 regs=0x10000 channels=2 stall=250ms
                       """,
                       backends: ["0000:01:00.0": .edma], defaultBackend: .auto),
    ]

    @Test(arguments: good)
    func goodPolicyParses(_ c: GoodPolicyCase) throws {
        let result = Policy.parse(c.text, file: "policy.conf")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics)")
        let policy = try #require(result.policy)
        #expect(policy.entries.count == c.backends.count)
        for (text, backend) in c.backends {
            #expect(policy.entries.first { $0.port == port(text) }?.backend == backend, "\(text)")
        }
        #expect(policy.defaultEntry?.backend == c.defaultBackend)
    }

    @Test func optionsAreParsedIntoTheLocator() throws {
        let policy = try #require(Policy.parse("""
            default=auto window=1 page=16K
            edma@0000:01:00.0 window=last page=4096 regs=0x10000 channels=2 stall=250ms
            auto@02:00.0 order=host regs=64K
            """, file: "p").policy)
        let e = try #require(policy.entries.first)
        #expect(e.locator.window == .last)
        #expect(e.locator.pageSize == 4096)
        #expect(e.locator.registerWindowSize == 0x10000)
        #expect(e.locator.dataChannels == 2)
        #expect(e.locator.publishedChannelCount == 3)
        #expect(e.locator.stallTimeout == .milliseconds(250))
        #expect(policy.entries[1].order == [.host])
        #expect(policy.entries[1].locator.registerWindowSize == 65536)
        let d = try #require(policy.defaultEntry)
        #expect(d.locator.window == .index(1))
        #expect(d.locator.pageSize == 16384)
        #expect(d.locator.registerWindowSize == nil)
        #expect(d.locator.dataChannels == 4)
        #expect(d.order == [.edma, .host])
        #expect(d.location == SourceLocation(file: "p", line: 1, column: 1))
        #expect(e.location == SourceLocation(file: "p", line: 2, column: 1))
        #expect(e.text == "edma@0000:01:00.0 window=last page=4096 regs=0x10000 channels=2 stall=250ms")
    }

    @Test func shortAndFullPCIFormsAreTheSamePort() {
        let result = Policy.parse("host@01:00.0\nedma@0000:01:00.0", file: "policy.conf")
        #expect(result.policy == nil)
        #expect(result.diagnostics.map(\.description) == [
            "policy.conf:2:1: error: port 0000:01:00.0 already has an entry at policy.conf:1:1; give each port one entry",
        ])
    }

    static let bad: [BadPolicyCase] = [
        BadPolicyCase(name: "unknown backend (the brief's example)",
                      text: "# lab\nhost@0000:5f:00.0\nhost@02:00.0, edmaa@0000:01:00.0",
                      messages: ["policy.conf:3:15: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel"]),
        BadPolicyCase(name: "unknown backend at column 7 after an entry",
                      text: "\n\nh@1:0,edmaa@0000:01:00.0",
                      messages: ["policy.conf:3:1: error: unknown backend 'h'; expected one of host, edma, auto, kernel",
                                 "policy.conf:3:3: error: invalid port '1:0'; expected a PCI address like 0000:01:00.0 or 01:00.0, or mock:DIR",
                                 "policy.conf:3:7: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel"]),
        BadPolicyCase(name: "every error of a kernel-parameter line is reported",
                      text: "edmaa@0000:01:00.0,hots@0000:5f:00.0",
                      messages: ["policy.conf:1:1: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel",
                                 "policy.conf:1:20: error: unknown backend 'hots'; expected one of host, edma, auto, kernel"]),
        BadPolicyCase(name: "PCI function out of range",
                      text: "host@0000:01:00.8",
                      messages: ["policy.conf:1:17: error: PCI function 8 is out of range (0-7) in '0000:01:00.8'"]),
        BadPolicyCase(name: "PCI device out of range",
                      text: "host@01:20.0",
                      messages: ["policy.conf:1:9: error: PCI device 20 is out of range (0-1f) in '01:20.0'"]),
        BadPolicyCase(name: "PCI bus not hex",
                      text: "host@0000:0g:00.0",
                      messages: ["policy.conf:1:11: error: invalid PCI bus '0g' in '0000:0g:00.0'; expected 1-2 hex digits, e.g. 0000:01:00.0"]),
        BadPolicyCase(name: "long domain",
                      text: "host@000000000:01:00.0",
                      messages: ["policy.conf:1:6: error: invalid PCI domain '000000000' in '000000000:01:00.0'; expected 1-8 hex digits, e.g. 0000:01:00.0"]),
        BadPolicyCase(name: "empty device",
                      text: "host@01:.0",
                      messages: ["policy.conf:1:9: error: invalid PCI device '' in '01:.0'; expected 1-2 hex digits, e.g. 0000:01:00.0"]),
        BadPolicyCase(name: "empty mock directory",
                      text: "host@mock:",
                      messages: ["policy.conf:1:11: error: a mock port needs a directory, e.g. mock:/run/ntb-mock0"]),
        BadPolicyCase(name: "missing port",
                      text: "edma@ window=1",
                      messages: ["policy.conf:1:6: error: expected a port after '@', e.g. 0000:01:00.0, 01:00.0 or mock:/run/ntb-mock0"]),
        BadPolicyCase(name: "backend without port",
                      text: "edma 0000:01:00.0",
                      messages: ["policy.conf:1:6: error: expected '@' and a port after 'edma', as in edma@0000:01:00.0"]),
        BadPolicyCase(name: "space before @",
                      text: "edma @0000:01:00.0",
                      messages: ["policy.conf:1:5: error: no space allowed before '@'; write edma@PORT"]),
        BadPolicyCase(name: "misspelt default",
                      text: "defualt=auto",
                      messages: ["policy.conf:1:1: error: unknown setting 'defualt'; the only setting is default=BACKEND (entries are BACKEND@PORT)"]),
        BadPolicyCase(name: "default without =",
                      text: "default auto",
                      messages: ["policy.conf:1:9: error: expected '=' after 'default', as in default=auto"]),
        BadPolicyCase(name: "default with an unknown backend",
                      text: "default=memcpy",
                      messages: ["policy.conf:1:9: error: unknown backend 'memcpy'; expected one of host, edma, auto, kernel"]),
        BadPolicyCase(name: "two defaults",
                      text: "default=host\ndefault=auto",
                      messages: ["policy.conf:2:1: error: a default entry was already given at policy.conf:1:1; give one default entry"]),
        BadPolicyCase(name: "duplicate port across lines",
                      text: "edma@0000:01:00.0\n  host@0000:01:00.0",
                      messages: ["policy.conf:2:3: error: port 0000:01:00.0 already has an entry at policy.conf:1:1; give each port one entry"]),
        BadPolicyCase(name: "trailing comma",
                      text: "host@01:00.0,",
                      messages: ["policy.conf:1:14: error: expected an entry after ','"]),
        BadPolicyCase(name: "stray character",
                      text: "host@01:00.0 ;",
                      messages: ["policy.conf:1:14: error: unexpected ';'; expected an option NAME=VALUE, ',' or the end of the line"]),
        BadPolicyCase(name: "two entries without a comma",
                      text: "host@01:00.0 edma@02:00.0",
                      messages: ["policy.conf:1:14: error: expected an option NAME=VALUE, found 'edma'; separate entries with ','"]),
        BadPolicyCase(name: "unknown option",
                      text: "edma@01:00.0 bar=2",
                      messages: ["policy.conf:1:14: error: unknown option 'bar'; expected one of window, page, regs, channels, stall, order"]),
        BadPolicyCase(name: "eDMA option on host",
                      text: "host@01:00.0 window=2",
                      messages: ["policy.conf:1:14: error: option 'window' does not apply to backend 'host'; only edma and auto take eDMA options"]),
        BadPolicyCase(name: "eDMA option on kernel",
                      text: "kernel@01:00.0 channels=2",
                      messages: ["policy.conf:1:16: error: option 'channels' does not apply to backend 'kernel'; only edma and auto take eDMA options"]),
        BadPolicyCase(name: "order on edma",
                      text: "edma@01:00.0 order=edma,host",
                      messages: ["policy.conf:1:14: error: option 'order' applies only to auto; write auto@PORT order=edma,host"]),
        BadPolicyCase(name: "option twice",
                      text: "edma@01:00.0 window=1 window=2",
                      messages: ["policy.conf:1:23: error: option 'window' is given twice"]),
        BadPolicyCase(name: "bad window",
                      text: "edma@01:00.0 window=first",
                      messages: ["policy.conf:1:21: error: invalid window 'first'; expected a memory-window index 0-63 or 'last'"]),
        BadPolicyCase(name: "register window not a power of two",
                      text: "edma@01:00.0 regs=0x3000",
                      messages: ["policy.conf:1:19: error: regs 0x3000 is not a power of two"]),
        BadPolicyCase(name: "register window too big",
                      text: "edma@01:00.0 regs=1G",
                      messages: ["policy.conf:1:19: error: regs 1G is out of range; expected 256 to 64M"]),
        BadPolicyCase(name: "page not a size",
                      text: "auto@01:00.0 page=big",
                      messages: ["policy.conf:1:19: error: invalid page 'big'; expected a size such as 4096, 0x1000, 4K or 1M"]),
        BadPolicyCase(name: "page below 4K",
                      text: "auto@01:00.0 page=1K",
                      messages: ["policy.conf:1:19: error: page 1K is out of range; expected 4K to 1M"]),
        BadPolicyCase(name: "too many channels",
                      text: "edma@01:00.0 channels=8",
                      messages: ["policy.conf:1:23: error: invalid channels '8'; expected 1-4 data channels (ntb_edma_info has LL slots for 4 data channels and the notify channel)"]),
        BadPolicyCase(name: "bad stall",
                      text: "edma@01:00.0 stall=5",
                      messages: ["policy.conf:1:20: error: invalid stall '5'; expected a duration such as 500ms, 2s or 250us"]),
        BadPolicyCase(name: "stall out of range",
                      text: "edma@01:00.0 stall=120s",
                      messages: ["policy.conf:1:20: error: stall 120s is out of range; expected 1ms to 60s"]),
        BadPolicyCase(name: "empty option value",
                      text: "edma@01:00.0 page=",
                      messages: ["policy.conf:1:19: error: option 'page' needs a value"]),
        BadPolicyCase(name: "unknown backend in order",
                      text: "auto@01:00.0 order=edma,kernel",
                      messages: ["policy.conf:1:25: error: unknown backend 'kernel' in order; expected host or edma"]),
        BadPolicyCase(name: "duplicate backend in order",
                      text: "auto@01:00.0 order=edma,edma",
                      messages: ["policy.conf:1:25: error: 'edma' appears twice in order"]),
        BadPolicyCase(name: "several errors on several lines",
                      text: "default=auto\nedma@01:00.0 channels=0\nauto@02:00.0 order=host,edma\nhost@03:00.9",
                      messages: ["policy.conf:2:23: error: invalid channels '0'; expected 1-4 data channels (ntb_edma_info has LL slots for 4 data channels and the notify channel)",
                                 "policy.conf:3:25: warning: 'edma' after 'host' (column 20) is never tried: host needs nothing from the peer and always succeeds",
                                 "policy.conf:4:12: error: PCI function 9 is out of range (0-7) in '03:00.9'"]),
    ]

    @Test(arguments: bad)
    func badPolicyIsRefusedWithItsMessages(_ c: BadPolicyCase) {
        let result = Policy.parse(c.text, file: "policy.conf")
        #expect(result.policy == nil)
        #expect(result.diagnostics.map(\.description) == c.messages)
    }

    @Test func unreachableFallbackIsAWarningNotAnError() throws {
        let result = Policy.parse("auto@01:00.0 order=host,edma", file: "policy.conf")
        #expect(result.errors.isEmpty)
        #expect(result.warnings.map(\.description) == [
            "policy.conf:1:25: warning: 'edma' after 'host' (column 20) is never tried: host needs nothing from the peer and always succeeds",
        ])
        let policy = try #require(result.policy)
        #expect(policy.entries.first?.order == [.host, .edma])
    }

    @Test func renderedDiagnosticPointsAtTheColumn() {
        let line = "host@0000:5f:00.0,edmaa@0000:01:00.0"
        let d = PolicyDiagnostic(.error, at: SourceLocation(file: "policy.conf", line: 3, column: 19),
                                 "unknown backend 'edmaa'; expected one of host, edma, auto, kernel")
        #expect(d.rendered(sourceLine: line) == """
            policy.conf:3:19: error: unknown backend 'edmaa'; expected one of host, edma, auto, kernel
            host@0000:5f:00.0,edmaa@0000:01:00.0
                              ^
            """)
    }

    @Test(arguments: [
        ("0000:01:00.0", "0000:01:00.0"), ("01:00.0", "0000:01:00.0"), ("ABCD:ff:1f.7", "abcd:ff:1f.7"),
        ("mock:/tmp/x", "mock:/tmp/x"), ("1:2.3", "0000:01:02.3"), ("10000:00:02.0", "10000:00:02.0"),
    ])
    func portsPrintInFullForm(_ text: String, _ printed: String) {
        #expect(port(text).description == printed)
    }

    @Test(arguments: ["", "01:00", "001:00.0", "0000:01:00.0.0", "0:0:0:0.0", "mock", "01.00:0", "01:00.a", "01:00.-1", "01:+1.0"])
    func malformedPortsAreRefused(_ text: String) {
        guard case .failure = PolicyPort.parse(text) else {
            Issue.record("\(text) parsed")
            return
        }
    }

    @Test func sizesAndDurations() {
        #expect(parsePolicySize("4096") == 4096)
        #expect(parsePolicySize("0x1000") == 4096)
        #expect(parsePolicySize("4K") == 4096)
        #expect(parsePolicySize("4KiB") == 4096)
        #expect(parsePolicySize("2M") == 2 << 20)
        #expect(parsePolicySize("1G") == 1 << 30)
        #expect(parsePolicySize("4X") == nil)
        #expect(parsePolicySize("-1") == nil)
        #expect(parsePolicySize("99999999999999999999G") == nil)
        #expect(parseDuration("250us") == .microseconds(250))
        #expect(parseDuration("500ms") == .milliseconds(500))
        #expect(parseDuration("2s") == .seconds(2))
        #expect(parseDuration("2") == nil)
        #expect(parseDuration("ms") == nil)
    }
}
