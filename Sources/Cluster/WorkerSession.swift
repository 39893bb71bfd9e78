import CExactSum
import Engine
import Foundation
import Jobs
import Wire

/// One job's work in a worker: it holds the weights, computes the micro-shards of an assignment and sends the result
/// in the form the assignment asks for. It owns no socket and no clock: sending, waiting for libzmq to let go of a
/// buffer and heartbeats are the shell's (`WorkerNode`).
final class WorkerSession {
    struct IDs {
        var job: UInt64, worker: UInt32
    }

    let weights: WorkerWeights
    private let ids: IDs
    private let options: TrainingOptions
    private let data: Dataset
    private let slices: ParallelSlices
    private let plan: BatchPlan
    private let order: Buffer<Int>
    private var orderEpoch = -1
    /// Without a result region, two sums in turn, each sent zero-copy: one may still be in libzmq's hands while the
    /// next is computed. With one, its two slots (an assignment names the slot to leave its result in) and a sum of
    /// its own for an assignment that names none (the coordinator may still hold both slots' results); each region
    /// sum keeps the region mapped while libzmq may still be sending from it.
    private let sums: [GradientSum]
    private let outgoing: [SharedPayload]
    private let hasRegion: Bool
    private var turn = 0
    /// Exact results sent as messages go packed where bytes cost more than packing them (~3 ns per parameter each
    /// way): encrypted, or to another machine. Plaintext loopback copies bytes faster than that.
    private let packs: Bool
    /// Results sent in parts as packed Floats go into these (one for each sum in turn).
    private lazy var packedFloatParts = [PackedParts?](repeating: nil, count: sums.count)
    private let packedOutgoing: [SharedPayload]
    /// An exact sum's limbs, packed part by part.
    private let packedParts = PackedParts()
    /// Where an assignment's micro-shards go when they are sent as Floats.
    private let floatIndices: UnsafeMutablePointer<Int>
    private let floatTargets: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let floatStatistics: UnsafeMutablePointer<SliceStatistics>
    private let threads: Int
    /// Micro-shards computed between two chances to send a heartbeat.
    private let chunk: Int
    private let send: ([Message]) throws -> Void
    private let waitUntilIdle: (SharedPayload, UInt64) throws -> Void
    private let beat: () -> Void
    /// Sharded layout: where each part of a result goes (its owner), instead of to the coordinator; and whether a part
    /// is this worker's own (kept here, so never packed).
    var route: ((Int, [Message]) throws -> Void)?
    var ownsPart: ((Int) -> Bool)?
    /// Sharded layout: the digests of the weights a step's result was computed from, which its counts carry.
    var replicaDigests: ((UInt64) -> [UInt64]?)?
    /// The results still in memory, for the coordinator's spot checks: each one's step, attempt, sum and Float arrays.
    private var heldResults: [HeldResult] = []

    struct HeldResult {
        let step: UInt64, attempt: UInt64
        let index: Int
        /// Exact results sent as micro-shards' Floats: how many.
        let floatShards: Int
    }

