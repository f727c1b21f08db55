#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Process memory for DMA: hugepage-backed where the system has hugepages free, else page-aligned
/// anonymous memory; locked (mlock) so it stays resident.
@safe
struct PinnedMemory {
    let address: UnsafeMutableRawPointer
    /// Mapped length (rounded up to the page or hugepage size).
    let length: Int
    let hugepage: Bool

    static let hugepageSize = 2 << 20

    /// Maps and locks at least `length` bytes. Tries 2 MiB hugepages first when `length` is at least
    /// one hugepage or `preferHugepages` is set; falls back to normal pages.
    static func allocate(length: Int, preferHugepages: Bool = false) throws(PCIKitError) -> PinnedMemory {
        precondition(length > 0)
        let page = Syscalls.pageSize
        var mapped: (UnsafeMutableRawPointer, Int, Bool)? = nil
        if length >= hugepageSize || preferHugepages {
            let len = (length + hugepageSize - 1) / hugepageSize * hugepageSize
            if let p = unsafe try? Syscalls.mmap(length: len, protection: PROT_READ | PROT_WRITE,
                                          flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, fd: -1, offset: 0) {
                unsafe mapped = (p, len, true)
            }
        }
        if unsafe mapped == nil {
            let len = (length + page - 1) / page * page
            do {
                let p = try unsafe Syscalls.mmap(length: len, protection: PROT_READ | PROT_WRITE,
                                                 flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, fd: -1, offset: 0)
                unsafe mapped = (p, len, false)
            } catch {
                throw .system(call: "mmap of \(len) bytes of DMA memory", errno: error.rawValue, remedy: "free memory or allocate less")
            }
        }
        let (p, len, huge) = unsafe mapped!
        do { try unsafe Syscalls.mlock(p, len) } catch {
            unsafe Syscalls.munmap(p, len)
            throw .system(call: "mlock of \(len) bytes of DMA memory", errno: error.rawValue,
                          remedy: "raise the locked-memory limit (ulimit -l, or LimitMEMLOCK= in a systemd unit)")
        }
        unsafe memset(p, 0, len)
        return unsafe PinnedMemory(address: p, length: len, hugepage: huge)
    }

    /// Unlocks and unmaps.
    func release() {
        unsafe Syscalls.munlock(address, length)
        unsafe Syscalls.munmap(address, length)
    }
}
