import CDelta
import CExactSum
import Engine
import Foundation
import Wire

/// A worker process: joins a coordinator, holds the training data, and computes the micro-shards it is assigned
/// with the shared engine until told to stop. It holds no training state, so when its coordinator goes silent it
/// simply joins again — the same coordinator, or one restarted with `--resume` on the same endpoint.
public final class WorkerNode {
    public struct Settings: Sendable {
        public var endpoint: String
        public var name: String
        /// Threads computing micro-shards (each with single-threaded products).
        public var threads = 1
        /// How long to keep trying to reach a coordinator before giving up.
        public var idleTimeout: Duration = .seconds(120)
        /// Stop when this process (the one that started us) is gone.
        public var parentPID: Int32?
        /// CurveZMQ: this worker's key and its coordinator's (nil: plaintext).
        public var keys: WorkerKeys?

        public init(endpoint: String, name: String) {
            self.endpoint = endpoint
            self.name = name
        }
    }

    /// How one session with a coordinator ended.
    enum SessionEnd {
        case finished
        case rejoin(String)
    }

    /// What a coordinator told this worker when it joined.
    struct Session {
        let jobID: UInt64
        let workerID: UInt32
        let announcement: JobAnnouncement
        let heartbeat: Duration
        let limits: Limits
        /// The coordinator's weights region, mapped read-only (nil: weights come as messages).
        let weightsRegion: SharedRegion?
        /// Exact mode: this worker's fingerprint of the job's matrix products, sent with `ready` (0 in fast mode).
        var products: UInt64 = 0
    }

    let settings: Settings
    let log: (String) -> Void
    let clock = ContinuousClock()
    /// The same routing id across reconnects, so the coordinator recognises this worker.
    let routingID = (0..<16).map { _ in UInt8.random(in: 0 ... 255) }
    var checkHandshake: () throws -> Void = {}

    public init(settings: Settings, log: @escaping (String) -> Void) {
        self.settings = settings
        self.log = log
    }

    #if DEBUG
    private static let flipsBit = ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_FLIP_BIT"] == "1"
    #endif

    /// Joins and works until a coordinator says stop; throws if it cannot go on (the message says why).
    public func run() throws {
        let context = try Context()
        let dealer = try Socket(context, .dealer)
        // Sizes are unknown until the job arrives; the decoder still checks every length against the job.
        try SocketTuning.worker(dealer, maximumMessageBytes: Int(Int32.max), routingID: routingID)
        if let keys = settings.keys {
            try SocketTuning.curveClient(dealer, keyPair: keys.keyPair, server: keys.coordinatorKey)
        }
        let monitor = try HandshakeMonitor(dealer, context: context)
        defer { monitor.close() }
        var verdict = HandshakeVerdict(endpoint: settings.endpoint, keys: settings.keys)
        // A refused key or a mismatch ends the worker at once; libzmq alone would retry in silence.
        checkHandshake = {
            if let refusal = verdict.judge(monitor.drain()) { throw ClusterError(refusal) }
        }
        try dealer.connect(settings.endpoint)
        var previousID: UInt32 = 0
        var held: (fingerprint: String, job: Job, data: Dataset)?
        while true {
            guard var session = try join(dealer, previousID: previousID) else {
                log("\(settings.name): the run finished before this worker joined again; stopping")
                return
            }
            let joined = session
            try followKernel(session.announcement) { text in
                try? send(dealer, Codec.error(text, job: joined.jobID, step: 0, worker: joined.workerID))
                // The message must leave before a re-execution ends this process's sockets.
                Thread.sleep(forTimeInterval: 0.1)
            }
            session.products = session.announcement.job.productsFingerprint(samples: session.announcement.samples)
            let (job, data) = try prepareData(dealer, session, held: held)
            held = (session.announcement.fingerprint, job, data)
            // On the coordinator's machine (an ipc endpoint), results can be handed over in shared memory.
            let region = EndpointReach.sharesMemory(settings.endpoint)
                ? SharedRegion(creatingFor: job.model.layout.parameterCount * GradientSum.bytesPerParameter(job.options.reduction),
                               slots: SharedRegion.resultSlots)
                : nil
            try send(dealer, Codec.ready(job: session.jobID, worker: session.workerID, hasData: true,
                                         region: region?.offer, readsWeightsRegion: session.weightsRegion != nil,
                                         products: session.products))
            // The coordinator names local workers itself; a remote one says where it is.
            if settings.parentPID == nil {
                log("\(settings.name): joined as w\(session.workerID); \(job.options.library.kernels)")
            }
            switch try work(dealer, session, job: job, data: data, region: region) {
            case .finished:
                if settings.parentPID == nil { log("\(settings.name): the run finished; stopping") }
                return
            case .rejoin(let why):
                log("\(settings.name): \(why); joining again")
                previousID = session.workerID
            }
        }
    }

