import Engine
import Foundation
import Platform
import Wire

/// The coordinator's one poll loop, the shell around `CoordinatorCore`: it receives and decodes, feeds the core
/// each event with the time, and carries out the actions the core returns.
extension Coordinator {
    // MARK: The poll loop

    /// Receives and handles messages for up to `timeout`, and lets the core see the time pass (heartbeats out; silent,
    /// exited and too-slow workers lost). Returns early once the step is done, has micro-shards to hand out again, or
    /// has a part for the trainer.
    func pump(timeout: Duration) throws {
        if let signal = Interruption.signal { throw Interrupted(signal: signal, checkpoint: nil) }
        let deadline = clock.now + timeout
        repeat {
            let slice = min(deadline - clock.now, settings.heartbeat / 2)
            if slice > .zero, try Socket.poll([router], timeout: slice)[0] {
                while let received = try router.receive(maximumFrames: Codec.maximumFrames + 1) {
                    try handle(received)
                    // A long run of messages (a large model's parts, unpacked and updated as they come) must not
                    // keep the heartbeats back.
                    try perform(core.heartbeats(at: clock.now))
                    // A part the trainer can update now: it does, while later messages wait in the socket.
                    if hasPartEvent { break }
                }
            }
            try loseExitedProcesses()
            try perform(core.tick(at: clock.now))
            // A sharded step's round is complete once its order is out; then only the means are awaited.
            if let round = core.round, (round.isComplete && !awaitingMeans) || round.waitingCount > 0 || hasPartEvent {
                return
            }
        } while clock.now < deadline
    }

    private func handle(_ received: Socket.Received) throws {
        let frames: [Message]
        switch received {
        case .tooManyFrames(let first, let total):
            let identity = first.first?.bytes ?? []
            if !guardian.isCutOff(identity) { try refused(identity, .tooManyFrames(total)) }
            return
        case .frames(let all):
            frames = all
        }
        let identity = frames[0].bytes
        guard !guardian.isCutOff(identity) else { return }
        var envelope: Envelope
        do {
            envelope = try Codec.decode(Array(frames.dropFirst()), limits: limits)
        } catch {
            if case .wrongJob = error {
                // A worker of an earlier coordinator on this endpoint: it must join this one.
                try? router.send([Message(copying: identity)] + Codec.shutdown(
                    "this coordinator runs another job; join again", job: jobID, disposition: .rejoin), wait: false)
                return
            }
            if case .version = error {
                try? router.send([Message(copying: identity)] + Codec.error("\(error)", job: jobID, step: 0, worker: 0),
                                 wait: false)
            }
            if Codec.type(of: Array(frames.dropFirst())) == .spans, let member = core.table.index(of: identity),
               core.table[member].isActive {
                // A member's timeline that does not decode costs it the trace, not a strike.
                timelineRefused(member, "\(error)")
                return
            }
            try refused(identity, error)
            return
        }
        var context = CoordinatorCore.Received()
        if case .hello(let fields) = envelope.payload {
            let userID = frames[frames.count - 1].property("User-Id")
            // With keys, the ZAP handler named the connection's user by its public key.
            if settings.keys != nil { context.key = userID.map { ", key \($0.prefix(12))…" } ?? "" }
            let address = frames[frames.count - 1].property("Peer-Address")
            envelope = Envelope(header: envelope.header,
                                payload: .hello(fields: PeerFields.checked(fields, address: address, key: userID)))
        }
        if case .meanPart(let mean) = envelope.payload {
            try meanArrived(mean, step: Int(envelope.header.step), from: identity)
            return
        }
        if case .spotValues(let answer) = envelope.payload {
            try spotValuesArrived(answer, step: Int(envelope.header.step), from: identity)
            return
        }
        if case .spans(let report) = envelope.payload {
            timelineArrived(report, step: Int(envelope.header.step), from: identity)
            return
        }
        if case .refuted(let worker, let attempt, let part, let reason) = envelope.payload {
            try refuted(worker: worker, attempt: attempt, part: part, reason: reason, step: Int(envelope.header.step),
                        from: identity)
            return
        }
        if case .hello = envelope.payload, settings.sharded, let keys = settings.keys {
            // Before its job (so before it is ready, and before any layout names its peers), a worker learns every key
            // this coordinator admits: its peer socket admits them from then on, and never refuses a peer for a list
            // that reached the peer first. (Public keys; only an admitted key's connection hears them.)
            let allowed = PeerList(peers: [], owners: [], allowed: Array(keys.authorized))
            try? router.send([Message(copying: identity)] + Codec.peers(allowed, job: jobID, step: 0), wait: false)
        }
        if case .gradient = envelope.payload { awaitReplicaChecks() }
        try perform(core.receive(inMemory(envelope, from: identity, &context), from: identity, at: clock.now, context))
    }

