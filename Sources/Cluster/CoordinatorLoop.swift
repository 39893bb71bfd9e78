import Engine
import Foundation
import Wire

/// The coordinator's one poll loop: every message from a worker, every heartbeat and every loss goes through here
/// and changes the member table (and the step's round) in one place.
extension Coordinator {
    // MARK: The poll loop

    /// Receives and handles messages for up to `timeout`, sends heartbeats when due, and declares lost the
    /// workers that are silent, gone or too slow. Every member event goes through here.
    func pump(_ round: StepRound?, timeout: Duration) throws {
        if let signal = Interruption.signal { throw Interrupted(signal: signal, checkpoint: nil) }
        let deadline = clock.now + timeout
        repeat {
            let slice = min(deadline - clock.now, settings.heartbeat / 2)
            if slice > .zero, try Socket.poll([router], timeout: slice)[0] {
                while let received = try router.receive(maximumFrames: Codec.maximumFrames + 1) {
                    try handle(received, round)
                }
            }
            try keepAlive(round)
            // Back to the step as soon as it is done or has micro-shards to hand out again (a worker was lost).
            if let round, round.isComplete || round.waitingCount > 0 { return }
        } while clock.now < deadline
    }

    private func handle(_ received: Socket.Received, _ round: StepRound?) throws {
        let frames: [Message]
        switch received {
        case .tooManyFrames(let first, let total):
            let identity = first.first?.bytes ?? []
            if !guardian.isCutOff(identity) { refused(identity, .tooManyFrames(total), round) }
            return
        case .frames(let all):
            frames = all
        }
        let identity = frames[0].bytes
        guard !guardian.isCutOff(identity) else { return }
        let envelope: Envelope
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
            refused(identity, error, round)
            return
        }
        if case .hello(let fields) = envelope.payload {
            // With keys, the ZAP handler named the connection's user by its public key.
            let key = settings.keys == nil ? nil : frames[frames.count - 1].property("User-Id").map { ", key \($0.prefix(12))…" }
            try hello(identity, fields, round, key: key ?? "")
            return
        }
        guard let index = table.index(of: identity) else {
            // Not a hello and not a member: a worker this coordinator has never seen (it restarted). Ask it in.
            try? router.send([Message(copying: identity)] + Codec.shutdown(
                "this coordinator does not know this worker; join again", job: jobID, disposition: .rejoin), wait: false)
            return
        }
        table[index].lastHeard = clock.now
        if table[index].state == .lost {
            if !table[index].toldToRejoin {
                table[index].toldToRejoin = true
                try? router.send([Message(copying: identity)] + Codec.shutdown(
                    "\(table[index].label) was declared lost; join again", job: jobID, disposition: .rejoin), wait: false)
            }
            return
        }
        switch envelope.payload {
        case .ready(let hasData, let region, let readsWeights, let products):
            try ready(index, hasData: hasData, region: region, readsWeights: readsWeights, products: products)
        case .gradient(let frame):
            result(index, envelope.header, frame, round)
        case .gradientPart(let attempt, let array, let arrays, let first, let values):
            try part(index, envelope.header, attempt: attempt, array: array, arrays: arrays, first: first, values, round)
        case .error(let text):
            lose(index, .reportedError(String(text.prefix(300))), round)
        default:
            break  // heartbeats only refresh lastHeard
        }
    }

    private func hello(_ identity: [UInt8], _ fields: [String: String], _ round: StepRound?, key: String) throws {
        if let old = table.index(of: identity), table[old].state != .lost { lose(old, .restarted, round) }
        guard let index = table.admit(identity: identity, fields: fields, now: clock.now,
                                      inUse: { round?.references($0) ?? false }) else {
            try? router.send([Message(copying: identity)] + Codec.error(
                "this coordinator already holds \(MemberTable.capacity) workers; try again later", job: jobID, step: 0,
                worker: 0), wait: false)
            return
        }
        let member = table[index]
        let sent = send(to: index, try Codec.job(announcement.bytes, job: jobID, worker: member.id,
                                                  parameterCount: limits.parameterCount!,
                                                  maximumMicroShards: GradientSum.maximumMicroShards,
                                                  exact: job.options.reduction == .exact, heartbeat: settings.heartbeat,
                                                  weightsRegion: weightsRegion?.offer))
        if sent { log("\(member.label) joined with \(member.cores) cores, build \(member.build), \(kernels(of: member))\(key)") }
    }

    /// What computes a member's products for this job: "oneDNN avx512_core_bf16" or "BLAS Cooperlake".
    private func kernels(of member: Member) -> String {
        job.options.library.kernels(oneDNN: member.oneDNN, blas: member.blas)
    }

    private func ready(_ index: Int, hasData: Bool, region: RegionOffer?, readsWeights: Bool,
                       products: UInt64) throws {
        guard table[index].state == .joining else { return }
        let member = table[index]
        var why: String?
        if job.options.reduction == .exact, job.options.library == .openBLAS,
           member.blas.lowercased() != BLASKernel.loaded.lowercased() {
            why = "exact mode needs every worker on the coordinator's BLAS kernel \(BLASKernel.loaded), and "
                + "\(member.label) runs \(member.blas); start it with OPENBLAS_CORETYPE=\(BLASKernel.loaded) if its CPU "
                + "can run that kernel, or use --reduction fast"
        } else if job.options.reduction == .fast, products != 0 {
            why = "\(member.label) sent a products fingerprint in fast mode (\(products)), which no worker of this build does"
        } else if job.options.reduction == .exact, products != productsFingerprint {
            // Names can agree while bits differ (a kernel's blocking may follow the CPU's caches): the bits decide.
            why = "exact mode needs every worker's matrix products to match the coordinator's bit for bit, and "
                + "\(member.label)'s differ (it runs \(kernels(of: member)), the coordinator "
                + "\(job.options.library.kernels)); run it on a CPU like the coordinator's, "
                + "or use --reduction fast"
        }
        if let why {
            try? router.send([Message(copying: member.identity)] + Codec.shutdown(why, job: jobID, disposition: .failed),
                             wait: false)
            lose(index, .refused(why), nil)
            return
        }
        guard hasData else {
            log("\(member.label) has no matching copy of the data; sending \(training.count) samples")
            let values = training.features + training.targets
            _ = send(to: index, [try Codec.dataHeader(job: jobID, samples: training.count,
                                                      featureWidth: training.featureWidth,
                                                      targetWidth: training.targetWidth),
                                 try values.withUnsafeBytes { try Message(copying: $0) }])
            return
        }
        table[index].state = .ready
        // In parts, every result and weight goes as a message, which is what makes the overlap.
        table[index].resultRegion = settings.overlap ? nil : mapRegion(region, of: member)
        table[index].readsWeightsRegion = readsWeights && weightsRegion != nil && !settings.overlap
        if settings.verbose && (table[index].resultRegion != nil || table[index].readsWeightsRegion) {
            let what = [table[index].readsWeightsRegion ? "weights" : nil, table[index].resultRegion != nil ? "results" : nil]
            log("\(member.label) shares memory with this coordinator: \(what.compactMap { $0 }.joined(separator: " and "))")
        }
        if started {
            log("\(member.label) is ready and takes micro-shards from the next assignment on")
        } else {
            let count = table.active.count
            log("\(member.label) ready (" + (count <= settings.workers ? "\(count)/\(settings.workers))"
                : "\(count) ready, \(settings.workers) needed to start; all take micro-shards)"))
        }
    }

    /// A worker's result region, when it offered one and shares this machine (an ipc endpoint) and the region
    /// checks out; otherwise its results come as messages.
    private func mapRegion(_ offer: RegionOffer?, of member: Member) -> SharedRegion? {
        guard let offer, EndpointReach.sharesMemory(endpoint) else { return nil }
        let bytes = limits.parameterCount! * GradientSum.bytesPerParameter(job.options.reduction)
        do {
            return try SharedRegion(mapping: offer, slots: SharedRegion.resultSlots, slotBytes: bytes)
        } catch {
            log("\(member.label) offered a result region that cannot be used (\(error)); its results come as messages")
            return nil
        }
    }

    private func result(_ index: Int, _ header: Header, _ received: GradientFrame, _ round: StepRound?) {
        let member = table[index]
        var frame = received
        if let slot = received.regionSlot {
            guard let region = member.resultRegion else {
                lose(index, .mismatched("a result in slot \(slot) of a result region it has not offered"), round)
                return
            }
            frame = received.inRegion(region)
        }
        guard let round, header.step == UInt64(round.step) else {
            if settings.verbose { log("dropped \(member.label)'s result for step \(header.step): not the current step") }
            return
        }
        guard let assignment = round.assignment(frame.attempt, of: index) else {
            if settings.verbose {
                log("dropped \(member.label)'s late result (attempt \(frame.attempt)) for step \(round.step): its "
                    + "micro-shards were given to another worker")
            }
            return
        }
        guard frame.regionSlot == assignment.resultSlot || frame.regionSlot == nil else {
            lose(index, .mismatched("a result in slot \(frame.regionSlot!) of its region, where the assignment named "
                + (assignment.resultSlot.map { "slot \($0)" } ?? "none")), round)
            return
        }
        guard header.worker == member.id, frame.samples == assignment.samples,
              frame.exact == (job.options.reduction == .exact) else {
            lose(index, .mismatched("\(frame.samples) samples, \(frame.exact ? "exact" : "fast"), for micro-shards "
                + "\(describe(assignment.ranges)) of \(assignment.samples) samples"), round)
            return
        }
        let microShards = assignment.ranges.reduce(0) { $0 + $1.count }
        guard frame.inParts == (round.parts != nil) else {
            lose(index, .mismatched(frame.inParts ? "a result in parts where its values were asked for in the message"
                : "a result's values in its message where they were asked for in parts"), round)
            return
        }
        guard !frame.inParts || round.parts!.hasEverything(of: frame.attempt) else {
            lose(index, .mismatched("a result whose parts did not all come before it"), round)
            return
        }
        guard frame.floatShards == 0 || frame.floatShards == microShards else {
            lose(index, .mismatched("\(frame.floatShards) micro-shards' Floats for micro-shards "
                + "\(describe(assignment.ranges))"), round)
            return
        }
        if let wrong = ResultCheck.implausibility(frame, microShards: microShards, samples: assignment.samples) {
            lose(index, .mismatched(wrong), round)
            return
        }
        round.complete(frame.attempt, with: frame)
        let seconds = max((clock.now - assignment.sentAt) / .seconds(1), 1e-6)
        let speed = Double(assignment.ranges.reduce(0) { $0 + $1.count }) / seconds
        table[index].sharedSamples += frame.samples
        table[index].sharedSeconds += seconds
        table[index].speed = member.speed == 1.0 ? speed : 0.7 * member.speed + 0.3 * speed
        if !round.holds(index) { table[index].state = .ready }
    }

    /// Heartbeats out; silent, exited and too-slow workers lost.
    private func keepAlive(_ round: StepRound?) throws {
        let now = clock.now
        loseExitedProcesses(round)
        // A member computing an assignment may be silent for long: it beats between micro-shards, and a busy machine
        // or a large model stretches that. Its liveness is then its connection's: libzmq's I/O thread answers ZMTP
        // pings while the worker computes, and drops the connection after `silence` when the process is stopped, gone
        // or cut off, so the next send finds it unroutable (`send(to:)`). The same holds for one still preparing its
        // data (a large built-in data set takes seconds to generate). An idle member has nothing to do but beat.
        for index in table.members.indices where table[index].state == .ready && round?.holds(index) != true {
            let silent = now - table[index].lastHeard
            if silent > settings.silence { lose(index, .silent(silent), round) }
        }
        if let round {
            for (_, assignment) in round.outstanding where now - assignment.sentAt > settings.workerTimeout {
                lose(assignment.member, .tooSlow(settings.workerTimeout), round)
            }
        }
        guard now - lastHeartbeat >= settings.heartbeat else { return }
        lastHeartbeat = now
        heartbeatRounds += 1
        // A member preparing its data reads nothing until it is ready: beats queued for it would fill its receive
        // queue, and then libzmq stops reading its connection — its ZMTP pings' answers included — and drops it
        // (libzmq 4.3.4 may then abort the worker). One round in three still finds a connection that is gone.
        for index in table.members.indices where table[index].state != .lost
            && (table[index].state != .joining || heartbeatRounds % 3 == 0) {
            _ = send(to: index, try Codec.heartbeat(job: jobID, step: UInt64(round?.step ?? 0), worker: table[index].id),
                     round)
        }
    }

    /// Declares lost the members whose processes (started by this coordinator) have exited, with how they ended.
    private func loseExitedProcesses(_ round: StepRound?) {
        while let (pid, ending) = processCheck?() {
            if let index = table.members.indices.first(where: { table[$0].pid == String(pid) && table[$0].state != .lost }) {
                lose(index, .exited(ending), round)
            }
        }
    }

    /// Declares a member lost and takes back its outstanding micro-shards, naming both.
    func lose(_ index: Int, _ reason: LossReason, _ round: StepRound?) {
        // A connection that is gone is most often a process that has exited: say so when this coordinator knows.
        if case .unreachable = reason { loseExitedProcesses(round) }
        guard table[index].state != .lost else { return }
        table[index].state = .lost
        // Its shared memory is let go (results of this step still held keep their own hold on the mapping), so
        // workers that come and go do not pile up mappings.
        table[index].resultRegion = nil
        table[index].readsWeightsRegion = false
        var line = "\(table[index].label) lost: \(reason)"
        var released: [UInt64] = []
        let left = table.active.count
        if let round {
            let (moved, attempts) = round.release(index)
            released = attempts
            if !moved.isEmpty {
                line += "; step \(round.step) (epoch \(round.epoch), batch \(round.batchIndex)): micro-shards "
                    + "\(describe(moved)) " + (left == 0 ? "wait for a worker" : "go to the other workers")
            }
        }
        // Always said, with its reason, whether or not it had become active: a loss is an event.
        log(line + (left == 0 ? " (no workers left)" : " (\(left) left)"))
        forgetParts(of: released, valuesRefused: reason.refusesItsValues, by: table[index].label)
    }

    // MARK: Sending and refusing

    /// Sends without blocking; a worker that is gone or has stopped reading is lost (and false returned).
    @discardableResult
    func send(to index: Int, _ frames: [Message], _ round: StepRound? = nil) -> Bool {
        do {
            try router.send([Message(copying: table[index].identity)] + frames, wait: false)
            return true
        } catch let error as ZMQError where error.unroutable {
            // libzmq drops a connection silent for `silence`: say so, rather than only that it is gone.
            let silent = clock.now - table[index].lastHeard
            lose(index, silent > settings.silence ? .silent(silent) : .unreachable, round)
        } catch let error as ZMQError where error.wouldBlock {
            lose(index, .overloaded, round)
        } catch {
            lose(index, .unreachable, round)
        }
        return false
    }

    private func refused(_ identity: [UInt8], _ error: WireError, _ round: StepRound?) {
        let index = table.index(of: identity)
        let name = index.map { table[$0].label } ?? PeerGuard.name(identity)
        if guardian.refused(identity, name: name, error), let index {
            lose(index, .malformed("\(error)"), round)
        }
    }
}