    #if DEBUG
    private static let flipsBit = ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_FLIP_BIT"] == "1"
    /// Tests only: a worker whose exact sums hold a limb no sum of its micro-shards can reach (an owner must refute it).
    private static let sendsImpossibleLimbs = ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_IMPOSSIBLE_LIMBS"] == "1"
    /// Tests only: a worker that computes this many ms longer per result (a slow machine, for the stragglers line).
    private static let computeDelay = Int(ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_COMPUTE_DELAY_MS"] ?? "")
    #endif

    init(job: Job, data: Dataset, ids: IDs, parts: PartSplit, threads: Int, weightsRegion: SharedRegion?, resultRegion: SharedRegion?,
         packs: Bool, send: @escaping ([Message]) throws -> Void,
         waitUntilIdle: @escaping (SharedPayload, UInt64) throws -> Void, beat: @escaping () -> Void,
         now: @escaping () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.now = now
        options = job.options
        self.data = data
        self.ids = ids
        let count = job.model.layout.parameterCount
        self.parts = parts
        weights = WorkerWeights(parts: parts, region: weightsRegion)
        slices = ParallelSlices(spec: job.model, loss: job.loss, targetWidth: data.targetWidth,
                                microShardSize: options.microShardSize, reduction: options.reduction,
                                largestSlice: min(options.batchSize, data.count), threads: threads,
                                library: options.library)
        plan = BatchPlan(sampleCount: data.count, batchSize: options.batchSize, shuffle: options.shuffle,
                         dropLast: options.dropLast, seed: options.seed)
        order = Buffer<Int>(count: data.count)
        let reduction = options.reduction
        sums = resultRegion.map { region in
            (0..<SharedRegion.resultSlots).map {
                GradientSum(count: count, reduction: reduction, in: region.slot($0), keeping: region)
            } + [GradientSum(count: count, reduction: reduction)]
        } ?? (0..<2).map { _ in GradientSum(count: count, reduction: reduction) }
        outgoing = sums.map { sum in
            SharedPayload(borrowing: UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!),
                          byteCount: sum.valueBytes.count, owner: sum)
        }
        hasRegion = resultRegion != nil
        self.packs = packs && reduction == .exact
        packedOutgoing = self.packs ? sums.map { _ in SharedPayload(byteCount: cexact_pack_bound(count)) } : []
        floatIndices = .allocate(capacity: Codec.maximumPartArrays)
        floatTargets = .allocate(capacity: Codec.maximumPartArrays)
        floatStatistics = .allocate(capacity: Codec.maximumPartArrays)
        self.threads = threads
        chunk = 4 * max(1, threads)
        self.send = send
        self.waitUntilIdle = waitUntilIdle
        self.beat = beat
    }

    deinit {
        floatIndices.deallocate()
        floatTargets.deallocate()
        floatStatistics.deallocate()
    }

    private var parameterCount: Int { weights.parameters.count }
    /// How the job's parameters are cut into parts (results sent in parts, spot checks).
    private let parts: PartSplit
    /// The clock the computing time of a result is read from (passed in: the session keeps no clock of its own).
    private let now: () -> ContinuousClock.Instant
    /// How long the result being sent took to compute: from its payload free to its values final.
    private var computing: Duration = .zero

    /// Why this worker cannot compute `request`, as the error to send; nil if it can.
    func refusal(of request: AssignmentRequest) -> String? {
        guard weights.step == request.step else {
            return "assignment for step \(request.step) arrived without its weights"
        }
        guard request.batch < UInt64(plan.batchesPerEpoch), request.epoch < UInt64(Int32.max) else {
            return "assignment for batch \(request.batch) of epoch \(request.epoch) is outside the job's "
                + "\(plan.batchesPerEpoch) batches"
        }
        let shardCount = slices.computers[0].microShardCount(batchSize: plan.range(ofBatch: Int(request.batch)).count)
        guard let last = request.ranges.last, last.upperBound <= shardCount else {
            return "assignment \(describe(request.ranges)) is outside batch \(request.batch)'s \(shardCount) micro-shards"
        }
        return nil
    }