    /// `envelope` with what this process maps for its sender: a ready member's offered result region is mapped, and a
    /// result in a slot of it reads its values there.
    private func inMemory(_ envelope: Envelope, from identity: [UInt8], _ context: inout CoordinatorCore.Received)
        -> Envelope {
        guard let index = core.table.index(of: identity), core.table[index].state != .lost else { return envelope }
        switch envelope.payload {
        case .ready(true, let offer?, _, _) where core.table[index].state == .joining && !settings.overlap:
            if let region = mapRegion(offer, of: core.table[index]) {
                resultRegions[index] = region
                context.mappedResultRegion = true
            }
        case .gradient(let frame) where frame.regionSlot != nil:
            if let region = resultRegions[index] {
                return Envelope(header: envelope.header, payload: .gradient(frame.inRegion(region)))
            }
        default:
            break
        }
        return envelope
    }

    /// A worker's result region, when it offered one and shares this machine (an ipc endpoint) and the region
    /// checks out; otherwise its results come as messages.
    private func mapRegion(_ offer: RegionOffer, of member: Member) -> SharedRegion? {
        guard EndpointReach.sharesMemory(endpoint) else { return nil }
        let bytes = limits.parameterCount! * GradientSum.bytesPerParameter(job.options.reduction)
        do {
            return try SharedRegion(mapping: offer, slots: SharedRegion.resultSlots, slotBytes: bytes)
        } catch {
            log("\(member.label) offered a result region that cannot be used (\(error)); its results come as messages")
            return nil
        }
    }

    /// Declares lost the members whose processes (started by this coordinator) have exited, with how they ended.
    func loseExitedProcesses() throws {
        while let (pid, ending) = processCheck?() { try perform(core.exited(pid: pid, ending: ending)) }
    }

    // MARK: Carrying out the core's actions

    func perform(_ actions: [CoordinatorAction]) throws {
        for action in actions {
            switch action {
            case .log(let line):
                log(line)
            case .send(let member, let outgoing, let then):
                guard core.table[member].state != .lost else { continue }
                if try deliver(encode(outgoing, worker: core.table[member].id), to: member), let then { log(then) }
            case .reply(let identity, let outgoing):
                try? router.send([Message(copying: identity)] + encode(outgoing, worker: 0), wait: false)
            case .lost(let member, let attempts, let valuesRefused, let label):
                // Its shared memory is let go (results of this step still held keep their own hold on the mapping),
                // so workers that come and go do not pile up mappings.
                resultRegions[member] = nil
                forgetParts(of: attempts, valuesRefused: valuesRefused, by: label)
                try shardedLoss(member, label: label)
            case .takePart(let member, let order):
                try keepPart(member, order)
            }
        }
    }

    /// Sends without blocking; a member that is gone or has stopped reading is lost (and false returned).
    func deliver(_ frames: [Message], to member: Int) throws -> Bool {
        let failure: CoordinatorCore.SendFailure
        do {
            try router.send([Message(copying: core.table[member].identity)] + frames, wait: false)
            return true
        } catch let error as ZMQError where error.unroutable {
            failure = .unroutable
        } catch let error as ZMQError where error.wouldBlock {
            failure = .queueFull
        } catch {
            failure = .other
        }
        // A connection that is gone is most often a process that has exited: say so when this coordinator knows.
        try loseExitedProcesses()
        try perform(core.sendFailed(member, failure, at: clock.now))
        return false
    }

