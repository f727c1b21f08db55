#if canImport(Glibc)
import Glibc
#endif

/// A plain OS thread (pthread): the project's one wrapper of `pthread_create`, for link monitors,
/// device-model service threads and queue pairs the user spreads over threads. Joined explicitly (or
/// handed over with ``release()``); the body runs once.
public final class SystemThread: @unchecked Sendable {
    private var handle = pthread_t()
    /// Joined, or handed to the caller: deinit leaves the pthread alone.
    private var settled = false

    private final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }

    /// Starts `body` on a new thread; `name` is for messages.
    /// - Throws: ``PCIKitError/system(call:errno:remedy:)`` when the thread cannot be created.
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(PCIKitError) {
        let box = unsafe Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = unsafe pthread_create(&handle, nil, { arg in
            let box = unsafe Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            unsafe Unmanaged<Box>.fromOpaque(box).release()
            throw .system(call: "pthread_create (\(name))", errno: rc, remedy: "check the process thread limit (ulimit -u) and memory")
        }
    }

    /// Waits for the body to return (returns at once when called from the thread itself).
    public func join() {
        guard !settled, pthread_equal(handle, pthread_self()) == 0 else { return }
        settled = true
        pthread_join(handle, nil)
    }

    /// Hands the pthread to the caller, who joins or detaches it; this object then leaves it alone.
    public func release() -> pthread_t {
        settled = true
        return handle
    }

    deinit { if !settled { pthread_detach(handle) } }

    /// CPU time this process has used, in seconds (user + system), for CPU-per-GB figures.
    public static func processCPUSeconds() -> Double {
        var ru = rusage()
        unsafe getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
        return Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
    }

    /// Gives the CPU to another runnable thread (spin loops on busy machines).
    @inlinable public static func yield() { _yield() }
    @usableFromInline static func _yield() { sched_yield() }

    /// Sleeps the calling thread.
    public static func sleep(_ duration: Duration) {
        let (s, atto) = duration.components
        var ts = timespec(tv_sec: Int(s), tv_nsec: Int(atto / 1_000_000_000))
        unsafe nanosleep(&ts, nil)
    }

    // MARK: CPU affinity

    /// How many CPUs an affinity set can name (`CPU_SETSIZE`).
    public static var cpuSetCapacity: Int { MemoryLayout<cpu_set_t>.size * 8 }

    /// Pins the calling thread, and the threads it creates afterwards (they inherit the set), to `cpu`.
    /// - Throws: ``PCIKitError/system(call:errno:remedy:)`` for a CPU out of range or not ours.
    public static func pin(toCPU cpu: Int) throws(PCIKitError) {
        guard cpu >= 0 && cpu < cpuSetCapacity else {
            throw .system(call: "sched_setaffinity (CPU \(cpu))", errno: EINVAL, remedy: "give a CPU in 0..<\(cpuSetCapacity); see nproc for the CPUs you may use")
        }
        try setAffinity([cpu])
    }

    /// Lets the calling thread run on every online CPU again (threads it creates afterwards inherit it).
    public static func unpin() throws(PCIKitError) {
        try setAffinity(Array(0..<min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), cpuSetCapacity)))
    }

    /// Sets the calling thread's CPU set (`sched_setaffinity(0, …)`).
    public static func setAffinity(_ cpus: [Int]) throws(PCIKitError) {
        var set = cpu_set_t()
        for cpu in cpus where cpu >= 0 && cpu < cpuSetCapacity {
            unsafe withUnsafeMutableBytes(of: &set) { unsafe $0[cpu / 8] |= UInt8(1) << UInt8(cpu % 8) }
        }
        // sched_setaffinity is a GNU extension the Glibc module does not export; look it up in libc.
        typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
        guard let symbol = unsafe dlsym(UnsafeMutableRawPointer(bitPattern: 0), "sched_setaffinity") else {
            throw .system(call: "sched_setaffinity", errno: ENOSYS, remedy: "this C library does not offer it; run without pinning")
        }
        let call = unsafe unsafeBitCast(symbol, to: SetAffinity.self)
        let rc = unsafe withUnsafeBytes(of: &set) { unsafe call(0, MemoryLayout<cpu_set_t>.size, $0.baseAddress!) }
        guard rc == 0 else {
            throw .system(call: "sched_setaffinity (CPUs \(cpus.map(String.init).joined(separator: ",")))", errno: errno,
                          remedy: "see nproc (and taskset -p $$) for the CPUs you may use")
        }
    }
}