    /// Computes `request` (checked with `refusal`) and sends its result.
    func run(_ request: AssignmentRequest) throws {
        if orderEpoch != Int(request.epoch) {
            plan.writeOrder(epoch: Int(request.epoch), into: order.elements)
            orderEpoch = Int(request.epoch)
        }
        let batch = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(order.elements)[plan.range(ofBatch: Int(request.batch))])
        let slot = hasRegion ? request.resultSlot : nil
        // No region: two sums in turn. A region: the named slot, or the sum of its own.
        let index = hasRegion ? slot ?? SharedRegion.resultSlots : turn
        let sum = sums[index], payload = outgoing[index]
        turn = 1 - turn
        let timeline = request.traced ? startTimeline() : nil
        defer { if timeline != nil { slices.recordSpans(nil) } }
        try waitUntilIdle(payload, request.step)
        timeline?.record(.waiting, 0, from: request.received)
        let started = now()
        sum.reset()
        // A few exact micro-shards go as their Floats (no more bytes than limbs, and neither the pass into limbs here
        // nor their check there), written where the limbs would be. Where bytes are dear, packed limbs (~6.3 bytes a
        // parameter) win over more than two micro-shards' Floats. In parts, up to two micro-shards' Floats, or the
        // sum's limbs packed part by part.
        let floatLimit = slot != nil || !(packs || request.inParts) ? GradientFrame.maximumFloatShards : 2
        let floatShards = options.reduction == .exact && request.microShards <= floatLimit ? request.microShards : 0
        let sender = request.inParts ? try partSender(request, payload: payload, index: index, floatShards: floatShards) : nil
        sender?.spans = timeline
        defer { slices.computers[0].network.onLayerGradient = nil }
        heldResults.removeAll { $0.index == index }
        let statistics = compute(request, batch: batch, into: sum, payload: payload, floatShards: floatShards)
        #if DEBUG
        if let delay = Self.computeDelay { Thread.sleep(forTimeInterval: Double(delay) / 1000) }
        #endif
        computing = now() - started
        #if DEBUG
        if Self.flipsBit { flipBit(sum: sum, payload: payload, floatShards: floatShards) }
        if Self.sendsImpossibleLimbs && options.reduction == .exact && floatShards == 0 {
            UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!).storeBytes(of: Int64.max / 2, as: Int64.self)
        }
        #endif
        heldResults.append(HeldResult(step: request.step, attempt: request.attempt, index: index, floatShards: floatShards))
        if let sender {
            try sendParts(request, sender, sum: sum, statistics: statistics, floatShards: floatShards)
        } else {
            try sendWhole(request, sum: sum, payload: payload, index: index, statistics: statistics ?? counts(of: sum),
                          slot: slot, floatShards: floatShards, timeline: timeline)
        }
    }

    /// Answers the coordinator's spot check of a part's mean: the result's values at the parameters it names, as they
    /// went to the part's owner (exact: the sum's limbs, or each micro-shard's Floats; fast: the sum).
    func answer(_ check: SpotCheck, step: UInt64) throws {
        var values = SpotValues.Values.notHeld
        if let held = heldResults.first(where: { $0.step == step && $0.attempt == check.attempt }),
           check.part < parts.count {
            let indices = check.offsets.map { parts[check.part].lowerBound + $0 }
            let bytes = UnsafeRawPointer(sums[held.index].valueBytes.baseAddress!), count = parameterCount
            if options.reduction == .exact && held.floatShards == 0 {
                var limbs = [UInt8](repeating: 0, count: Int(CEXACT_BYTES_PER_PARAMETER) * indices.count)
                let lows = Int(cexact_low_limbs_offset(indices.count)), windows = Int(cexact_windows_offset(indices.count))
                for (j, i) in indices.enumerated() {
                    for byte in 0..<8 {
                        limbs[8 * j + byte] = bytes.load(fromByteOffset: 8 * i + byte, as: UInt8.self)
                        limbs[lows + 8 * j + byte] = bytes.load(fromByteOffset: Int(cexact_low_limbs_offset(count)) + 8 * i + byte,
                                                                as: UInt8.self)
                    }
                    limbs[windows + j] = bytes.load(fromByteOffset: Int(cexact_windows_offset(count)) + i, as: UInt8.self)
                }
                values = .limbs(limbs)
            } else {
                // Fast: the sum's Floats; exact: each micro-shard's, array after array, where the limbs would be.
                let arrays = max(1, held.floatShards), floats = outgoing[held.index].bytes.assumingMemoryBound(to: Float.self)
                values = .floats(arrays: arrays, (0..<arrays).flatMap { a in indices.map { floats[a * count + $0] } })
            }
        }
        try send(Codec.spotValues(SpotValues(attempt: check.attempt, revision: check.revision, part: check.part,
                                             count: check.offsets.count, values: values),
                                  job: ids.job, step: step, worker: ids.worker))
    }

    /// Traced results' spans: this thread's (0), then one recorder per computing thread; made at the first.
    private var recorders: [SpanRecorder] = []

    /// Empties the recorders and hands the computing threads theirs; returns this thread's.
    private func startTimeline() -> SpanRecorder {
        if recorders.isEmpty { recorders = [SpanRecorder(thread: 0)] + slices.makeRecorders() }
        for recorder in recorders { recorder.reset() }
        slices.recordSpans(Array(recorders.dropFirst()))
        return recorders[0]
    }

    /// A traced result's `spans` report: every recorder's spans, from when the assignment was in. Sent just before the
    /// result's last message, so the coordinator has it when the result is in.
    private func sendTimeline(of request: AssignmentRequest) throws {
        let sent = SpanRecorder.now(), received = min(request.received, sent)
        var entries: [TimelineReport.Entry] = [], cut = 0
        for span in recorders.lazy.flatMap(\.spans) {
            guard entries.count < TimelineReport.maximumEntries else {
                cut += 1
                continue
            }
            let start = min(max(span.start, received), sent), end = min(max(span.end, start), sent)
            entries.append(TimelineReport.Entry(kind: span.kind.rawValue, thread: span.thread, index: span.index,
                                                start: start - received,
                                                duration: UInt32(min(end - start, UInt64(UInt32.max)))))
        }
        let report = TimelineReport(attempt: request.attempt, received: received, sent: sent,
                                    dropped: UInt64(recorders.reduce(cut) { $0 + $1.dropped }), entries: entries)
        try send(Codec.spans(report, job: ids.job, step: request.step, worker: ids.worker))
    }

    /// The assignment's micro-shards into `sum`, or (`floatShards` > 0) each one's Floats into `payload` and their
    /// counts (nil: the counts are the sum's, read once it is whole).
    private func compute(_ request: AssignmentRequest, batch: UnsafeBufferPointer<Int>, into sum: GradientSum,
                         payload: SharedPayload, floatShards: Int) -> ExactSummary? {
        let parameters = weights.parameters.pointer
        guard floatShards > 0 else {
            for (i, range) in request.ranges.enumerated() {
                for start in stride(from: range.lowerBound, to: range.upperBound, by: chunk) {
                    // In parts, an exact sum holds the last micro-shards until each part is packed
                    // (`sendPackedLimbs`); only the last call's, which nothing computes over before then.
                    sum.holdsInputs = request.inParts && options.reduction == .exact
                        && i == request.ranges.count - 1 && start + chunk >= range.upperBound
                    slices.accumulate(batch: batch, microShards: start ..< min(start + chunk, range.upperBound),
                                      data: data, parameters: parameters, into: sum)
                    beat()
                }
            }
            return nil
        }
        // The sum's memory, limbs until now, holds Floats for this result.
        let floats = payload.bytes.bindMemory(to: Float.self, capacity: floatShards * parameterCount)
        for (i, index) in request.ranges.joined().enumerated() {
            floatIndices[i] = index
            floatTargets[i] = floats + parameterCount * i
        }
        slices.gradients(batch: batch, microShards: UnsafeBufferPointer(start: floatIndices, count: floatShards),
                         data: data, parameters: parameters,
                         into: UnsafeBufferPointer(start: floatTargets, count: floatShards), statistics: floatStatistics)
        beat()
        return GradientSum.exactSummary(of: UnsafeBufferPointer(start: floatStatistics, count: floatShards))
    }

    /// A sum's counts, read once it is whole.
    private func counts(of sum: GradientSum) -> ExactSummary {
        ExactSummary(samples: sum.samples, correct: sum.correct, loss: sum.lossWords, overflowed: sum.overflowed)
    }

    /// The result's header and its values: in the region (an empty frame), as Floats, packed limbs (only when smaller,
    /// which they always are for real gradients) or limbs.
    private func sendWhole(_ request: AssignmentRequest, sum: GradientSum, payload: SharedPayload, index: Int,
                           statistics: ExactSummary, slot: Int?, floatShards: Int, timeline: SpanRecorder?) throws {
        var values: Message?, packed = false
        if slot != nil {
            values = try Message(copying: [UInt8]())
        } else if floatShards > 0 {
            values = try Message(sharing: payload, byteCount: 4 * parameterCount * floatShards)
        } else if packs {
            let target = packedOutgoing[index]
            try waitUntilIdle(target, request.step)
            let started = timeline == nil ? 0 : SpanRecorder.now()
            let length = cexact_pack(sum.valueBytes.baseAddress!, parameterCount,
                                     target.bytes.assumingMemoryBound(to: UInt8.self))
            timeline?.record(.packResult, 0, from: started)
            if length < sum.valueBytes.count {
                values = try Message(sharing: target, byteCount: length)
                packed = true
            }
        }
        if timeline != nil { try sendTimeline(of: request) }
        try send([header(request, statistics, slot: slot, packed: packed, floatShards: floatShards),
                  values ?? Message(sharing: payload)])
    }

    private func header(_ request: AssignmentRequest, _ statistics: ExactSummary, slot: Int? = nil, packed: Bool = false,
                        floatShards: Int = 0, inParts: Bool = false) throws -> Message {
        try Codec.gradientHeader(job: ids.job, step: request.step, worker: ids.worker, samples: statistics.samples,
                                 correct: statistics.correct, lossHigh: statistics.loss.high,
                                 lossLow: statistics.loss.low, lossWindow: statistics.loss.window,
                                 exact: options.reduction == .exact, overflowed: statistics.overflowed,
                                 attempt: request.attempt, regionSlot: slot, packed: packed, floatShards: floatShards,
                                 inParts: inParts, computing: computing)
    }

    /// In parts: a sender of the result's arrays; with one thread computing, each part goes as soon as backward has
    /// finished it.
    private func partSender(_ request: AssignmentRequest, payload: SharedPayload, index: Int,
                            floatShards: Int) throws -> PartSender {
        let arrays = max(floatShards, 1)
        let ids = ids
        let sender = PartSender(payload: payload, arrays: arrays, parts: parts, send: send) { array, part, form in
            try Codec.gradientPartHeader(job: ids.job, step: request.step, worker: ids.worker, attempt: request.attempt,
                                         array: array, arrays: arrays, part: part, form: form)
        }
        (sender.route, sender.ownsPart) = (route, ownsPart)
        if request.packsFloats && (options.reduction == .fast || floatShards > 0) {
            if packedFloatParts[index] == nil { packedFloatParts[index] = PackedParts() }
            sender.packedFloats = try packedFloatParts[index]!.payload(
                byteCount: arrays * parts.packedRoom) { try waitUntilIdle($0, request.step) }
        }
        // Floats are final in place as backward finishes each block of a layer; limbs only at the end.
        let oneComputer = threads == 1 || floatShards == 1
        let oneSlice = floatShards > 0 || (options.reduction == .fast && request.ranges.count == 1
            && request.microShards <= chunk)
        if oneComputer && oneSlice {
            let network = slices.computers[0].network
            sender.skippedCalls = (arrays - 1) * network.gradientCallsPerSum
            network.onLayerGradient = { [unowned sender] in sender.layerDone(finalFrom: $0) }
        }
        return sender
    }

    /// Sends what `sender` has not (an exact sum's limbs packed part by part), then the result's counts.
    private func sendParts(_ request: AssignmentRequest, _ sender: PartSender, sum: GradientSum,
                           statistics: ExactSummary?, floatShards: Int) throws {
        if options.reduction == .exact && floatShards == 0 {
            let out = try packedParts.payload(byteCount: cexact_pack_bound(parameterCount)) {
                try waitUntilIdle($0, request.step)
            }
            try sender.sendPackedLimbs(of: sum, into: out)
        }
        if let failure = sender.failure { throw failure }
        try sender.sendParts()
        if sender.spans != nil { try sendTimeline(of: request) }
        let digests = replicaDigests?(request.step) ?? []
        try send([header(request, statistics ?? counts(of: sum), inParts: true), ReplicaDigests.frame(digests)])
    }

    #if DEBUG
    /// Test builds only: a worker whose first parameter's sum is off (a unit of its high limb, or the first Float moved
    /// by a finite 0.1 %), so the tests can check that `equivalence` catches an exact run that differs.
    private func flipBit(sum: GradientSum, payload: SharedPayload, floatShards: Int) {
        guard options.reduction == .exact else { return }
        let first = floatShards > 0 ? payload.bytes : UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!)
        if floatShards > 0 {
            let value = first.load(as: Float.self)
            first.storeBytes(of: value * 1.001 + 0.001, as: Float.self)
        } else {
            first.storeBytes(of: first.load(as: Int64.self) ^ 1, as: Int64.self)
        }
    }
    #endif
}
