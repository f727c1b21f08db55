import Foundation
import Testing
@testable import ntb_transport

/// Every number option is range-checked before use: NaN, the infinities, overflowing counts and values
/// outside the range are a usage error (exit 64) whose first line names the valid range, never a trap.
@Suite struct SessionNumberOptionTests {
    static let cases: [([String], String)] = [
        (["perf", "--role", "host", "--bytes", "99999999999G"], "--bytes 99999999999G is out of range: 1...1024T bytes"),
        (["perf", "--role", "host", "--bytes", "18446744073709551615K"], "--bytes 18446744073709551615K is out of range: 1...1024T bytes"),
        (["perf", "--role", "host", "--bytes", "12abcK"], "--bytes 12abcK is out of range: 1...1024T bytes"),
        (["perf", "--role", "host", "--duration", "nan"], "--duration nan is not a finite number: the range is 0.001...86400.0 seconds"),
        (["perf", "--role", "host", "--duration", "inf"], "--duration inf is not a finite number: the range is 0.001...86400.0 seconds"),
        (["perf", "--role", "host", "--duration", "1e308"], "--duration 1e+308 is out of range: 0.001...86400.0 seconds"),
        (["perf", "--role", "host", "--duration=-2"], "--duration -2.0 is out of range: 0.001...86400.0 seconds"),
        (["perf", "--role", "host", "--size", "0"], "--size 0 is out of range: 1...1073741824 bytes"),
        (["perf", "--role", "host", "--size", "64", "--size", "9223372036854775807"], "--size 9223372036854775807 is out of range: 1...1073741824 bytes"),
        (["pingpong", "--role", "host", "--count", "9223372036854775807"], "--count 9223372036854775807 is out of range: 1...1000000000"),
        (["pingpong", "--role", "host", "--size", "0"], "--size 0 is out of range: 1...1073741824 bytes"),
        (["mock", "latency", "--role", "host", "--count", "9223372036854775807"], "--count 9223372036854775807 is out of range: 1...1000000000"),
        (["mock", "latency", "--role", "host", "--warmup", "9223372036854775807"], "--warmup 9223372036854775807 is out of range: 0...1000000000"),
        (["demo", "--bytes", "99999999999G"], "--bytes 99999999999G is out of range: 1...1024T bytes"),
        (["demo", "--small-messages", "9223372036854775807"], "--small-messages 9223372036854775807 is out of range: 1...1000000000"),
        (["demo", "--file-size", "1T"], "--file-size 1T is out of range: 1...64G bytes"),
        (["edma", "selftest", "--iterations", "0"], "--iterations 0 is out of range: 1...1000000"),
        (["edma", "model", "--directory", "/tmp/ntb-number-option-test", "--seconds=-1"], "--seconds -1 is out of range: 0...31536000"),
    ]

    @Test(arguments: cases)
    func aNumberOutOfRangeIsAUsageErrorNamingTheRange(args: [String], message: String) throws {
        let r = try CLI.run(args)
        #expect(r.status == 64, "\(args): \(r.err)")
        let first = try #require(r.err.split(separator: "\n").first)
        #expect(first == "Error: " + message[...] || first.hasPrefix("Error: " + message), "\(first)")
    }

    @Test func byteCountsParseWithoutOverflow() {
        #expect(parseByteCount("1T") == 1 << 40)
        #expect(parseByteCount("4KiB") == 4096)
        #expect(parseByteCount("123B") == 123)
        #expect(parseByteCount("16777216T") == nil)        // 2^64: does not fit
        #expect(parseByteCount("18446744073709551615") == UInt64.max)
        #expect(parseByteCount("0") == nil)
        #expect(parseByteCount("0", allowingZero: true) == 0)
        #expect(parseByteCount("K") == nil)
        #expect(parseByteCount("1.5G") == nil)
        #expect(parseByteCount("-1") == nil)
        #expect(ByteCount(argument: "4M")?.value == 4 << 20)
        #expect(ByteCount(argument: "99999999999G") == nil)
    }
}
