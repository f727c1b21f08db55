import CNTBShim

/// A libpci session (through `ntb_pci.h`): enumeration, pci.ids names and config reads.
@safe final class LibPCI {
    private let handle: OpaquePointer

    /// Opens libpci; `busPCI` points it at another `/sys/bus/pci` (a fake tree), nil keeps its defaults.
    init(busPCI: String?) throws(PCIKitError) {
        var err = [CChar](repeating: 0, count: 256)
        let h: OpaquePointer? = unsafe err.withUnsafeMutableBufferPointer { e in
            if let busPCI { return unsafe ntb_pci_open(busPCI, e.baseAddress!, e.count) }
            return unsafe ntb_pci_open(nil, e.baseAddress!, e.count)
        }
        guard let h = unsafe h else { throw .libpci(Self.text(err)) }
        unsafe self.handle = h
    }

    deinit { unsafe ntb_pci_close(handle) }

    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every function matching `match` (nil: all), in bus order.
    func scan(_ match: ntb_pci_match? = nil) throws(PCIKitError) -> [ntb_pci_info] {
        var capacity = 64
        while true {
            var out = [ntb_pci_info](repeating: ntb_pci_info(), count: capacity)
            var err = [CChar](repeating: 0, count: 256)
            let n: Int32 = unsafe out.withUnsafeMutableBufferPointer { o in
                unsafe err.withUnsafeMutableBufferPointer { e in
                    if var m = match {
                        return unsafe ntb_pci_scan(handle, &m, o.baseAddress, Int32(o.count), e.baseAddress!, e.count)
                    }
                    return unsafe ntb_pci_scan(handle, nil, o.baseAddress, Int32(o.count), e.baseAddress!, e.count)
                }
            }
            if n < 0 { throw .libpci(Self.text(err)) }
            if Int(n) <= capacity { return Array(out.prefix(Int(n))) }
            capacity = Int(n)
        }
    }

    /// A name from pci.ids / hwdb, formatted as lspci prints it.
    func name(_ what: Int32, _ a: UInt32, _ b: UInt32 = 0, _ c: UInt32 = 0, _ d: UInt32 = 0) -> String {
        var buf = [CChar](repeating: 0, count: 256)
        unsafe buf.withUnsafeMutableBufferPointer { p in
            _ = unsafe ntb_pci_lookup_name(handle, p.baseAddress!, Int32(p.count), what, a, b, c, d)
        }
        return Self.text(buf)
    }

    /// Up to `length` bytes of configuration space from `offset`; fewer when the rest is not readable
    /// (unprivileged users see 64 bytes).
    func readConfig(_ a: PCIAddress, offset: Int = 0, length: Int) throws(PCIKitError) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: length)
        var err = [CChar](repeating: 0, count: 256)
        let n: Int32 = unsafe buf.withUnsafeMutableBufferPointer { b in
            unsafe err.withUnsafeMutableBufferPointer { e in
                unsafe ntb_pci_read_config(handle, Int32(bitPattern: a.domain), a.bus, a.device, a.function,
                                           Int32(offset), b.baseAddress!, Int32(length), e.baseAddress!, e.count)
            }
        }
        if n < 0 { throw .system(call: "reading the configuration space of \(a)", errno: 5, remedy: Self.text(err) + "; run as root") }
        return Array(buf.prefix(Int(n)))
    }
}
