import Synchronization

/// Pending and masked doorbell bits kept in software, for NTBs whose hardware has no doorbell or mask
/// register the host can read (vNTB: `ntb_epf_db_set_mask` / `vntb_epf_db_set_mask` are no-ops, and
/// pending bits come from MSI vectors or the polled doorbell array).
struct SoftwareDoorbells: ~Copyable {
    private let pending = Atomic<UInt64>(0)
    private let mask = Atomic<UInt64>(0)

    init() {}

    /// Pending bits (`ntb_db_read`).
    func read() -> UInt64 { pending.load(ordering: .acquiring) }
    /// Clears pending bits (`ntb_db_clear`).
    func clear(_ bits: UInt64) { pending.bitwiseAnd(~bits, ordering: .acquiringAndReleasing) }
    /// Marks bits pending; returns whether any pending bit is now unmasked.
    @discardableResult
    func post(_ bits: UInt64) -> Bool {
        let (before, _) = pending.bitwiseOr(bits, ordering: .acquiringAndReleasing)
        return (before | bits) & ~mask.load(ordering: .relaxed) != 0
    }
    /// Whether any pending bit is unmasked (an event to report).
    var hasUnmasked: Bool { read() & ~mask.load(ordering: .relaxed) != 0 }
    /// Whether any of `bits` is pending and unmasked.
    func hasUnmasked(_ bits: UInt64) -> Bool { read() & bits & ~mask.load(ordering: .relaxed) != 0 }
    func setMask(_ bits: UInt64) { mask.bitwiseOr(bits, ordering: .relaxed) }
    func clearMask(_ bits: UInt64) { mask.bitwiseAnd(~bits, ordering: .relaxed) }
    var maskBits: UInt64 { mask.load(ordering: .relaxed) }
}
