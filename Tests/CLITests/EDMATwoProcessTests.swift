import Foundation
import Synchronization
import Testing
import NTBMock

/// The eDMA window and the DW eDMA engine model over the mock link in two processes: the endpoint
/// process hosts the model and publishes the window before link-up; the host validates it, drives the
/// endpoint's read channel through it, and the policy's `auto` decides from it.
@Suite(.serialized) struct EDMATwoProcessTests {
    /// The bus address in a `mw trans` answer (`mw 0: 0x1000 + 4096`).
    static func busAddress(_ answer: String) -> UInt64? {
        guard let hex = answer.split(separator: " ").first(where: { $0.hasPrefix("0x") }) else { return nil }
        return UInt64(hex.dropFirst(2), radix: 16)
    }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    static func payload(_ count: Int, seed: UInt8) -> String {
        (0..<count).map { i -> String in
            let b = UInt8(truncatingIfNeeded: i &* 37 &+ Int(seed))
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }

    @Test func theEndpointPublishes_theHostValidates_andDMAsRunBothWaysThroughTheModelInTheEndpointProcess() throws {
        try withTwoProcessLink { dir in
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("edma publish").hasPrefix("edma: published in mw 1 at 0x"))
            let host = try ToolProcess(directory: dir, role: .host)
            #expect(host.send("link up") == "link: up")
            #expect(ep.send("link wait up 3000") == "link: up")
            #expect(host.send("edma probe") == "edma: valid in peer-mw 1: ch_cnt 5, reg_size 0x2000")

            let h = try #require(Self.busAddress(host.send("mw trans 0 8192")))
            let e = try #require(Self.busAddress(ep.send("mw trans 0 8192")))
            #expect(h >= MockLinkConfiguration.hostRAMBus && e >= MockLinkConfiguration.endpointRAMBus && e < MockLinkConfiguration.hostRAMBus)

            // Host → endpoint: remote read channel 0, programmed through the window, run by the model
            // in the endpoint process (PCIe → endpoint memory).
            let down = Self.payload(1000, seed: 3)
            #expect(host.send("mw write 0 0 \(down)") == "mw 0 @0x0: wrote 1000 bytes")
            #expect(host.send("edma dma \(Self.hex(h)) \(Self.hex(e + 16)) 1000") == "edma dma: 1000 bytes done")
            let seen = ep.send("mw read 0 16 1000")
            #expect(seen == "mw 0 @0x10: \(down)")

            // Endpoint → host: local write channel 0 (endpoint memory → PCIe).
            let up = Self.payload(777, seed: 91)
            #expect(ep.send("mw write 0 4096 \(up)") == "mw 0 @0x1000: wrote 777 bytes")
            #expect(ep.send("edma dma \(Self.hex(e + 4096)) \(Self.hex(h + 5000)) 777") == "edma dma: 777 bytes done")
            #expect(host.send("mw read 0 5000 777") == "mw 0 @0x1388: \(up)")

            // A DMA to an address no segment holds aborts, is reported, and the channel works again.
            #expect(host.send("edma dma \(Self.hex(h)) 0x10 8").hasPrefix("Error: edma dma: submission"))
            #expect(host.send("edma dma \(Self.hex(h)) \(Self.hex(e + 16)) 8") == "edma dma: 8 bytes done")

            // An abort injected in the model at element 3 of an 8-element chain: elements 0-2 landed,
            // the abort names element 3, nothing from it on was written; the channel goes on.
            let chain = Self.payload(8 * 64, seed: 200)
            #expect(host.send("mw write 0 6144 \(chain)") == "mw 0 @0x1800: wrote 512 bytes")
            #expect(ep.send("edma inject-abort read 0 3") == "edma: abort armed on read channel 0 at element 3")
            let aborted = host.send("edma dma \(Self.hex(h + 6144)) \(Self.hex(e + 6144)) 64 8")
            #expect(aborted.hasPrefix("Error: edma dma: submission") && aborted.contains("aborted at element 3"), "\(aborted)")
            #expect(ep.send("mw read 0 6144 192") == "mw 0 @0x1800: \(chain.prefix(384))")
            #expect(ep.send("mw read 0 6336 320") == "mw 0 @0x18c0: \(String(repeating: "00", count: 320))")
            #expect(host.send("edma dma \(Self.hex(h + 6144)) \(Self.hex(e + 6144)) 64 8") == "edma dma: 512 bytes done")
            #expect(ep.send("mw read 0 6144 512") == "mw 0 @0x1800: \(chain)")

            // Withdrawn: the host refuses the window and says why.
            #expect(ep.send("edma retract") == "edma: retracted")
            let withdrawn = host.send("edma probe")
            #expect(withdrawn.hasPrefix("edma: not usable: ") && withdrawn.contains("bad magic 0x00000000 at offset 0 of window 1"), "\(withdrawn)")
            host.quit()
            ep.quit()
            // `mock down` takes the model's files with the link.
            #expect(FileManager.default.fileExists(atPath: dir + "/" + EDMAModelFiles.registers))
            try MockLink.remove(at: dir)
            #expect(!FileManager.default.fileExists(atPath: dir))
        }
    }

    @Test func autoPicksEDMAWhenTheEndpointPublishes_andHostWhenNot() throws {
        try withTwoProcessLink { dir in
            let policy = dir + ".policy.conf"
            try "auto@mock:\(dir)\n".write(toFile: policy, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(atPath: policy) }
            func show() throws -> String {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: ntbTransportBinary())
                p.arguments = ["policy", "show", "mock:\(dir)", "--probe", "--policy", policy]
                let out = Pipe()
                p.standardOutput = out
                p.standardError = Pipe()
                try p.run()
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                return text
            }
            let ep = try ToolProcess(directory: dir, role: .endpoint)
            #expect(ep.send("link status") == "link: down")
            let before = try show()
            #expect(before.contains("mock:\(dir): host\n"), "nothing published: \(before)")
            #expect(before.contains("edma is not usable: bad magic"))

            #expect(ep.send("edma publish").hasPrefix("edma: published in mw 1"))
            let after = try show()
            #expect(after.contains("mock:\(dir): edma\n"), "published: \(after)")
            ep.quit()
        }
    }
}
