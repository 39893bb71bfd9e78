import Foundation

/// Keeps garbage from harming a receiver: each refused message is logged in one line naming the peer and what
/// was wrong, and a peer that keeps sending them is cut off (its messages dropped unread from then on).
public final class PeerGuard {
    /// Refused messages a peer may send before it is cut off.
    public let limit: Int
    private var violations: [[UInt8]: Int] = [:]
    private var cutOff: Set<[UInt8]> = []
    private let log: (String) -> Void

    public init(limit: Int = 5, log: @escaping (String) -> Void) {
        self.limit = limit
        self.log = log
    }

    /// Whether messages from `peer` are to be dropped unread.
    public func isCutOff(_ peer: [UInt8]) -> Bool { cutOff.contains(peer) }

    /// Records a refused message from `peer` (described by `name`); returns true if the peer is now cut off.
    @discardableResult
    public func refused(_ peer: [UInt8], name: String, _ error: WireError) -> Bool {
        let count = violations[peer, default: 0] + 1
        violations[peer] = count
        log("dropped a message from \(name): \(error)")
        guard count >= limit else { return false }
        cutOff.insert(peer)
        log("cut off \(name) after \(count) malformed messages")
        return true
    }

    /// A printable name for a ROUTER identity frame.
    public static func name(_ identity: [UInt8]) -> String {
        "peer 0x" + identity.map { String(format: "%02x", $0) }.joined()
    }
}
