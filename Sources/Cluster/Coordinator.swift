import Engine
import Foundation
import Wire

/// The distributed side of training: a table of workers (joining → ready → assigned → lost) driven by one poll
/// loop, with heartbeats both ways. Each step hands the batch's micro-shards out in proportion to measured speed;
/// a worker lost mid-step has its outstanding ranges handed to the survivors in the same step, and a worker may
/// join at any time and takes work from the next assignment on. Exact sums are order-free, so none of this changes
/// a bit of the result.
///
/// One thread owns the socket: the trainer's.
public final class Coordinator: GradientSource {
    public struct Settings: Sendable {
        public var endpoint: String
        /// Workers that must have joined before step 1.
        public var workers: Int
        /// Below this many workers the run checkpoints and waits `rejoinTimeout` for more.
        public var minimumWorkers = 1
        public var heartbeat: Duration = .seconds(1)
        /// How long to wait for `workers` to join.
        public var joinTimeout: Duration = .seconds(120)
        /// How long a worker may take to return an assignment before it is declared lost.
        public var workerTimeout: Duration = .seconds(30)
        /// How long to wait for workers when fewer than `minimumWorkers` are left.
        public var rejoinTimeout: Duration = .seconds(300)
        /// Log every step's timings and shares.
        public var verbose = false

        public init(endpoint: String, workers: Int) {
            self.endpoint = endpoint
            self.workers = workers
        }

        /// A worker silent this long is lost.
        public var silence: Duration { heartbeat * 3 }
    }

    /// Where the last step's time went, in seconds.
    public struct StepTimings: Sendable {
        public var send = 0.0, wait = 0.0, reduce = 0.0
    }

    public let settings: Settings
    public private(set) var lastTimings = StepTimings()
    /// Checked while waiting: the pid and ending of a worker process this coordinator started that has exited.
    public var processCheck: (() -> (pid: Int32, ending: String)?)?
    /// Called once when fewer than `minimumWorkers` are left, before waiting for more (writes a checkpoint).
    public var onStarved: (() throws -> Void)?

    var table = MemberTable()
    private let job: Job
    private let training: Dataset
    private let jobID: UInt64
    private let announcement: JobAnnouncement
    private let limits: Limits
    private let context: Context
    private let router: Socket
    private let guardian: PeerGuard
    private let log: (String) -> Void
    // Weight buffers handed to libzmq without copying; one is rewritten only when libzmq has let go of it.
    private var payloads: [SharedPayload]
    private var lastHeartbeat: ContinuousClock.Instant
    private var started = false
    private let clock = ContinuousClock()

    public init(job: Job, training: Dataset, settings: Settings, log: @escaping (String) -> Void) throws {
        self.job = job
        self.training = training
        self.settings = settings
        self.log = log
        jobID = UInt64.random(in: 1 ... .max)
        announcement = JobAnnouncement(job: job, samples: training.count, fingerprint: training.fingerprint,
                                       blas: BLASKernel.loaded)
        let count = job.model.layout.parameterCount
        var limits = Limits(parameterCount: count, job: jobID)
        limits.maximumJobBytes = max(limits.maximumJobBytes, announcement.bytes.count + 1024)
        self.limits = limits
        payloads = [SharedPayload(byteCount: 4 * count), SharedPayload(byteCount: 4 * count)]
        // Two I/O threads: two workers' megabyte results are read from their connections side by side.
        context = try Context(ioThreads: 2)
        router = try Socket(context, .router)
        try SocketTuning.coordinator(router, maximumMessageBytes: limits.maximumFrameBytes,
                                     heartbeat: settings.heartbeat, silence: settings.silence)
        do {
            try router.bind(settings.endpoint)
        } catch {
            throw ClusterError("cannot listen on \(settings.endpoint): \(error); pick a free port or address")
        }
        guardian = PeerGuard(limit: 5, log: log)
        lastHeartbeat = clock.now
    }

    /// The endpoint workers connect to (a `tcp://…:*` bind resolved to its port).
    public var endpoint: String { router.lastEndpoint }

    /// The workers, lost ones included.
    public var members: [Member] { table.members }

    // MARK: Joining

