import Engine
import Foundation
import Wire

/// The sharded layout's messages at a worker: the coordinator's list, orders and whole state, and the peers' parts
/// and means (`ShardedWorker` does the work).
extension WorkerNode {
    /// Where each part of this worker's results goes: to its owner, or into this worker's own sums when it owns it;
    /// to the coordinator (`toCoordinator`) while no layout names owners (the star, in parts).
    func route(to sharded: ShardedWorker, _ joined: Joined, toCoordinator: @escaping ([Message]) throws -> Void)
        -> (Int, [Message]) throws -> Void {
        let limits = joined.limits, me = joined.workerID
        return { [unowned sharded] part, frames in
            // No layout (the star, in parts), or the coordinator's own share.
            guard let owner = sharded.owner(of: part), owner != PeerList.coordinator else { return try toCoordinator(frames) }
            if owner != me {
                try sharded.peers.send(frames, to: owner)
                return
            }
            // Copied: the result's memory is reused once libzmq lets go of it, and this holds it until summed.
            let envelope = try Codec.decode(frames.map { frame in try frame.withUnsafeBytes { try Message(copying: $0) } },
                                            limits: limits)
            if case .gradientPart(let attempt, let array, let arrays, let first, let values) = envelope.payload {
                try sharded.contribution(me, step: envelope.header.step, attempt: attempt, array: array, arrays: arrays,
                                         first: first, values: values)
            }
        }
    }

    /// Reads what the peers sent: parts of contributions for the parts this worker owns, and means. A message that
    /// fails its checks, or that comes from no listed peer, is dropped with one line.
    func receivePeers(_ sharded: ShardedWorker, _ joined: Joined) throws {
        while let received = try sharded.peers.router.receive(maximumFrames: Codec.maximumFrames + 1) {
            guard case .frames(let all) = received, all.count >= 2 else { continue }
            try peerMessage(Array(all.dropFirst()), sharded, joined)
        }
    }

    /// Messages that came from a peer before this worker's own list named it (the coordinator's lists reach the
    /// members one by one): kept, a bounded number, until the next list, then read again.
    func readHeld(_ sharded: ShardedWorker, _ joined: Joined) throws {
        for frames in sharded.takeHeld() { try peerMessage(frames, sharded, joined) }
    }

    private func peerMessage(_ frames: [Message], _ sharded: ShardedWorker, _ joined: Joined) throws {
        let envelope: Envelope
        do {
            envelope = try Codec.decode(frames, limits: joined.limits)
        } catch {
            log("\(settings.name): dropped a malformed message from a peer: \(error)")
            return
        }
        guard let worker = sharded.peers.sender(of: frames, header: envelope.header.worker) else {
            if !sharded.hold(frames, step: envelope.header.step) {
                log("\(settings.name): dropped a message from w\(envelope.header.worker), which is not a listed peer "
                    + "(or not with its key)")
            }
            return
        }
        let step = envelope.header.step
        switch envelope.payload {
        case .gradientPart(let attempt, let array, let arrays, let first, let values):
            try sharded.contribution(worker, step: step, attempt: attempt, array: array, arrays: arrays,
                                     first: first, values: values)
        case .meanPart(let mean):
            // From the part's owner in this worker's list; a mean from an owner listed later is read again then.
            guard sharded.owner(of: sharded.parts.part(startingAt: mean.range.lowerBound)) == worker else {
                _ = sharded.hold(frames, step: step)
                return
            }
            try sharded.mean(mean, step: step)
        default:
            log("\(settings.name): dropped a \(envelope.header.type) message from peer w\(worker)")
        }
    }

    /// The coordinator's messages of the sharded layout; false for any other message.
    func dispatchSharded(_ envelope: Envelope, _ sharded: ShardedWorker, _ joined: Joined, session: WorkerSession,
                         deferred: inout [AssignmentRequest]) throws -> Bool {
        let step = envelope.header.step
        switch envelope.payload {
        case .peers(let list):
            try sharded.follow(list)
            try readHeld(sharded, joined)
        case .sumOrder(let order):
            try sharded.ordered(order, step: step)
        case .meanPart(let mean):
            // The mean of a part the coordinator owns: its list, sent before, says so.
            let part = sharded.parts.part(startingAt: mean.range.lowerBound)
            guard sharded.owner(of: part) == PeerList.coordinator else {
                log("\(settings.name): dropped the coordinator's mean of part \(part), which its list gives "
                    + (sharded.owner(of: part).map { "w\($0)" } ?? "no owner"))
                return true
            }
            try sharded.mean(mean, step: step)
        case .spotCheck(let check):
            try session.answer(check, step: step)
        case .weightsWithState(let frame, let buffers, let steps, let replicaKey):
            try sharded.restart(step: step, frame: frame, stateBuffers: buffers, optimizerSteps: steps,
                                replicaKey: replicaKey)
        case .weightsFromMeans(let replicaKey):
            // Made from the last step's means, which may still be coming.
            try sharded.begins(step: step, replicaKey: replicaKey)
        case .assignment(let epoch, let batch, let attempt, let ranges, let resultSlot, let inParts, let packsFloats,
                         let traced)
            where session.weights.step.map({ $0 < step }) ?? false:
            deferred.append(AssignmentRequest(step: step, epoch: epoch, batch: batch, attempt: attempt, ranges: ranges,
                                              resultSlot: resultSlot, inParts: inParts, packsFloats: packsFloats,
                                              traced: traced, received: SpanRecorder.now()))
        default:
            return false
        }
        return true
    }
}