    // MARK: Working

    /// Computes assignments and sends heartbeats until the coordinator says stop, asks this worker to join again,
    /// or falls silent for three heartbeats.
    private func work(_ dealer: Socket, _ session: Session, job: Job, data: Dataset,
                      region: SharedRegion?) throws -> SessionEnd {
        let options = job.options
        let (jobID, workerID, limits, heartbeat) = (session.jobID, session.workerID, session.limits, session.heartbeat)
        BLAS.setThreads(1)
        let slices = ParallelSlices(spec: job.model, loss: job.loss, targetWidth: data.targetWidth,
                                    microShardSize: options.microShardSize, reduction: options.reduction,
                                    largestSlice: min(options.batchSize, data.count), threads: settings.threads,
                                    library: options.library)
        let plan = BatchPlan(sampleCount: data.count, batchSize: options.batchSize, shuffle: options.shuffle,
                             dropLast: options.dropLast, seed: options.seed)
        var parameters = Buffer<Float>(count: job.model.layout.parameterCount)
        // The next step's weights as their parts arrive, while `parameters` keep this step's: a lost worker's
        // micro-shards of this step may still come to this one.
        let incoming = IncomingWeights(count: parameters.count)
        // An exact sum's limbs, packed part by part.
        let packedParts = PackedParts()
        // Without a result region, two sums in turn, each sent zero-copy: one may still be in libzmq's hands while the
        // next is computed. With one, its two slots (an assignment names the slot to leave its result in) and a sum of
        // its own for an assignment that names none (the coordinator may still hold both slots' results); each
        // region sum keeps the region mapped while libzmq may still be sending from it.
        let sums = region.map { region in
            (0..<SharedRegion.resultSlots).map {
                GradientSum(count: parameters.count, reduction: options.reduction, in: region.slot($0), keeping: region)
            } + [GradientSum(count: parameters.count, reduction: options.reduction)]
        } ?? (0..<2).map { _ in GradientSum(count: parameters.count, reduction: options.reduction) }
        let outgoing = sums.map { sum in
            SharedPayload(borrowing: UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!),
                          byteCount: sum.valueBytes.count, owner: sum)
        }
        // Exact results sent as messages go packed where bytes cost more than packing them (~3 ns per parameter
        // each way): encrypted, or to another machine. Plaintext loopback copies bytes faster than that.
        let packs = options.reduction == .exact && (settings.keys != nil || !EndpointReach.isLocal(settings.endpoint))
        let packedOutgoing = packs ? sums.map { _ in SharedPayload(byteCount: cexact_pack_bound(parameters.count)) } : []
        var turn = 0
        let order = Buffer<Int>(count: data.count)
        var orderEpoch = -1
        var weightsStep: UInt64?
        var lastHeard = clock.now, lastSent = clock.now
        // Where an assignment's micro-shards go when they are sent as Floats.
        let floatIndices = UnsafeMutablePointer<Int>.allocate(capacity: Codec.maximumPartArrays)
        let floatTargets = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: Codec.maximumPartArrays)
        let floatStatistics = UnsafeMutablePointer<SliceStatistics>.allocate(capacity: Codec.maximumPartArrays)
        defer {
            floatIndices.deallocate()
            floatTargets.deallocate()
            floatStatistics.deallocate()
        }
        // Micro-shards computed between two chances to send a heartbeat.
        let chunk = 4 * max(1, settings.threads)

        func beat() {
            guard clock.now - lastSent >= heartbeat else { return }
            lastSent = clock.now
            try? dealer.send(Codec.heartbeat(job: jobID, step: weightsStep ?? 0, worker: workerID), wait: false)
        }

        while true {
            try checkParent()
            beat()
            if try Socket.poll([dealer], timeout: heartbeat / 2)[0] {
                while case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) {
                    lastHeard = clock.now
                    let envelope: Envelope
                    do {
                        envelope = try Codec.decode(frames, limits: limits)
                    } catch {
                        if case .wrongJob = error { return .rejoin("a new coordinator answers at \(settings.endpoint)") }
                        throw ClusterError("malformed message from the coordinator: \(error)")
                    }
                    let step = envelope.header.step
                    switch envelope.payload {
                    case .weights(let frame):
                        frame.copy(into: parameters.pointer)
                        weightsStep = step
                    case .weightsChange(let base, let change):
                        // A change that does not apply leaves the weights unusable until whole ones come (after
                        // joining again).
                        let held = weightsStep
                        weightsStep = nil
                        if let problem = apply(change, from: base, holding: held, step: step, to: parameters) {
                            try send(dealer, Codec.error(problem, job: jobID, step: step, worker: workerID))
                            continue
                        }
                        weightsStep = step
                    case .weightsPart(let first, let frame):
                        incoming.take(frame, from: first, step: step)
                    case .weightsFromParts:
                        weightsStep = nil
                        if let problem = incoming.missing(step: step) {
                            try send(dealer, Codec.error(problem, job: jobID, step: step, worker: workerID))
                            continue
                        }
                        swap(&parameters, &incoming.weights)
                        incoming.clear()
                        weightsStep = step
                    case .weightsInRegion:
                        guard let weights = session.weightsRegion else {
                            throw ClusterError("the coordinator said step \(step)'s weights are in a shared region this "
                                + "worker has not mapped")
                        }
                        UnsafeMutableRawPointer(parameters.pointer).copyMemory(from: weights.slot(0).baseAddress!,
                                                                               byteCount: 4 * parameters.count)
                        weightsStep = step
                    case .assignment(let epoch, let batchIndex, let attempt, let ranges, let resultSlot, let inParts):
                        guard weightsStep == step else {
                            try send(dealer, Codec.error("assignment for step \(step) arrived without its weights",
                                                        job: jobID, step: step, worker: workerID))
                            continue
                        }
                        guard batchIndex < UInt64(plan.batchesPerEpoch), epoch < UInt64(Int32.max) else {
                            try send(dealer, Codec.error("assignment for batch \(batchIndex) of epoch \(epoch) is outside "
                                + "the job's \(plan.batchesPerEpoch) batches", job: jobID, step: step, worker: workerID))
                            continue
                        }
                        let shardCount = slices.computers[0].microShardCount(batchSize: plan.range(ofBatch: Int(batchIndex)).count)
                        guard let last = ranges.last, last.upperBound <= shardCount else {
                            try send(dealer, Codec.error("assignment \(describe(ranges)) is outside batch \(batchIndex)'s "
                                + "\(shardCount) micro-shards", job: jobID, step: step, worker: workerID))
                            continue
                        }
                        if orderEpoch != Int(epoch) {
                            plan.writeOrder(epoch: Int(epoch), into: order.elements)
                            orderEpoch = Int(epoch)
                        }
                        let batch = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(order.elements)[plan.range(ofBatch: Int(batchIndex))])
                        let slot = region == nil ? nil : resultSlot
                        // No region: two sums in turn. A region: the named slot, or the sum of its own.
                        let index = region == nil ? turn : slot ?? SharedRegion.resultSlots
                        let sum = sums[index], payload = outgoing[index]
                        turn = 1 - turn
                        try waitUntilIdle(payload, step: step)
                        sum.reset()
                        // A few exact micro-shards go as their Floats (no more bytes than limbs, and neither the pass
                        // into limbs here nor their check there), written where the limbs would be. Where bytes are
                        // dear, packed limbs (~6.3 bytes a parameter) win over more than two micro-shards' Floats.
                        // In parts, up to two micro-shards' Floats, or the sum's limbs packed part by part.
                        let microShardCount = ranges.reduce(0) { $0 + $1.count }
                        let floatLimit = slot != nil || !(packs || inParts) ? GradientFrame.maximumFloatShards : 2
                        let floatShards = options.reduction == .exact && microShardCount <= floatLimit ? microShardCount : 0
                        // In parts, with one thread computing, each part goes as soon as backward has finished it.
                        var sender: PartSender?
                        if inParts {
                            let arrays = max(floatShards, 1)
                            sender = PartSender(payload: payload, arrays: arrays, count: parameters.count,
                                                send: { try self.send(dealer, $0) }) { array, part, packed, diverged in
                                try Codec.gradientPartHeader(job: jobID, step: step, worker: workerID, attempt: attempt,
                                                             array: array, arrays: arrays, part: part, packed: packed,
                                                             diverged: diverged)
                            }
                            // Floats are final in place as backward finishes each layer; limbs only at the end.
                            let oneComputer = settings.threads == 1 || floatShards == 1
                            let oneSlice = floatShards > 0 || (options.reduction == .fast && ranges.count == 1
                                && microShardCount <= chunk)
                            if oneComputer && oneSlice {
                                sender!.skippedCalls = (arrays - 1) * job.model.layers.count
                                slices.computers[0].network.onLayerGradient = { [unowned sender = sender!] in
                                    sender.layerDone(finalFrom: $0)
                                }
                            }
                        }
                        defer { slices.computers[0].network.onLayerGradient = nil }
                        var summary: ExactSummary?
                        if floatShards > 0 {
                            // The sum's memory, limbs until now, holds Floats for this result.
                            let floats = payload.bytes.bindMemory(to: Float.self, capacity: floatShards * parameters.count)
                            for (i, index) in ranges.joined().enumerated() {
                                floatIndices[i] = index
                                floatTargets[i] = floats + parameters.count * i
                            }
                            slices.gradients(batch: batch, microShards: UnsafeBufferPointer(start: floatIndices, count: floatShards),
                                             data: data, parameters: parameters.pointer,
                                             into: UnsafeBufferPointer(start: floatTargets, count: floatShards),
                                             statistics: floatStatistics)
                            summary = GradientSum.exactSummary(of: UnsafeBufferPointer(start: floatStatistics, count: floatShards))
                            beat()
                        } else {
                            for range in ranges {
                                for start in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                                    slices.accumulate(batch: batch, microShards: start ..< min(start + chunk, range.upperBound),
                                                      data: data, parameters: parameters.pointer, into: sum)
                                    beat()
                                }
                            }
                        }
                        #if DEBUG
                        // Test builds only: a worker whose first parameter's sum is off (a unit of its high limb, or
                        // the first Float moved by a finite 0.1 %), so the tests can check that `equivalence` catches
                        // an exact run that differs.
                        if Self.flipsBit, options.reduction == .exact {
                            let first = floatShards > 0 ? payload.bytes
                                : UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!)
                            if floatShards > 0 {
                                let value = first.load(as: Float.self)
                                first.storeBytes(of: value * 1.001 + 0.001, as: Float.self)
                            } else {
                                first.storeBytes(of: first.load(as: Int64.self) ^ 1, as: Int64.self)
                            }
                        }
                        #endif
                        if let sender {
                            let stats = summary ?? ExactSummary(samples: sum.samples, correct: sum.correct,
                                                                loss: sum.lossWords, overflowed: sum.overflowed)
                            if options.reduction == .exact && floatShards == 0 {
                                let out = try packedParts.payload(byteCount: cexact_pack_bound(parameters.count)) {
                                    try waitUntilIdle($0, step: step)
                                }
                                try sender.sendPackedLimbs(of: sum.valueBytes.baseAddress!, diverged: stats.overflowed,
                                                           into: out)
                            }
                            try finishParts(dealer, sender, statistics: stats, exact: options.reduction == .exact,
                                            job: jobID, step: step, worker: workerID, attempt: attempt)
                            lastSent = clock.now
                            continue
                        }
                        // In the region: an empty frame. Packed: only when smaller (it always is for real gradients).
                        var values: Message?, packed = false
                        if slot != nil {
                            values = try Message(copying: [UInt8]())
                        } else if floatShards > 0 {
                            values = try Message(sharing: payload, byteCount: 4 * parameters.count * floatShards)
                        } else if packs {
                            let target = packedOutgoing[index]
                            try waitUntilIdle(target, step: step)
                            let length = cexact_pack(sum.valueBytes.baseAddress!, parameters.count,
                                                     target.bytes.assumingMemoryBound(to: UInt8.self))
                            if length < sum.valueBytes.count {
                                values = try Message(sharing: target, byteCount: length)
                                packed = true
                            }
                        }
                        let stats = summary ?? ExactSummary(samples: sum.samples, correct: sum.correct,
                                                            loss: sum.lossWords, overflowed: sum.overflowed)
                        try send(dealer, [Codec.gradientHeader(job: jobID, step: step, worker: workerID,
                                                              samples: stats.samples, correct: stats.correct,
                                                              lossHigh: stats.loss.high, lossLow: stats.loss.low,
                                                              lossWindow: stats.loss.window,
                                                              exact: options.reduction == .exact,
                                                              overflowed: stats.overflowed, attempt: attempt,
                                                              regionSlot: slot, packed: packed, floatShards: floatShards),
                                         values ?? Message(sharing: payload)])
                        lastSent = clock.now
                    case .shutdown(let reason, let disposition):
                        // Acknowledged, so the coordinator knows it was read before it closes; kept until sent.
                        try? dealer.send(Codec.shutdown("received", job: jobID, disposition: disposition), wait: false)
                        try? SocketTuning.flushOnClose(dealer, within: .seconds(1))
                        switch disposition {
                        case .finished: return .finished
                        case .rejoin: return .rejoin(reason)
                        case .failed: throw CoordinatorStoppedRun(reason: reason)
                        }
                    case .error(let text):
                        throw ClusterError("the coordinator reported: \(text)")
                    default:
                        continue
                    }
                }
            }
            let silent = clock.now - lastHeard
            if silent > heartbeat * 3 {
                return .rejoin("the coordinator has been silent for \(Seconds(silent))")
            }
        }
    }
}
