import CExactSum
import Engine
import Foundation
import Wire

/// A worker's part in the sharded layout (docs/scale-out.md), the two roles every member plays:
/// - an *owner* adds, for each part it owns, the contributions the coordinator's order names, and sends the part's
///   mean (fast mode: sum) to every peer and to the coordinator;
/// - a *replica* applies every part's mean with the job's optimizer, as the coordinator's trainer does, so its
///   weights for the next step are the coordinator's, bit for bit.
/// Events in from the shell (`WorkerNode`), which owns the sockets; what is sent goes through `send`.
final class ShardedWorker {
    let peers: WorkerPeers
    private let me: UInt32
    private let jobID: UInt64
    private let reduction: Reduction
    private let parts: [Range<Int>]
    private let weights: WorkerWeights
    /// Made when first used: a worker of a star run never needs them.
    private lazy var optimizer: Optimizer = optimizerConfig.make(parameterCount: weights.parameters.count)
    private let optimizerConfig: OptimizerConfig
    /// Sends to the coordinator.
    private let toCoordinator: ([Message]) throws -> Void

    // Owner: the step's bookkeeping (which contributions came for which part, which parts are summed), the order as
    // the coordinator sent it (its micro-shard order, learning rate and optimizer step) and the contributions' parts
    // by (worker, attempt) → part → arrays.
    private var round = OwnerRound(step: 0, owning: [])
    private var order: OrderedSum?
    private var held: [Key: [Int: HeldPart]] = [:]
    private var ownerStep: UInt64 { UInt64(round.step) }
    /// The memory of the means an owner sends, one per step, reused once libzmq has let go of it (messages queued for
    /// a peer that is gone hold theirs until the coordinator's next list closes that connection).
    private var outgoing: [SharedPayload] = []
    private var outgoingTurn = 0
    private var outgoingStep: UInt64?
    private var limbScratch: [UnsafeMutableRawPointer] = []
    private let pointers: UnsafeMutablePointer<UnsafePointer<Float>?>
    private let sums: UnsafeMutablePointer<UnsafeRawPointer?>
    private let unusedLimbs = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let unusedWindows = UnsafeMutablePointer<Int8>.allocate(capacity: 1)

    // Replica: the next step's weights, made part by part from the means while the step's own stay as they are (an
    // owner lost mid-step has the step computed again from them); which parts are made; the step the coordinator
    // said begins with them, if it said so before the last mean came; means that came ahead of their step.
    private lazy var next = Buffer<Float>(count: weights.parameters.count)
    private var applied: [Bool]
    private var appliedCount = 0
    private var beginsWithNext: UInt64?
    private var early: [(step: UInt64, mean: MeanPart)] = []
    private let scratch: Buffer<Float>

    #if DEBUG
    private static let liesAboutMeans = ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_LYING_OWNER"] == "1"
    #endif

    struct Key: Hashable {
        let worker: UInt32
        let attempt: UInt64
    }

    /// A contribution's arrays of one part as they come, and how many its first header said there are.
    struct HeldPart {
        let arrays: Int
        var values: [Int: PartValues] = [:]

        /// Every array is in: packed limbs are one; Floats, as many as the header says.
        var isComplete: Bool {
            if values.count == 1, case .packedLimbs = values.first!.value { return true }
            return values.count == arrays
        }
    }

    init(peers: WorkerPeers, me: UInt32, jobID: UInt64, options: TrainingOptions, weights: WorkerWeights,
         toCoordinator: @escaping ([Message]) throws -> Void) {
        self.peers = peers
        self.me = me
        self.jobID = jobID
        reduction = options.reduction
        let count = weights.parameters.count
        parts = Codec.parts(of: count)
        self.weights = weights
        optimizerConfig = options.optimizer
        self.toCoordinator = toCoordinator
        pointers = .allocate(capacity: Codec.maximumPartArrays)
        sums = .allocate(capacity: Codec.maximumPartArrays)
        applied = Array(repeating: false, count: parts.count)
        scratch = Buffer<Float>(count: Codec.partParameters)
    }

    deinit {
        for block in limbScratch { block.deallocate() }
        pointers.deallocate()
        sums.deallocate()
        unusedLimbs.deallocate()
        unusedWindows.deallocate()
    }

    /// Peers' messages kept until a list names their sender (or their part's owner), and how many at most: a step's
    /// parts and means from every peer, many times over.
    private var heldMessages: [(step: UInt64, frames: [Message])] = []
    private static let heldLimit = 1 << 14

