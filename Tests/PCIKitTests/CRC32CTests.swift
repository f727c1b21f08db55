import CNTBShim
import Foundation
import Testing

/// The C shim's CRC-32C (ntb_crc32c.h): known answers, the instruction path against the table path, and
/// both against a bitwise reference written here (the convention of the CLI's file-transfer checksum:
/// register starts at 0xFFFFFFFF, result XORed with 0xFFFFFFFF, reflected polynomial 0x82F63B78).
@Suite struct CRC32CTests {
    /// Bit at a time, straight from the definition; independent of both C implementations.
    static func reference(_ bytes: some Sequence<UInt8>, from crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    /// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
    static func bytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var x = seed
        return (0..<count).map { _ in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static func hw(_ bytes: [UInt8], offset: Int = 0, count: Int? = nil, from crc: UInt32 = 0) -> UInt32 {
        unsafe bytes.withUnsafeBytes { unsafe ntb_crc32c(crc, $0.baseAddress.map { unsafe $0 + offset }, count ?? bytes.count - offset) }
    }

    static func sw(_ bytes: [UInt8], offset: Int = 0, count: Int? = nil, from crc: UInt32 = 0) -> UInt32 {
        unsafe bytes.withUnsafeBytes { unsafe ntb_crc32c_sw(crc, $0.baseAddress.map { unsafe $0 + offset }, count ?? bytes.count - offset) }
    }

    @Test func knownAnswers() {
        let check = Array("123456789".utf8)
        #expect(Self.hw(check) == 0xE306_9283)
        #expect(Self.sw(check) == 0xE306_9283)
        #expect(Self.reference(check) == 0xE306_9283)
        // 32 zero bytes and 32 0xFF bytes: the CRC-32C test vectors of RFC 3720 (iSCSI), appendix B.4.
        #expect(Self.hw([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.sw([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(Self.hw([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(Self.sw([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    }

    @Test func emptyInputLeavesTheCRCAlone() {
        #expect(ntb_crc32c(0, nil, 0) == 0)
        #expect(ntb_crc32c_sw(0, nil, 0) == 0)
        #expect(ntb_crc32c(0xE306_9283, nil, 0) == 0xE306_9283)
        #expect(Self.hw([]) == 0 && Self.sw([]) == 0)
    }

    @Test func everyLengthUpTo300AtEveryAlignmentMatches() {
        let data = Self.bytes(300 + 8)
        for offset in 0..<8 {
            for count in 0...300 {
                let want = Self.reference(data[offset..<offset + count])
                let hw = Self.hw(data, offset: offset, count: count)
                let sw = Self.sw(data, offset: offset, count: count)
                #expect(hw == want, "instruction path, offset \(offset), length \(count)")
                #expect(sw == want, "table path, offset \(offset), length \(count)")
                if hw != want || sw != want { return }
            }
        }
    }

    /// Lengths around the instruction path's block sizes (3 × 256 and 3 × 8192 bytes interleave three
    /// streams and combine them), so the combination step is exercised on each side of every boundary.
    @Test(arguments: [767, 768, 769, 1000, 3 * 768 + 5, 24_575, 24_576, 24_577, 3 * 24_576 + 3 * 768 + 13, 1 << 20])
    func longInputsMatchAcrossPaths(count: Int) {
        let data = Self.bytes(count + 3, seed: UInt64(count))
        for offset in [0, 3] {
            let want = Self.reference(data[offset..<offset + count])
            #expect(Self.hw(data, offset: offset, count: count) == want)
            #expect(Self.sw(data, offset: offset, count: count) == want)
        }
    }

    @Test func chainingEqualsOneCall() {
        let data = Self.bytes(100_000, seed: 7)
        let whole = Self.hw(data)
        #expect(whole == Self.sw(data))
        for split in [0, 1, 7, 255, 4096, 30_001, 99_999, 100_000] {
            let first = Self.hw(data, count: split)
            #expect(Self.hw(data, offset: split, from: first) == whole, "split at \(split)")
            let firstSW = Self.sw(data, count: split)
            #expect(Self.sw(data, offset: split, from: firstSW) == whole, "table, split at \(split)")
            // The two paths continue each other's value.
            #expect(Self.sw(data, offset: split, from: first) == whole)
        }
    }

    /// On a CPU with the instruction, the instruction path is the one selected (the table is only the fallback).
    @Test func selectsTheInstructionWhenTheCPUHasIt() {
        let impl = unsafe String(cString: ntb_crc32c_impl())
        #expect(["sse4.2", "armv8-crc32", "table"].contains(impl))
        guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return }
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") || $0.hasPrefix("Features") }
            .map { Set($0.split(separator: ":").last?.split(separator: " ").map(String.init) ?? []) } ?? []
        #if arch(x86_64)
        #expect((impl == "sse4.2") == flags.contains("sse4_2"))
        #elseif arch(arm64)
        #expect((impl == "armv8-crc32") == flags.contains("crc32"))
        #endif
    }
}
