import SystemPackage

/// A file descriptor that is closed exactly once, when its owner goes away.
final class OwnedDescriptor: @unchecked Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { Syscalls.close(fd) }
}

/// A memory mapping that is unmapped once: by ``release()`` or when it goes away.
@safe
final class OwnedMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
    private var mapped = true
    init(base: UnsafeMutableRawPointer, length: Int) {
        unsafe self.base = base
        self.length = length
    }
    func release() {
        if mapped { mapped = false; unsafe Syscalls.munmap(base, length) }
    }
    deinit { release() }
}

/// `withUnsafeMutableBytes` for a call that throws `Errno` (the stdlib version is untyped `rethrows`).
@inline(__always)
func withMutableBytes<T, R>(_ array: inout [T], _ body: (UnsafeMutableRawBufferPointer) throws(Errno) -> R) throws(Errno) -> R {
    let result: Result<R, Errno> = unsafe array.withUnsafeMutableBytes { b in
        do throws(Errno) { return .success(try unsafe body(b)) } catch { return .failure(error) }
    }
    return try result.get()
}

/// `withUnsafeBytes` for a call that throws `Errno`.
@inline(__always)
func withBytes<T, R>(_ array: [T], _ body: (UnsafeRawBufferPointer) throws(Errno) -> R) throws(Errno) -> R {
    let result: Result<R, Errno> = unsafe array.withUnsafeBytes { b in
        do throws(Errno) { return .success(try unsafe body(b)) } catch { return .failure(error) }
    }
    return try result.get()
}