    /// The frames of `outgoing` for worker `worker`.
    private func encode(_ outgoing: Outgoing, worker: UInt32) throws -> [Message] {
        let parameterCount = limits.parameterCount!
        switch outgoing {
        case .job:
            return try Codec.job(announcement.bytes, job: jobID, worker: worker, parameterCount: parameterCount,
                                 maximumMicroShards: GradientSum.maximumMicroShards,
                                 exact: job.options.reduction == .exact, heartbeat: settings.heartbeat,
                                 weightsRegion: weightsRegion?.offer)
        case .data:
            // One array for both (features that are mapped files are read here, once).
            var values = training.features.array
            values.append(contentsOf: training.targets)
            return [try Codec.dataHeader(job: jobID, samples: training.count, featureWidth: training.featureWidth,
                                         targetWidth: training.targetWidth),
                    try values.withUnsafeBytes { try Message(copying: $0) }]
        case .heartbeat(let step):
            return try Codec.heartbeat(job: jobID, step: UInt64(step), worker: worker)
        case .shutdown(let reason, let disposition):
            return try Codec.shutdown(reason, job: jobID, disposition: disposition)
        case .error(let text):
            return try Codec.error(text, job: jobID, step: 0, worker: 0)
        case .weights(let step, .withState):
            return try weightsWithState(step: step, worker: worker)
        case .weights(let step, let form):
            return try weightsFrames(step: step, form, worker: worker)
        case .peers(let list):
            return try Codec.peers(list, job: jobID, step: UInt64(core.round?.step ?? 0))
        case .sumOrder(let order, let step):
            return try Codec.sumOrder(order, job: jobID, step: UInt64(step))
        case .spotCheck(let check, let step):
            return try Codec.spotCheck(check, job: jobID, step: UInt64(step))
        case .weightsPart(let step, let part):
            guard let made = partStep else { return [] }
            let range = made.parts.parts[part]
            return [try Codec.weightsPartHeader(job: jobID, step: UInt64(step), part: range),
                    try Message(sharing: made.next, byteCount: 4 * range.count, from: 4 * range.lowerBound)]
        case .assignment(let order):
            return try Codec.assignment(job: jobID, step: UInt64(order.step), worker: worker,
                                        epoch: UInt64(order.epoch), batch: UInt64(order.batch),
                                        attempt: order.attempt, ranges: order.ranges, resultSlot: order.resultSlot,
                                        inParts: order.inParts, packsFloats: order.inParts && packsFloats,
                                        traced: traces != nil)
        }
    }

    private func weightsFrames(step: Int, _ form: WeightsForm, worker: UInt32) throws -> [Message] {
        let count = limits.parameterCount!
        switch form {
        case .fromParts:
            return [try Codec.weightsHeader(job: jobID, step: UInt64(step), parameterCount: count, fromParts: true),
                    try Message(copying: [UInt8]())]
        case .inRegion:
            return [try Codec.weightsHeader(job: jobID, step: UInt64(step), parameterCount: count, inRegion: true),
                    try Message(copying: [UInt8]())]
        case .whole:
            return [try Codec.weightsHeader(job: jobID, step: UInt64(step), parameterCount: count),
                    try stepWeightsMessage().share()]
        case .fromMeans:
            return [try Codec.shardedWeightsHeader(job: jobID, step: UInt64(step), parameterCount: count, stateBuffers: nil,
                                                   replicaKey: replicaKey(of: worker)),
                    try Message(copying: [UInt8]())]
        case .withState:
            return try weightsWithState(step: step, worker: worker)
        }
    }

    private func refused(_ identity: [UInt8], _ error: WireError) throws {
        let index = core.table.index(of: identity)
        let name = index.map { core.label($0) } ?? PeerGuard.name(identity)
        if guardian.refused(identity, name: name, error), let index {
            try perform(core.lost(index, .malformed("\(error)")))
        }
    }
}