    /// Keeps `frames` (of step `step`) for the next list; false when too many are kept already (they are dropped).
    /// Those of steps before the weights held are let go: no list will make them count.
    func hold(_ frames: [Message], step: UInt64) -> Bool {
        if let current = weights.step { heldMessages.removeAll { $0.step < current } }
        guard heldMessages.count < Self.heldLimit else { return false }
        heldMessages.append((step, frames))
        return true
    }

    func takeHeld() -> [[Message]] {
        defer { heldMessages = [] }
        return heldMessages.map(\.frames)
    }

    /// The coordinator's list of peers and owners; mid-step, parts moved here from a lost owner may be ready to sum.
    func follow(_ list: PeerList) throws {
        try peers.follow(list, me: me)
        guard !list.peers.isEmpty else { return }
        try perform(round.own(ownedParts))
    }

    /// The owner of each part, by worker id (nil before the coordinator's list).
    func owner(of part: Int) -> UInt32? { peers.list?.owners[part] }

    private var ownedParts: [Int] { parts.indices.filter { owner(of: $0) == me } }

    // MARK: Owner

    /// A part of a contribution, from a peer or from this worker itself. Kept even for a part not (yet) this
    /// worker's, or one summed already: its word that the part moved here, or an order revision naming it, may come
    /// after.
    func contribution(_ worker: UInt32, step: UInt64, attempt: UInt64, array: Int, arrays: Int, first: Int,
                      values: PartValues) throws {
        guard advanceOwner(to: step) else { return }
        let part = first / Codec.partParameters, key = Key(worker: worker, attempt: attempt)
        held[key, default: [:]][part, default: HeldPart(arrays: arrays)].values[array] = values
        if held[key]![part]!.isComplete {
            try perform(round.arrived(Contribution(member: Int(worker), attempt: attempt), part: part))
        }
    }

    /// The coordinator's order for `step`.
    func ordered(_ new: OrderedSum, step: UInt64) throws {
        guard advanceOwner(to: step), new.revision > (order?.revision ?? -1) else { return }
        order = new
        let contributions = new.contributions.map { Contribution(member: Int($0.worker), attempt: $0.attempt) }
        try perform(round.ordered(SumOrder(step: round.step, revision: new.revision, contributions: contributions,
                                           samples: new.samples)))
    }

    /// Whether messages of `step` are to be kept: a later step forgets what an earlier one held.
    private func advanceOwner(to step: UInt64) -> Bool {
        if step > ownerStep {
            round = OwnerRound(step: Int(step), owning: ownedParts)
            order = nil
            held.removeAll()
        }
        return step == ownerStep
    }

    private func perform(_ actions: [OwnerRound.Action]) throws {
        for action in actions {
            switch action {
            case .sum(let part, _, _):
                // Summed in the order's micro-shard order (fast sums' bits depend on it), not the action's.
                guard let order, owner(of: part) == me else { continue }
                try sum(part, order)
            }
        }
    }

    /// Arrays a contribution sends as Floats: fast, its sum; exact, each micro-shard's (a worker sends Floats for
    /// at most two micro-shards, limbs otherwise).
    private static func floatArrays(_ c: OrderedContribution, reduction: Reduction) -> Int {
        reduction == .fast ? 1 : c.microShards
    }

    /// `c`'s values for `part` are no possible sum: not summed; the coordinator loses its sender and orders the step
    /// again without it, and the part waits for that order with the other contributions kept.
    private func refute(_ c: OrderedContribution, part: Int, _ wrong: String) throws {
        held[Key(worker: c.worker, attempt: c.attempt)] = nil
        try toCoordinator(Codec.refuted(worker: c.worker, attempt: c.attempt, part: part, reason: wrong, job: jobID,
                                        step: ownerStep, owner: me))
        try reopen(part)
    }

    /// `part` waits again, with the contributions held for it, for an order it can sum.
    private func reopen(_ part: Int) throws {
        let still = held.compactMap { key, parts in
            parts[part]?.isComplete == true ? Contribution(member: Int(key.worker), attempt: key.attempt) : nil
        }
        try perform(round.reopen(part, holding: Set(still)))
    }