    /// Waits until `settings.workers` workers have joined and hold the data.
    public func waitForWorkers() throws {
        let deadline = clock.now + settings.joinTimeout
        while table.active.count < settings.workers {
            guard clock.now < deadline else {
                let joined = table.active.map { table[$0].label }.joined(separator: ", ")
                throw ClusterError("only \(table.active.count) of \(settings.workers) workers joined within "
                    + "\(Seconds(settings.joinTimeout))\(joined.isEmpty ? "" : ": \(joined)"); start more with "
                    + "`shardtrain worker --connect \(endpoint)` or raise --join-timeout")
            }
            try pump(nil, timeout: min(deadline - clock.now, .milliseconds(200)))
        }
        started = true
    }

    // MARK: A step

    public func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                           parameters: Buffer<Float>, into sum: GradientSum) throws {
        let begun = clock.now
        let round = StepRound(step: step, epoch: epoch, batchIndex: batchIndex, microShards: microShards,
                              batchSamples: batch.count, microShardSize: job.options.microShardSize)
        let payload = idlePayload()
        payload.bytes.copyMemory(from: parameters.pointer, byteCount: payload.byteCount)
        let weights = try Message(sharing: payload)
        try handOut(round, weights: weights)
        let sent = clock.now
        while !round.isComplete {
            try pump(round, timeout: settings.heartbeat / 4)
            if !round.waitingCount.isZero { try handOut(round, weights: weights) }
        }
        let gathered = clock.now
        for result in round.orderedResults {
            result.frame.withValues { bytes in
                sum.add(bytes: bytes, samples: result.frame.samples, correct: result.frame.correct,
                        lossWords: (result.frame.lossHigh, result.frame.lossLow), overflowed: result.frame.overflowed)
            }
        }
        let reduced = clock.now
        lastTimings = StepTimings(send: (sent - begun) / .seconds(1), wait: (gathered - sent) / .seconds(1),
                                  reduce: (reduced - gathered) / .seconds(1))
        if settings.verbose {
            var shares: [UInt32: Int] = [:]
            for r in round.results { shares[table[r.member].id, default: 0] += r.frame.samples }
            let text = shares.sorted { $0.key < $1.key }.map { "w\($0.key) \($0.value) samples" }.joined(separator: ", ")
            log(String(format: "step %d: send %.3f ms, wait %.3f ms, reduce %.3f ms; %@", step,
                       lastTimings.send * 1000, lastTimings.wait * 1000, lastTimings.reduce * 1000, text))
        }
    }

    /// A weight buffer libzmq no longer holds; a new one when a stalled peer still holds every one (rare: it is
    /// dropped within the silence limit, and its buffers come back).
    private func idlePayload() -> SharedPayload {
        if let free = payloads.first(where: \.isIdle) { return free }
        let fresh = SharedPayload(byteCount: payloads[0].byteCount)
        payloads.append(fresh)
        return fresh
    }

    /// Sends the round's waiting micro-shards to the active workers, after waiting for enough of them.
    private func handOut(_ round: StepRound, weights: Message) throws {
        try ensureEnoughWorkers(round)
        let active = table.active
        let now = clock.now
        for (member, attempt, ranges) in round.distribute(over: active, speeds: active.map { table[$0].speed }, now: now) {
            var frames: [Message] = []
            if table[member].weightsStep != round.step {
                frames = [try Codec.weightsHeader(job: jobID, step: UInt64(round.step), parameterCount: weights.count / 4),
                          try weights.share()]
            }
            let assignment = try Codec.assignment(job: jobID, step: UInt64(round.step), worker: table[member].id,
                                                  epoch: UInt64(round.epoch), batch: UInt64(round.batchIndex),
                                                  attempt: attempt, ranges: ranges)
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

    /// Tells every worker still known to stop (best effort: one that is gone is skipped).
    public func shutdown(reason: String = "training finished", disposition: Disposition = .finished) {
        for member in table.members where member.state != .lost {
            try? router.send([Message(copying: member.identity)]
                + Codec.shutdown(reason, job: jobID, disposition: disposition), wait: false)
        }
        // Closing waits up to a second for these to leave (LINGER is 0 otherwise, so a dead peer never holds it).
        try? SocketTuning.flushOnClose(router, within: .seconds(1))
    }

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
            if let round, round.isComplete { return }
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
            try hello(identity, fields, round)
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
        case .ready(let hasData):
            try ready(index, hasData: hasData)
        case .gradient(let frame):
            result(index, envelope.header, frame, round)
        case .error(let text):
            lose(index, .reportedError(String(text.prefix(300))), round)
        default:
            break  // heartbeats only refresh lastHeard
        }
    }

    private func hello(_ identity: [UInt8], _ fields: [String: String], _ round: StepRound?) throws {
        if let old = table.index(of: identity), table[old].state != .lost { lose(old, .restarted, round) }
        let index = table.admit(identity: identity, fields: fields, now: clock.now)
        let member = table[index]
        let sent = send(to: index, try Codec.job(announcement.bytes, job: jobID, worker: member.id,
                                                  parameterCount: limits.parameterCount!,
                                                  maximumMicroShards: GradientSum.maximumMicroShards,
                                                  exact: job.options.reduction == .exact, heartbeat: settings.heartbeat))
        if sent { log("\(member.label) joined with \(member.cores) cores, build \(member.build), BLAS \(member.blas)") }
    }

    private func ready(_ index: Int, hasData: Bool) throws {
        guard table[index].state == .joining else { return }
        let member = table[index]
        if job.options.reduction == .exact, member.blas.lowercased() != BLASKernel.loaded.lowercased() {
            let why = "exact mode needs every worker on the coordinator's BLAS kernel \(BLASKernel.loaded), and "
                + "\(member.label) runs \(member.blas); start it with OPENBLAS_CORETYPE=\(BLASKernel.loaded) if its CPU "
                + "can run that kernel, or use --reduction fast"
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
        if started {
            log("\(member.label) is ready and takes micro-shards from the next assignment on")
        } else {
            log("\(member.label) ready (\(table.active.count)/\(settings.workers))")
        }
    }

    private func result(_ index: Int, _ header: Header, _ frame: GradientFrame, _ round: StepRound?) {
        let member = table[index]
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
        guard header.worker == member.id, frame.samples == assignment.samples,
              frame.exact == (job.options.reduction == .exact) else {
            lose(index, .mismatched("\(frame.samples) samples, \(frame.exact ? "exact" : "fast"), for micro-shards "
                + "\(describe(assignment.ranges)) of \(assignment.samples) samples"), round)
            return
        }
        round.complete(frame.attempt, with: frame)
        let seconds = max((clock.now - assignment.sentAt) / .seconds(1), 1e-6)
        let speed = Double(assignment.ranges.reduce(0) { $0 + $1.count }) / seconds
        table[index].speed = member.speed == 1.0 ? speed : 0.7 * member.speed + 0.3 * speed
        if !round.holds(index) { table[index].state = .ready }
    }

    /// Heartbeats out; silent, exited and too-slow workers lost.
    private func keepAlive(_ round: StepRound?) throws {
        let now = clock.now
        if let (pid, ending) = processCheck?(),
           let index = table.members.indices.first(where: { table[$0].pid == String(pid) && table[$0].state != .lost }) {
            lose(index, .exited(ending), round)
        }
        for index in table.members.indices where table[index].state != .lost {
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
        for index in table.members.indices where table[index].state != .lost {
            _ = send(to: index, try Codec.heartbeat(job: jobID, step: UInt64(round?.step ?? 0), worker: table[index].id),
                     round)
        }
    }

    /// Declares a member lost and takes back its outstanding micro-shards, naming both.
    private func lose(_ index: Int, _ reason: LossReason, _ round: StepRound?) {
        guard table[index].state != .lost else { return }
        let wasActive = table[index].isActive
        table[index].state = .lost
        var line = "\(table[index].label) lost: \(reason)"
        if let round {
            let moved = round.release(index)
            if !moved.isEmpty {
                line += "; step \(round.step) (epoch \(round.epoch), batch \(round.batchIndex)): micro-shards "
                    + "\(describe(moved)) go to the other workers"
            }
        }
        if wasActive || settings.verbose { log(line + " (\(table.active.count) left)") }
    }

    // MARK: Sending and refusing

    /// Sends without blocking; a worker that is gone or has stopped reading is lost (and false returned).
    @discardableResult
    private func send(to index: Int, _ frames: [Message], _ round: StepRound? = nil) -> Bool {
        do {
            try router.send([Message(copying: table[index].identity)] + frames, wait: false)
            return true
        } catch let error as ZMQError where error.unroutable {
            lose(index, .unreachable, round)
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

private extension Int {
    var isZero: Bool { self == 0 }
}
