#if canImport(Glibc)
import Glibc
#endif
import PCIKit
import Synchronization
import Testing

@Suite struct SystemThreadTests {
    @Test func theBodyRunsOnceAndJoinWaitsForIt() throws {
        let runs = Mutex(0)
        let t = try SystemThread(name: "test-once") {
            SystemThread.sleep(.milliseconds(20))
            runs.withLock { $0 += 1 }
        }
        t.join()
        #expect(runs.withLock { $0 } == 1)
        t.join()   // a second join is harmless
        #expect(runs.withLock { $0 } == 1)
    }

    @Test func aReleasedThreadIsJoinedByItsNewOwner() throws {
        let done = Mutex(false)
        let t = try SystemThread(name: "test-release") { done.withLock { $0 = true } }
        let handle = t.release()
        #expect(pthread_join(handle, nil) == 0)
        #expect(done.withLock { $0 })
    }
}