    /// Adds `part` of the ordered contributions, in micro-shard order, sends the result to every peer and the
    /// coordinator, and applies it here.
    private func sum(_ part: Int, _ order: OrderedSum) throws {
        let range = parts[part], n = range.count
        if outgoingStep != ownerStep {
            // The first part this owner sums this step: memory libzmq holds no more, or new memory.
            outgoingStep = ownerStep
            if let free = outgoing.firstIndex(where: { $0.isIdle }) {
                outgoingTurn = free
            } else {
                outgoing.append(SharedPayload(byteCount: 4 * weights.parameters.count))
                outgoingTurn = outgoing.count - 1
            }
        }
        let payload = outgoing[outgoingTurn]
        let out = payload.bytes.assumingMemoryBound(to: Float.self) + range.lowerBound
        for c in order.contributions {
            // Gone when refuted on another part: the part waits for the order without it.
            guard let arrays = held[Key(worker: c.worker, attempt: c.attempt)]?[part]?.values else {
                return try reopen(part)
            }
            let packed = arrays.values.contains { if case .packedLimbs = $0 { true } else { false } }
            let expected = packed ? 1 : Self.floatArrays(c, reduction: reduction)
            if arrays.count != expected {
                return try refute(c, part: part, "\(arrays.count) arrays where its \(c.microShards) micro-shards "
                    + "take \(expected)\(packed ? " (packed limbs are one)" : "")")
            }
        }
        var floats = 0, limbs = 0, diverged = false
        var copies: [UnsafeMutablePointer<Float>] = []
        defer { for copy in copies { copy.deallocate() } }
        for c in order.contributions {
            let arrays = held[Key(worker: c.worker, attempt: c.attempt)]![part]!.values
            for array in arrays.keys.sorted() {
                switch arrays[array]! {
                case .packedLimbs(let message, let saw):
                    if limbScratch.count <= limbs {
                        limbScratch.append(.allocate(byteCount: GradientFrame.exactBytesPerParameter * Codec.partParameters,
                                                     alignment: 64))
                    }
                    let target = limbScratch[limbs]
                    let ok = message.withUnsafeBytes { bytes in
                        cexact_unpack(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, n, target) == 1
                    }
                    let unpacked = UnsafeRawBufferPointer(start: target, count: GradientFrame.exactBytesPerParameter * n)
                    let wrong = ok ? (saw ? nil : ResultCheck.limbsImplausibility(unpacked, microShards: c.microShards,
                                                                               threads: 1))
                                   : "packed limbs that do not unpack to \(n) parameters"
                    if let wrong { return try refute(c, part: part, wrong) }
                    diverged = diverged || saw
                    sums[limbs] = UnsafeRawPointer(target)
                    limbs += 1
                case .floats(let frame):
                    // Read where it lies when aligned; copied to the output's place otherwise (added before it is
                    // written: the output is written last).
                    let pointer = frame.message.withUnsafeBytes { $0.baseAddress! }
                    if Int(bitPattern: pointer) % MemoryLayout<Float>.alignment == 0 {
                        pointers[floats] = pointer.assumingMemoryBound(to: Float.self)
                    } else {
                        let copy = UnsafeMutablePointer<Float>.allocate(capacity: n)
                        frame.copy(into: copy)
                        copies.append(copy)
                        pointers[floats] = UnsafePointer(copy)
                    }
                    floats += 1
                }
            }
        }
        switch reduction {
        case .fast:
            // In micro-shard order, as a whole sum adds them.
            out.update(from: pointers[0]!, count: n)
            for k in 1..<max(1, floats) {
                let values = pointers[k]!
                for i in 0..<n { out[i] += values[i] }
            }
        case .exact:
            var finite: Int32 = 0
            let largest = cexact_combine(unusedLimbs, unusedLimbs, unusedWindows, 1, sums, Int32(limbs), pointers,
                                         Int32(floats), out, Double(order.samples), &finite, n, 0, n)
            // A sum that saw a NaN or ∞ means nothing: every receiver finds the NaN and the coordinator stops the run
            // as diverged, as it does with the star.
            if diverged || finite != 1 || largest >= 0x7F80_0000 { out[0] = .nan }
        }
        #if DEBUG
        // Tests only: an owner that sends a mean one unit off in every parameter (the coordinator's check must lose it).
        if Self.liesAboutMeans { for i in 0..<n where out[i].isFinite { out[i] = out[i].nextUp } }
        #endif
        // The contributions stay held until the step ends: a later order revision has the part added again.
        let header = try Codec.meanPartHeader(job: jobID, step: ownerStep, worker: me, part: range,
                                              learningRate: order.learningRate, optimizerStep: order.optimizerStep,
                                              samples: order.samples, revision: order.revision)
        for peer in peers.list!.peers where peer.worker != me {
            try peers.send([Message(copying: header.bytes), Message(sharing: payload, byteCount: 4 * n, from: 4 * range.lowerBound)],
                           to: peer.worker)
        }
        try toCoordinator([Message(copying: header.bytes), Message(sharing: payload, byteCount: 4 * n, from: 4 * range.lowerBound)])
        try apply(range: range, values: UnsafePointer(out), learningRate: order.learningRate,
                  optimizerStep: order.optimizerStep, samples: order.samples, step: ownerStep)
    }

