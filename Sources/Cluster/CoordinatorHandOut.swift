import Engine
import Foundation
import Wire

/// Handing a step's work out, once enough workers are there (the core decides who gets which micro-shards and the
/// weights in which form), and the buffers the weights travel in.
extension Coordinator {
    /// A weight buffer libzmq no longer holds; a new one when a stalled peer still holds every one (rare: it is
    /// dropped within the silence limit, and its buffers come back).
    func idlePayload(excluding kept: SharedPayload? = nil) -> SharedPayload {
        if let free = payloads.first(where: { $0.isIdle && $0 !== kept }) { return free }
        let fresh = SharedPayload(byteCount: payloads[0].byteCount)
        payloads.append(fresh)
        return fresh
    }

    /// Sends the round's waiting micro-shards to the active workers, after waiting for enough of them.
    func handOut() throws {
        try ensureEnoughWorkers()
        try perform(core.handOut(at: clock.now))
    }

    /// Waits (after `onStarved`) while fewer than `minimumWorkers` are active; throws when none come in time.
    func ensureEnoughWorkers() throws {
        guard core.activeCount < settings.minimumWorkers else { return }
        let have = core.activeCount
        try onStarved?()
        log("\(have) of the \(settings.minimumWorkers) workers needed (--min-workers) are left; waiting up to "
            + "\(Seconds(settings.rejoinTimeout)) for workers to join at \(endpoint)")
        let deadline = clock.now + settings.rejoinTimeout
        while core.activeCount < settings.minimumWorkers {
            guard clock.now < deadline else {
                let lost = core.table.lost.map { $0.label }.joined(separator: ", ")
                throw ClusterError("no workers rejoined within --rejoin-timeout (\(Seconds(settings.rejoinTimeout)))"
                    + "\(core.round.map { " at step \($0.step)" } ?? ""); lost: \(lost.isEmpty ? "none" : lost)")
            }
            try pump(timeout: .milliseconds(200))
        }
    }
}
