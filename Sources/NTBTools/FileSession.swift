#if canImport(Glibc)
import Glibc
#endif
import NTBHardware
import NTBTransport

/// Sends one file: START_FILE, the name, the content, END_FILE with its CRC-32C; the responder checks it.
public struct FileSender: PortSession, Sendable {
    public var path: String

    public init(path: String) { self.path = path }

    public struct Result: Codable, Sendable {
        public var name: String
        public var bytes: UInt64
        public var seconds: Double
        public var crc32c: UInt32
    }

    /// Sends the file on queue pair 0 of `set` (the peer runs a ``Responder``).
    public func run<Device: NTBDevice, Backend: TransportBackend>(_ set: PortSet<Device, Backend>) throws -> Result {
        let fd = unsafe open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError(unsafe "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard unsafe fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { throw ToolError("\(path) is not a regular file") }
        let name = String(path.split(separator: "/").last ?? "")
        let port = try set.port(0)
        let nameBytes = Array(name.utf8)
        // The name is the message after START_FILE, whatever its length: the receiver reads it as
        // bytes, never as a control message, so 64 bytes is a name like any other.
        guard !nameBytes.isEmpty, nameBytes.count <= FileTransfer.maxNameBytes(port.bufferSize) else {
            throw ToolError("the file name must be 1...\(FileTransfer.maxNameBytes(port.bufferSize)) bytes; rename \(path)")
        }
        let start = ContinuousClock.now
        try port.send(ControlMessage(.startFile, UInt64(st.st_size), UInt64(nameBytes.count)))
        let nameBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: nameBytes.count, alignment: 8)
        defer { unsafe nameBuffer.deallocate() }
        unsafe nameBuffer.copyBytes(from: nameBytes)
        unsafe try port.send(UnsafeRawBufferPointer(nameBuffer))
        // Chunks never exactly 64 bytes (control size): use maxPayload, or 63 for a 64-byte tail.
        let chunk = port.bufferSize == ControlMessage.size ? ControlMessage.size - 1 : port.bufferSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { unsafe buffer.deallocate() }
        var crc = CRC32C()
        var total: UInt64 = 0
        var progress = Progress()
        while true {
            var filled = 0
            while filled < chunk {
                let n = unsafe read(fd, buffer.baseAddress! + filled, chunk - filled)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw ToolError(unsafe "reading \(path): \(String(cString: strerror(errno)))") }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            var pieces = [(0, filled)]
            if filled == ControlMessage.size { pieces = [(0, 32), (32, 32)] }
            for (off, len) in pieces {
                let piece = unsafe UnsafeRawBufferPointer(rebasing: buffer[off..<(off + len)])
                unsafe crc.update(piece)
                unsafe try port.send(piece)
            }
            total += UInt64(filled)
            progress.update("  \(total >> 20) MiB of \(UInt64(st.st_size) >> 20) MiB")
            if filled < chunk { break }
        }
        progress.finish()
        try port.send(ControlMessage(.endFile, UInt64(crc.checksum), total))
        let reply = try port.receiveControl(timeout: .seconds(60))
        guard reply.kind == .result else { throw ToolError("unexpected reply \(reply.kind) to the file transfer") }
        guard reply.status == 0 else {
            throw ToolError(reply.status == 2 ? "the receiver could not write the file (status 2); check the receiving directory" : "checksum mismatch: sent CRC-32C \(String(crc.checksum, radix: 16)), the receiver computed \(String(reply.a.0, radix: 16)); the file was discarded")
        }
        return Result(name: name, bytes: total, seconds: (ContinuousClock.now - start).seconds, crc32c: crc.checksum)
    }
}


/// Limits of the file session.
public enum FileTransfer {
    /// The longest file name a transfer carries: one message, and a name whose partial file
    /// (`.NAME.partial`) the receiving file system takes (NAME_MAX, 255 bytes).
    public static func maxNameBytes(_ maxPayload: Int) -> Int { min(maxPayload, 255 - ".".utf8.count - ".partial".utf8.count) }
}

/// Receives one file after START_FILE (its name, the content, END_FILE with the CRC-32C) into
/// `directory`: written to `.NAME.partial`, renamed to NAME once size and checksum match, removed
/// otherwise; answers with RESULT (status 0 ok, 1 mismatch, 2 not written).
public struct FileReceiver {
    public var directory: String
    /// How long to wait for the peer's next message.
    public var timeout: Duration
    public var log: (String) -> Void

    public init(directory: String, timeout: Duration = .seconds(60), log: @escaping (String) -> Void = { writeStderr($0 + "\n") }) {
        self.directory = directory; self.timeout = timeout; self.log = log
    }

    /// Receives the file START_FILE announced (`size` bytes, a name of `nameLength` bytes). If the
    /// peer goes away or stays silent it throws, and the partial file is closed and removed.
    public func receive<D: NTBDevice, B: TransportBackend>(_ port: MessagePort<D, B>, size: UInt64, nameLength: UInt64) throws {
        let (nameSlot, length) = try port.receive(timeout: timeout)
        let rawName = unsafe String(decoding: port.bytes(nameSlot, length), as: UTF8.self)
        port.release(nameSlot)
        // Never trust the peer's name: a plain file name, no directories, the length START_FILE gave.
        let name = rawName.split(separator: "/").last.map(String.init) ?? ""
        let valid = UInt64(length) == nameLength && !name.isEmpty && name != "." && name != ".." && !name.contains("\0")
        let partial = "\(directory)/.\(name).partial"
        var fd = valid ? unsafe open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) : -1
        if !valid { log("refusing file name '\(rawName)' (\(length) bytes, announced \(nameLength)) from the peer") }
        else if fd < 0 { log(unsafe "cannot write \(partial): \(String(cString: unsafe strerror(errno)))") }
        // Every way out closes the file; every one but a verified END_FILE (which closes it itself)
        // removes it: a peer killed mid-transfer leaves neither a descriptor nor a partial file.
        defer {
            if fd >= 0 {
                close(fd)
                _ = unsafe unlink(partial)
            }
        }
        var crc = CRC32C()
        var total: UInt64 = 0
        var writeFailed = fd < 0
        while true {
            let (slot, length) = try port.receive(timeout: timeout)
            let bytes = unsafe port.bytes(slot, length)
            if length == ControlMessage.size, let m = unsafe ControlMessage(bytes), m.kind == .endFile {
                port.release(slot)
                let ok = !writeFailed && UInt64(crc.checksum) == m.a.0 && total == m.a.1 && total == size
                if ok {
                    close(fd)
                    fd = -1
                    if unsafe rename(partial, "\(directory)/\(name)") == 0 {
                        log("received \(name): \(total) bytes, CRC-32C \(String(crc.checksum, radix: 16)) verified")
                    } else {
                        _ = unsafe unlink(partial)
                        writeFailed = true
                        log(unsafe "discarded \(name): cannot rename it into place: \(String(cString: unsafe strerror(errno)))")
                    }
                } else {
                    log("discarded \(name): \(writeFailed ? "write failed" : "checksum or size mismatch")")
                }
                let status: UInt32 = ok && !writeFailed ? 0 : (writeFailed ? 2 : 1)
                try port.send(ControlMessage(.result, status: status, UInt64(crc.checksum), total))
                return
            }
            unsafe crc.update(bytes)
            total += UInt64(length)
            if !writeFailed {
                var off = 0
                while off < length {
                    let n = unsafe write(fd, bytes.baseAddress! + off, length - off)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { writeFailed = true; break }
                    off += n
                }
            }
            port.release(slot)
        }
    }
}
