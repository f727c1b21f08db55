/// Whether the `edma` backend can run on a port right now, as the transport found out.
///
/// Host role: whether the peer published a valid `ntb_edma_info` in the eDMA window (hardware-reference
/// §4.2; validated by ``EDMAWindowLayout`` / ``EDMAInfo``). Endpoint role: whether the window could be
/// published. The strings say what was found; they end up in the decision's reasons.
public enum EDMAProbe: Sendable, Equatable {
    /// Not looked at (e.g. `policy show` without opening the device).
    case notProbed
    /// Usable; the text says what was found (e.g. "the peer published ntb_edma_info: 5 channels, ...").
    case usable(String)
    /// Not usable, and why (e.g. "bad magic 0x00000000 at offset 0 of window 3").
    case unusable(String)
}

/// Which backend a port gets, and why: every step of the decision is in ``reasons``, so a fallback
/// is never silent.
public struct BackendDecision: Sendable, Equatable, CustomStringConvertible {
    public enum Outcome: Sendable, Equatable {
        /// Open the port with this transport backend.
        case use(TransportBackendKind)
        /// Leave the port to the kernel's NTB driver.
        case kernel
        /// Do not open the port: the policy requires edma and edma is not usable.
        case refuse
        /// Not probed yet: the first usable backend of this order is chosen at link-up.
        case undecided([TransportBackendKind])
    }

    public let port: PolicyPort
    public let outcome: Outcome
    /// The entry that governs the port, or nil when the built-in default applies.
    public let entry: PolicyEntry?
    /// Where the eDMA is, for edma (the entry's options, or the RFC defaults).
    public let locator: EDMALocator
    /// Why, in order: which entry applied, then what each backend tried found.
    public let reasons: [String]

    /// A short name of the outcome: `host`, `edma`, `kernel`, `none`, or `edma|host` when undecided.
    public var outcomeName: String {
        switch outcome {
        case let .use(kind): return kind.rawValue
        case .kernel: return "kernel"
        case .refuse: return "none"
        case let .undecided(order): return order.map(\.rawValue).joined(separator: "|")
        }
    }

    public var description: String { "\(port): \(outcomeName): " + reasons.joined(separator: "; ") }
}

extension Policy {
    /// Decides the backend of `port`.
    ///
    /// - `host` and `kernel` always apply.
    /// - `edma` applies if `edma` is usable; otherwise the port is refused (no silent fallback).
    /// - `auto` tries its order (default `edma,host`) and takes the first usable backend; `host` is
    ///   always usable. Each rejected backend and the reason are in the decision.
    ///
    /// - Parameter probe: what the transport found about edma on this port; `.notProbed` gives
    ///   `.undecided` for auto and the conditions for edma.
    public func decide(for port: PolicyPort, edma probe: EDMAProbe = .notProbed) -> BackendDecision {
        let entry = self.entry(for: port)
        var reasons: [String] = []
        let backend: PolicyBackend
        if let entry, entry.port != nil {
            reasons.append("\(entry.location) says \(entry.text)")
            backend = entry.backend
        } else if let entry {
            reasons.append("no entry for \(port); the default entry at \(entry.location) says \(entry.text)")
            backend = entry.backend
        } else {
            reasons.append("no entry for \(port) and no default entry in \(source); the built-in default is \(Policy.builtInDefault)")
            backend = Policy.builtInDefault
        }
        let locator = entry?.locator ?? EDMALocator()
        let order: [TransportBackendKind]
        switch backend {
        case .host:
            order = [.host]
        case .edma:
            order = [.edma]
        case .kernel:
            reasons.append("the port is left to the kernel's NTB driver; ntb-transport does not open it")
            return BackendDecision(port: port, outcome: .kernel, entry: entry, locator: locator, reasons: reasons)
        case .auto:
            order = entry?.order ?? [.edma, .host]
            reasons.append("auto tries " + order.map(\.rawValue).joined(separator: ", then "))
        }

        let edmaNeeds = "a valid ntb_edma_info from the peer in window \(locator.window)"
        for (index, kind) in order.enumerated() {
            let next = index + 1 < order.count ? order[index + 1] : nil
            switch kind {
            case .host:
                reasons.append("host needs nothing from the peer")
                return BackendDecision(port: port, outcome: .use(.host), entry: entry, locator: locator, reasons: reasons)
            case .edma:
                switch probe {
                case let .usable(found):
                    reasons.append("edma is usable: \(found)")
                    return BackendDecision(port: port, outcome: .use(.edma), entry: entry, locator: locator, reasons: reasons)
                case let .unusable(why):
                    if let next {
                        reasons.append("edma is not usable: \(why); trying \(next) as the order allows")
                    } else {
                        reasons.append("edma is not usable: \(why); the policy allows no fallback (write auto@\(port) or order=edma,host to allow host)")
                        return BackendDecision(port: port, outcome: .refuse, entry: entry, locator: locator, reasons: reasons)
                    }
                case .notProbed:
                    if next != nil {
                        reasons.append("edma needs \(edmaNeeds) (checked at link-up); otherwise the next backend in the order")
                        return BackendDecision(port: port, outcome: .undecided(Array(order[index...])),
                                               entry: entry, locator: locator, reasons: reasons)
                    }
                    reasons.append("edma needs \(edmaNeeds) (checked at link-up); without it the port fails, nothing falls back")
                    return BackendDecision(port: port, outcome: .undecided([.edma]), entry: entry, locator: locator, reasons: reasons)
                }
            }
        }
        // The parser never produces an empty order, and every order ends in host or returns above.
        preconditionFailure("decision fell through for order \(order)")
    }
}

extension Policy {
    /// Warnings for entries that name a transport backend not registered in this build
    /// (``TransportBackends/names``): such an entry cannot get it (`edma` is refused, `auto` skips it).
    public func unregisteredBackends(registered: [String]) -> [PolicyDiagnostic] {
        var warnings: [PolicyDiagnostic] = []
        let all = (defaultEntry.map { [$0] } ?? []) + entries
        for entry in all.sorted(by: { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }) {
            let kinds: [TransportBackendKind]
            switch entry.backend {
            case .host: kinds = [.host]
            case .edma: kinds = [.edma]
            case .auto: kinds = entry.order
            case .kernel: kinds = []
            }
            for kind in kinds where !registered.contains(kind.rawValue) {
                warnings.append(PolicyDiagnostic(.warning, at: entry.location,
                    "backend '\(kind)' is not registered in this build (registered: \(registered.joined(separator: ", "))); this entry cannot use it"))
            }
        }
        return warnings
    }
}

/// Why a port is not opened with a transport backend; the description gives the decision's reasons.
public struct PortNotOpened: Error, Equatable, Sendable, CustomStringConvertible {
    public let decision: BackendDecision
    public var description: String {
        let what: String
        switch decision.outcome {
        case .kernel: what = "is left to the kernel's NTB driver by the policy"
        case .refuse: what = "is not opened: the policy requires edma and edma is not usable"
        case .undecided: what = "needs its peer probed before the policy can decide (call decide(for:edma:) with the probe)"
        case .use: what = "is opened"
        }
        return "port \(decision.port) \(what): " + decision.reasons.joined(separator: "; ")
    }
}

extension BackendDecision {
    /// The backend to open the port with (its registry name is `rawValue`), or why not. Commands that
    /// open ports call this with the decision made after probing (`auto`/`edma`: ``EDMAPeerWindow``).
    public func backendToOpen() -> Result<TransportBackendKind, PortNotOpened> {
        if case let .use(kind) = outcome { return .success(kind) }
        return .failure(PortNotOpened(decision: self))
    }
}
