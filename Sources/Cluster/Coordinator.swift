import Engine
import Foundation
import Jobs
import Platform
import Wire

/// The distributed side of training: a table of workers (joining → ready → assigned → lost) driven by one poll
/// loop, with heartbeats both ways. Each step hands the batch's micro-shards out in proportion to measured speed;
/// a worker lost mid-step has its outstanding ranges handed to the survivors in the same step, and a worker may
/// join at any time and takes work from the next assignment on. Exact sums are order-free, so none of this changes
/// a bit of the result.
///
/// One thread owns the socket: the trainer's.
package final class Coordinator {
    package struct Settings: Sendable {
        package var endpoint: String
        /// Workers that must have joined before step 1.
        package var workers: Int
        /// Below this many workers the run checkpoints and waits `rejoinTimeout` for more.
        package var minimumWorkers = 1
        package var heartbeat: Duration = .seconds(1)
        /// How long to wait for `workers` to join.
        package var joinTimeout: Duration = .seconds(120)
        /// How long a worker may take to return an assignment before it is declared lost.
        package var workerTimeout: Duration = .seconds(30)
        /// How long to wait for workers when fewer than `minimumWorkers` are left.
        package var rejoinTimeout: Duration = .seconds(300)
        /// Log every step's timings and shares.
        package var verbose = false
        /// CurveZMQ: this coordinator's key and the workers it admits (nil: plaintext).
        package var keys: CoordinatorKeys?
        /// Results come in parts, and each part of the parameters is updated and its new weights sent as soon as
        /// every worker's values there are in: the weights travel down while gradients still come up, which pays
        /// where workers are on other machines.
        package var overlap = false
        /// The sharded layout (docs/scale-out.md): results go to the parts' owners among the workers, which send each
        /// part's mean to every worker; every worker applies every update. Implies `overlap`'s parts.
        package var sharded = false
        /// With `sharded`: a step whose members cannot all reach each other (a worker with no peer socket its
        /// connection's address reaches) goes through the star instead of stopping the run (`--layout auto`).
        package var starWhenUnreachable = false

        package init(endpoint: String, workers: Int) {
            self.endpoint = endpoint
            self.workers = workers
        }

        /// A worker silent this long is lost.
        package var silence: Duration { heartbeat * 3 }
    }

    /// Each worker's share since the last call (samples computed, seconds from assignment to result), and resets
    /// the counts: what `--metrics` records per epoch.
    package func takeShares() -> [WorkerShare] { core.takeShares() }

    /// Members by state, losses and rejoins so far: what `--prometheus` reports.
    package func census() -> (states: [String: Int], losses: Int, rejoins: Int) { core.census() }

    /// Where the last step's time went, in seconds.
    package struct StepTimings: Sendable {
        package var send = 0.0, wait = 0.0, reduce = 0.0
    }

    package let settings: Settings
    package internal(set) var lastTimings = StepTimings()

    /// Set to collect each step's `StepTrace` (`--trace`); nil, the default, collects nothing.
    package var traces: [StepTrace]?
    /// Traced results' timelines from their workers, until their step is traced.
    var timelineReports: [TimelineKey: TimelineReport] = [:]
    /// Members whose timeline was refused (said once; theirs are left out from then on).
    var timelineRefusals: Set<UInt32> = []

    /// The last step's round: its results' messages stay alive until the trainer has read the sum holding them.
    private var heldRound: StepRound?
    /// Where a result's micro-shard Floats are listed for the sum.
    private let floatPointers = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: GradientFrame.maximumFloatShards)
    /// Checked while waiting: the pid and ending of a worker process this coordinator started that has exited.
    package var processCheck: (() -> (pid: Int32, ending: String)?)?
    /// Called once when fewer than `minimumWorkers` are left, before waiting for more (writes a checkpoint).
    package var onStarved: (() throws -> Void)?

    /// Every decision: members, the step's round, what each member holds. This class is its shell.
    var core: CoordinatorCore
    /// The result regions of members that offered one, mapped.
    var resultRegions: [Int: SharedRegion] = [:]
    /// The current step's weights as a message (`stepWeightsMessage`), or the parameters to make it from.
    var stepWeights = StepWeights.none
    enum StepWeights {
        case none
        case from(Buffer<Float>)
        case made(Message)
    }
    let job: Job
    let training: Dataset
    let jobID: UInt64
    let announcement: JobAnnouncement
    let limits: Limits
    private let context: Context
    let router: Socket
    let guardian: PeerGuard
    private let keyCheck: ZAPHandler?
    private let handshakes: HandshakeWatcher
    let log: (String) -> Void
    // Weight buffers handed to libzmq without copying; one is rewritten only when libzmq has let go of it.
    var payloads: [SharedPayload]
    /// On an ipc endpoint (every worker on this machine): the weights, for the workers that map it instead.
    let weightsRegion: SharedRegion?
    let clock = ContinuousClock()
    /// Without `overlap`: the step the trainer has begun, summed whole when it asks for its update.
    var wholeOrder: StepOrder?
    /// With `overlap`, the step being updated part by part, and memory for results' parts, reused.
    var partStep: PartStep?
    var partStores: [Buffer<Float>] = []
    var partTimings = PartTimings()
    /// The weights the last step's parts made, whole: the next step's, for a worker that must be sent them whole.
    var partsMade: (step: Int, weights: SharedPayload)?
    /// With `sharded`, the layout and the step in flight.
    var sharded = ShardedRun()
    /// Whether results in parts and means go as packed Floats, measured step by step where bytes are dear and
    /// something goes as Floats (means, or fast sums); the choice for the step under way; how long the last step's
    /// own work took; the last verdict said.
    lazy var floatPacking = FloatPacking(
        enabled: (settings.keys != nil || !EndpointReach.isLocal(settings.endpoint))
            && (settings.sharded || core.admission.reduction == .fast))
    var packsFloats = false
    var stepWork: Duration?
    var lastPackingVerdict: Bool?
    /// The parts a job's parameters come in.
    let parts: PartSplit
    /// Exact mode: the fingerprint of this job's matrix products here (`Products.fingerprint`).
    let productsFingerprint: UInt64

    package init(job: Job, training: Dataset, settings: Settings, log: @escaping (String) -> Void) throws {
        self.job = job
        self.training = training
        self.settings = settings
        self.log = log
        jobID = UInt64.random(in: 1 ... .max)
        let count = job.model.layout.parameterCount
        // Parts that spread evenly over the sharded layout's owners: the workers expected and the coordinator.
        parts = PartSplit(parameterCount: count, evenlyOver: settings.workers + 1)
        announcement = JobAnnouncement(job: job, samples: training.count, fingerprint: training.fingerprint,
                                       blas: BLASKernel.loaded, oneDNN: OneDNN.isa, partSize: parts.size)
        // What every exact-mode worker's products of this job must hash to.
        productsFingerprint = job.productsFingerprint(samples: training.count)
        guard announcement.bytes.count <= JobAnnouncement.maximumBytes else {
            throw ClusterError("the job's description is \(announcement.bytes.count) bytes; workers read at most "
                + "\(JobAnnouncement.maximumBytes): use fewer layers")
        }
        var limits = Limits(parameterCount: count, job: jobID, partSize: parts.size)
        limits.maximumJobBytes = max(limits.maximumJobBytes, announcement.bytes.count + 1024)
        self.limits = limits
        payloads = [SharedPayload(byteCount: 4 * count), SharedPayload(byteCount: 4 * count)]
        weightsRegion = EndpointReach.sharesMemory(settings.endpoint) ? SharedRegion(creatingFor: 4 * count, slots: 1) : nil
        // Two I/O threads: two workers' megabyte results are read from their connections side by side.
        let context = try Context(ioThreads: 2)
        self.context = context
        let router = try Socket(context, .router)
        self.router = router
        // In parts, a worker still sending its own parts may have a step's weight parts waiting for it, twice over
        // when parts are undone and updated again (their messages share one buffer, so only their count grows).
        try SocketTuning.coordinator(router, maximumMessageBytes: limits.maximumFrameBytes,
                                     heartbeat: settings.heartbeat, silence: settings.silence,
                                     queuedPerWorker: 3 * parts.count + Int(SocketTuning.highWaterMark))
        let keyCheck = try settings.keys.map { keys in
            // The handler must be listening before the first connection, or libzmq would admit every key.
            let shared = SharedLog(log)
            let handler = try ZAPHandler(context: context, authorized: keys.authorized, log: { shared.write($0) })
            try SocketTuning.curveServer(router, keyPair: keys.keyPair)
            return handler
        }
        self.keyCheck = keyCheck
        let handshakeLog = HandshakeLog(log: log)
        let handshakes: HandshakeWatcher
        do {
            handshakes = try HandshakeWatcher(router, context: context) { handshakeLog.note($0) }
        } catch {
            keyCheck?.stop()
            router.close()
            throw error
        }
        self.handshakes = handshakes
        // The helper threads hold sockets of this context: stop them, or it could never be terminated.
        try Self.bind(router, to: settings.endpoint) {
            keyCheck?.stop()
            handshakes.stop(watching: router)
            router.close()
        }
        guardian = PeerGuard(limit: 5, log: log)
        core = CoordinatorCore(
            settings: settings,
            admission: .init(reduction: job.options.reduction, library: job.options.library,
                             blasKernel: BLASKernel.loaded, productsFingerprint: productsFingerprint,
                             samples: training.count, microShardSize: job.options.microShardSize),
            partCount: parts.count, hasWeightsRegion: weightsRegion != nil, now: clock.now)
    }

    /// Binds `router` to `endpoint`, calling `undo` when it cannot. An ipc socket file is made by the bind: only this
    /// user may connect to it, whatever the umask. An address in use, not on this machine or not allowed is bad input
    /// (exit 2), as a bad endpoint is.
    private static func bind(_ router: Socket, to endpoint: String, undo: () -> Void) throws {
        do {
            let ipc = endpoint.hasPrefix("ipc://")
            let previousMask = ipc ? umask(0o077) : 0
            defer { if ipc { umask(previousMask) } }
            try router.bind(endpoint)
        } catch {
            undo()
            let code = (error as? ZMQError)?.code ?? 0
            let badInput = [EADDRINUSE, EADDRNOTAVAIL, ENODEV, EINVAL, EACCES].contains(code)
            let text = "cannot listen on \(endpoint): \(error); pick a free port or address"
            throw badInput ? InputError(text) as Error : ClusterError(text)
        }
    }

    /// The endpoint workers connect to (a `tcp://…:*` bind resolved to its port).
    package var endpoint: String { router.lastEndpoint }

    /// Workers one coordinator can hold (its member table's size).
    package static let maximumWorkers = MemberTable.capacity

    /// `endpoint` as another machine would write it: a wildcard bind (0.0.0.0, ::) names this host instead.
    var reachableEndpoint: String {
        let bound = endpoint
        for wildcard in ["tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:"] where bound.hasPrefix(wildcard) {
            return "tcp://\(ProcessInfo.processInfo.hostName):" + bound.dropFirst(wildcard.count)
        }
        return bound
    }

    // MARK: Joining

    /// Waits until `settings.workers` workers have joined and hold the data.
    package func waitForWorkers() throws {
        let deadline = clock.now + settings.joinTimeout
        while core.activeCount < settings.workers {
            guard clock.now < deadline else {
                let joined = core.table.active.map { core.label($0) }.joined(separator: ", ")
                let keyFlags = settings.keys == nil ? "" : " --key FILE --coordinator-key FILE"
                throw ClusterError("only \(core.activeCount) of \(settings.workers) workers joined within "
                    + "\(Seconds(settings.joinTimeout))\(joined.isEmpty ? "" : ": \(joined)"); start more with "
                    + "`shardtrain worker --connect \(reachableEndpoint)\(keyFlags)` or raise --join-timeout")
            }
            try pump(timeout: min(deadline - clock.now, .milliseconds(200)))
        }
        core.started = true
    }

    // MARK: A step

    private func add(_ result: StepRound.Result, to sum: GradientSum) {
        let frame = result.frame
        let loss = frame.lossWords
        frame.withValues { bytes in
            guard frame.floatShards > 0 else {
                return sum.add(bytes: bytes, samples: frame.samples, correct: frame.correct, lossWords: loss,
                               overflowed: frame.overflowed)
            }
            let floats = bytes.baseAddress!.bindMemory(to: Float.self, capacity: frame.floatShards * sum.count)
            for i in 0..<frame.floatShards { floatPointers[i] = floats + sum.count * i }
            sum.add(floats: UnsafeBufferPointer(start: floatPointers, count: frame.floatShards),
                    summary: ExactSummary(samples: frame.samples, correct: frame.correct, loss: loss,
                                          overflowed: frame.overflowed))
        }
    }

    /// A whole step: every result summed into `order.sum` as it arrives (exact) or in micro-shard order (fast).
    func sumWholeStep(_ order: StepOrder) throws {
        let step = order.step, parameters = order.parameters, sum = order.sum
        let begun = clock.now
        // The mean is taken while every worker waits for the next weights: this machine's cores are free for it.
        sum.meanThreads = ProcessInfo.processInfo.activeProcessorCount
        core.beginStep(step: step, epoch: order.epoch, batchIndex: order.batchIndex, microShards: order.microShards,
                       batchSamples: order.batch.count)
        stepWeights = .from(parameters)
        defer { stepWeights = .none }
        // Nothing reads the region between steps: a step's workers have all answered, or been lost, before this.
        weightsRegion?.slot(0).copyMemory(from: UnsafeRawBufferPointer(start: parameters.pointer, count: 4 * parameters.count))
        try handOut()
        let sent = clock.now
        // Exact sums are order-free, so each result is added as it arrives, while slower workers still compute;
        // fast sums are added in micro-shard order at the end, so the same split gives the same bits.
        var added = 0
        func addArrived() {
            let results = core.round!.results
            while added < results.count { add(results[added], to: sum); added += 1 }
        }
        while !core.round!.isComplete {
            try pump(timeout: settings.heartbeat / 4)
            if sum.reduction == .exact { addArrived() }
            if core.round!.waitingCount > 0 { try handOut() }
        }
        if sum.reduction == .exact { addArrived() }
        let round = core.endStep()
        let gathered = clock.now
        if sum.reduction == .fast {
            for result in round.orderedResults { add(result, to: sum) }
        }
        heldRound = round
        let reduced = clock.now
        lastTimings = StepTimings(send: (sent - begun) / .seconds(1), wait: (gathered - sent) / .seconds(1),
                                  reduce: (reduced - gathered) / .seconds(1))
        stepWork = reduced - begun
        trace(round, begun: begun, sent: sent, gathered: gathered, reduced: reduced)
        if settings.verbose { logStep(round) }
    }

    /// The step's weights as a message: made from the parameters the first time a member needs them so (one reading
    /// the region never does), then kept for the step.
    func stepWeightsMessage() throws -> Message {
        switch stepWeights {
        case .made(let message):
            return message
        case .from(let parameters):
            let payload = idlePayload()
            payload.bytes.copyMemory(from: parameters.pointer, byteCount: payload.byteCount)
            let message = try Message(sharing: payload)
            stepWeights = .made(message)
            return message
        case .none:
            preconditionFailure("the weights were asked for outside a step")
        }
    }

    /// The step's timings and each worker's share, for --verbose.
    func logStep(_ round: StepRound) {
        let text = core.shares(of: round)
        log(String(format: "step %d: send %.3f ms, wait %.3f ms, reduce %.3f ms; %@", round.step,
                   lastTimings.send * 1000, lastTimings.wait * 1000, lastTimings.reduce * 1000, text))
    }

    /// Tells every worker still known to stop, waits up to a second for each to acknowledge (and for one lost just now
    /// to come back and be told), and closes the socket:
    /// the last call on a coordinator. The wait matters: a worker whose connection closes before it has read the
    /// message may never see it (libzmq drops what a closed connection had not delivered) and would wait for its
    /// --idle-timeout instead of exiting.
    package func shutdown(reason: String = "training finished", disposition: Disposition = .finished) {
        var waiting = Set<[UInt8]>(), toldAgain = Set<[UInt8]>()
        // Lost members too: one that is alive again may be on its way back in, and would otherwise keep knocking
        // until its --idle-timeout. Only the others are waited for.
        let tell = { (identity: [UInt8]) in
            (try? self.router.send([Message(copying: identity)]
                + Codec.shutdown(reason, job: self.jobID, disposition: disposition), wait: false)) != nil
        }
        let now = clock.now
        for member in core.table.members {
            let told = tell(member.identity)
            // A member lost in the last two seconds was most likely told to join again and is on its way back in (a
            // worker says hello at once, then every 2 s): it is waited for too, and told at its hello.
            let returning = member.state == .lost && member.lostAt.map { now - $0 < .seconds(2) } ?? false
            if (told && member.state != .lost) || returning { waiting.insert(member.identity) }
        }
        let deadline = clock.now + .seconds(1)
        while !waiting.isEmpty, clock.now < deadline {
            guard (try? Socket.poll([router], timeout: deadline - clock.now))?[0] == true else { continue }
            while case .frames(let frames)? = try? router.receive(maximumFrames: Codec.maximumFrames + 1) {
                let identity = frames[0].bytes, payload = (try? Codec.decode(Array(frames.dropFirst()), limits: limits))?.payload
                let isHello = if case .hello? = payload { true } else { false }
                if case .shutdown? = payload {
                    waiting.remove(identity)
                } else if waiting.contains(identity), isHello || toldAgain.insert(identity).inserted {
                    // Its word came on a connection that did not carry the shutdown (a worker that had just opened a
                    // new one under the same identity, or one coming back in): told again there.
                    _ = tell(identity)
                }
            }
        }
        closeSockets()
    }

    deinit {
        closeSockets()
        floatPointers.deallocate()
    }

    /// Closes every socket of the context, the key check's included, then the context (all once).
    private func closeSockets() {
        // The handshake watcher first (it stops the socket's events while their reader is there), then the socket:
        // with the key check gone while it still listened, libzmq would admit any key.
        handshakes.stop(watching: router)
        router.close()
        keyCheck?.stop()
        context.terminate()
    }
}

/// A log line writer that the key check's thread may call: the coordinator's log writes whole lines to standard
/// error, which is safe from any thread.
struct SharedLog: @unchecked Sendable {
    private let write: (String) -> Void
    init(_ write: @escaping (String) -> Void) { self.write = write }
    func write(_ line: String) { write(line) }
}
