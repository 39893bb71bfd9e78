import Foundation

/// Keeps garbage from harming a receiver: refused messages are logged naming the peer and what was wrong, and a
/// peer that keeps sending them is cut off (its messages dropped unread from then on).
///
/// Bounded whatever the peers do: at most `trackedPeers` identities are remembered (the oldest forgotten first, so
/// fresh identities cannot grow it), each peer's first refusal and its cut-off are logged, and at most
/// `linesPerWindow` lines per `window` are written in all — the rest are counted and summed up in one line.
package final class PeerGuard {
    /// Refused messages a peer may send before it is cut off.
    package let limit: Int
    package let trackedPeers: Int
    package let linesPerWindow: Int
    package let window: Duration
    private var violations: [[UInt8]: Int] = [:]
    private var arrival: [[UInt8]] = []
    private var cutOff: Set<[UInt8]> = []
    private let log: (String) -> Void
    /// The time (injected by tests, which move it by hand).
    private let now: () -> ContinuousClock.Instant
    private var lines: LineBudget

    package init(limit: Int = 5, trackedPeers: Int = 1024, linesPerWindow: Int = 20, window: Duration = .seconds(10),
                now: @escaping () -> ContinuousClock.Instant = { ContinuousClock.now }, log: @escaping (String) -> Void) {
        self.limit = limit
        self.trackedPeers = trackedPeers
        self.linesPerWindow = linesPerWindow
        self.window = window
        self.log = log
        self.now = now
        lines = LineBudget(what: "refusals", linesPerWindow: linesPerWindow, window: window, startingAt: now())
    }

    /// Whether messages from `peer` are to be dropped unread.
    package func isCutOff(_ peer: [UInt8]) -> Bool { cutOff.contains(peer) }

    /// Identities remembered now (never more than `trackedPeers`).
    package var trackedCount: Int { violations.count }

    /// Records a refused message from `peer` (described by `name`); returns true if the peer is now cut off.
    @discardableResult
    package func refused(_ peer: [UInt8], name: String, _ error: WireError) -> Bool {
        if violations[peer] == nil {
            if violations.count >= trackedPeers, !arrival.isEmpty {
                let oldest = arrival.removeFirst()
                violations[oldest] = nil
                cutOff.remove(oldest)
            }
            arrival.append(peer)
        }
        let count = violations[peer, default: 0] + 1
        violations[peer] = count
        if count == 1 { write("dropped a message from \(name): \(error)") }
        guard count >= limit else { return false }
        if count == limit {
            cutOff.insert(peer)
            write("cut off \(name) after \(count) malformed messages")
        }
        return true
    }

    private func write(_ line: String) {
        let (allowed, summary) = lines.take(at: now())
        if let summary { log(summary) }
        if allowed { log(line) }
    }

    /// A printable name for a ROUTER identity frame.
    package static func name(_ identity: [UInt8]) -> String {
        "peer 0x" + identity.prefix(32).map { String(format: "%02x", $0) }.joined()
    }
}
