import Engine
import Foundation
import Wire

/// Handing a step's work out: the weights each worker needs (whole, in the region, as their change or from the parts
/// it was sent) and its micro-shards, once enough workers are there.
extension Coordinator {
    /// A weight buffer libzmq no longer holds; a new one when a stalled peer still holds every one (rare: it is
    /// dropped within the silence limit, and its buffers come back).
    func idlePayload(excluding kept: SharedPayload? = nil) -> SharedPayload {
        Self.idle(&payloads, byteCount: payloads[0].byteCount, excluding: kept)
    }

    static func idle(_ pool: inout [SharedPayload], byteCount: Int, excluding kept: SharedPayload? = nil)
        -> SharedPayload {
        if let free = pool.first(where: { $0.isIdle && $0 !== kept }) { return free }
        let fresh = SharedPayload(byteCount: byteCount)
        pool.append(fresh)
        return fresh
    }

    /// Sends the round's waiting micro-shards to the active workers, after waiting for enough of them.
    func handOut(_ round: StepRound, weights: (Int) throws -> (message: Message, changeFrom: Int?)) throws {
        try ensureEnoughWorkers(round)
        let active = table.active
        let now = clock.now
        for (member, attempt, ranges) in round.distribute(over: active, speeds: active.map { table[$0].speed }, now: now) {
            var frames: [Message] = []
            if table[member].weightsStep != round.step {
                if settings.overlap && table[member].partsStep == round.step && table[member].partsSent == partCount {
                    frames = [try Codec.weightsHeader(job: jobID, step: UInt64(round.step),
                                                      parameterCount: limits.parameterCount!, fromParts: true),
                              try Message(copying: [UInt8]())]
                } else if table[member].readsWeightsRegion {
                    frames = [try Codec.weightsHeader(job: jobID, step: UInt64(round.step),
                                                      parameterCount: limits.parameterCount!, inRegion: true),
                              try Message(copying: [UInt8]())]
                } else {
                    let (message, base) = try weights(member)
                    frames = [try Codec.weightsHeader(job: jobID, step: UInt64(round.step),
                                                      parameterCount: limits.parameterCount!,
                                                      changeFrom: base.map { UInt64($0) }),
                              try message.share()]
                }
            }
            let slot = table[member].resultRegion == nil ? nil : round.claimSlot(for: attempt)
            let assignment = try Codec.assignment(job: jobID, step: UInt64(round.step), worker: table[member].id,
                                                  epoch: UInt64(round.epoch), batch: UInt64(round.batchIndex),
                                                  attempt: attempt, ranges: ranges, resultSlot: slot,
                                                  inParts: settings.overlap)
            let delivered = (frames.isEmpty || send(to: member, frames, round)) && send(to: member, assignment, round)
            if delivered {
                table[member].weightsStep = round.step
                table[member].state = .assigned
            }
            // Not delivered: the member is lost and its ranges wait again; the step's loop hands them out next.
        }
    }

    /// Waits (after `onStarved`) while fewer than `minimumWorkers` are active; throws when none come in time.
    private func ensureEnoughWorkers(_ round: StepRound?) throws {
        guard table.active.count < settings.minimumWorkers else { return }
        let have = table.active.count
        try onStarved?()
        log("\(have) of the \(settings.minimumWorkers) workers needed (--min-workers) are left; waiting up to "
            + "\(Seconds(settings.rejoinTimeout)) for workers to join at \(endpoint)")
        let deadline = clock.now + settings.rejoinTimeout
        while table.active.count < settings.minimumWorkers {
            guard clock.now < deadline else {
                let lost = table.lost.map { $0.label }.joined(separator: ", ")
                throw ClusterError("no workers rejoined within --rejoin-timeout (\(Seconds(settings.rejoinTimeout)))"
                    + "\(round.map { " at step \($0.step)" } ?? ""); lost: \(lost.isEmpty ? "none" : lost)")
            }
            try pump(round, timeout: .milliseconds(200))
        }
    }
}