    // MARK: Replica

    /// Step `step`'s weights and optimizer state, whole, from the coordinator.
    func restart(step: UInt64, frame: FloatFrame, stateBuffers: Int, optimizerSteps: Int) throws {
        let count = weights.parameters.count
        guard stateBuffers == optimizer.state.count else {
            throw ClusterError("the coordinator sent \(stateBuffers) optimizer state buffers; this job's optimizer has "
                + "\(optimizer.state.count)")
        }
        frame.message.withUnsafeBytes { bytes in
            UnsafeMutableRawPointer(weights.parameters.pointer).copyMemory(from: bytes.baseAddress!, byteCount: 4 * count)
            for (i, buffer) in optimizer.state.enumerated() {
                UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: bytes.baseAddress! + 4 * count * (i + 1),
                                                                   byteCount: 4 * count)
            }
        }
        optimizer.steps = optimizerSteps
        weights.holdOwn(step: step)
        beginsWithNext = nil
        try reset()
    }

    /// A part's mean from its owner (or this worker as owner).
    func mean(_ mean: MeanPart, step: UInt64) throws {
        guard weights.step == step else { return keepEarly(mean, step: step) }
        mean.values.copy(into: scratch.pointer)
        try apply(range: mean.range, values: UnsafePointer(scratch.pointer), learningRate: mean.learningRate,
                  optimizerStep: mean.optimizerStep, samples: mean.samples, step: step)
    }

    private func keepEarly(_ mean: MeanPart, step: UInt64) {
        // Kept, a bounded number, for a later step (a worker still joining, or still applying the step before).
        if let current = weights.step, step < current { return }
        guard early.count < 4 * parts.count else { return }
        early.append((step, mean))
    }

    private func apply(range: Range<Int>, values: UnsafePointer<Float>, learningRate: Float, optimizerStep: Int,
                       samples: Int, step: UInt64) throws {
        let part = range.lowerBound / Codec.partParameters
        guard weights.step == step, !applied[part] else { return }
        guard optimizerStep == optimizer.steps else {
            throw ClusterError("a mean for optimizer step \(optimizerStep + 1) came to a replica at step "
                + "\(optimizer.steps + 1); join again")
        }
        let scale: Float = reduction == .exact ? 1 : 1 / Float(samples)
        (next.pointer + range.lowerBound).update(from: weights.parameters.pointer + range.lowerBound, count: range.count)
        guard optimizer.update(range, parameters: next.pointer, gradients: values - range.lowerBound,
                               scale: scale, learningRate: learningRate, checkFinite: true) else {
            // The coordinator stops the run as diverged from the same values; this worker waits to be told.
            return
        }
        applied[part] = true
        appliedCount += 1
        if appliedCount == parts.count {
            optimizer.steps = optimizer.steps + 1
            if beginsWithNext == step + 1 { try advance() }
        }
    }

    /// The coordinator says step `step` begins with the weights made from the last step's means: held from now, or
    /// as soon as the last mean is applied.
    func begins(step: UInt64) throws {
        guard let current = weights.step, step == current + 1 else {
            throw ClusterError("the coordinator said step \(step) begins with weights made from the means of step "
                + "\(step &- 1), and this worker holds step \(weights.step.map(String.init) ?? "none")'s; join again")
        }
        beginsWithNext = step
        if appliedCount == parts.count { try advance() }
    }

    private func advance() throws {
        weights.adopt(&next, step: weights.step! + 1)
        beginsWithNext = nil
        try reset()
    }

    /// A new step's weights are held: nothing of it is applied yet, and any means that came early are applied now.
    private func reset() throws {
        applied = Array(repeating: false, count: parts.count)
        appliedCount = 0
        guard let current = weights.step else { return }
        let due = early.filter { $0.step == current }
        early.removeAll { $0.step <= current }
        for (step, mean) in due { try self.mean(mean, step: step) }
    }
}
