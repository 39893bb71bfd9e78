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
    let parts: PartSplit
    private let weights: WorkerWeights
    /// Made when first used: a worker of a star run never needs them.
    private lazy var optimizer: Optimizer = optimizerConfig.make(parameterCount: weights.parameters.count)
    private let optimizerConfig: OptimizerConfig
    /// Sends to the coordinator.
    private let toCoordinator: ([Message]) throws -> Void

    /// The owner's role: the parts the coordinator's list gives this worker.
    private lazy var partOwner = PartOwner(
        parts: parts, reduction: reduction,
        owns: { [unowned self] in owner(of: $0) == me },
        refute: { [unowned self] c, part, why, step in
            try toCoordinator(Codec.refuted(worker: c.worker, attempt: c.attempt, part: part, reason: why, job: jobID,
                                            step: step, owner: me))
        },
        deliver: { [unowned self] summed in try send(summed) })

    // Replica: the next step's weights, made part by part from the means while the step's own stay as they are (an
    // owner lost mid-step has the step computed again from them); which parts are made; the step the coordinator
    // said begins with them, if it said so before the last mean came; means that came ahead of their step.
    private lazy var next = Buffer<Float>(count: weights.parameters.count)
    private var applied: [Bool]
    private var appliedCount = 0
    private var beginsWithNext: UInt64?
    private var early: [(step: UInt64, mean: MeanPart)] = []
    private let scratch: Buffer<Float>
    /// The key the coordinator drew for this worker's digests of a step's replica, and the step; the digests, made
    /// as the step's weights and state are first held (means of the step then change the state).
    private var replicaKey: (step: UInt64, seed: UInt64)?
    private var stepDigests: (step: UInt64, values: [UInt64])?

    #if DEBUG
    /// Tests only: "1", an owner whose means are one unit off in every parameter (the coordinator's spot check must
    /// lose it); "peers", one that sends that to its peers only, and the true mean to the coordinator and itself (the
    /// replicas' digests must lose it); "one", the same to one peer only (its victim must compute again, and no
    /// honest worker be lost).
    private static let lyingOwner = ProcessInfo.processInfo.environment["SHARDTRAIN_TEST_LYING_OWNER"]
    #endif

    init(peers: WorkerPeers, me: UInt32, jobID: UInt64, options: TrainingOptions, parts: PartSplit,
         weights: WorkerWeights, toCoordinator: @escaping ([Message]) throws -> Void) {
        self.peers = peers
        self.me = me
        self.jobID = jobID
        reduction = options.reduction
        self.parts = parts
        self.weights = weights
        optimizerConfig = options.optimizer
        self.toCoordinator = toCoordinator
        applied = Array(repeating: false, count: parts.count)
        scratch = Buffer<Float>(count: parts.size)
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
        try partOwner.layoutChanged()
    }

    /// The owner of each part, by worker id (nil before the coordinator's list).
    func owner(of part: Int) -> UInt32? { peers.list?.owners[part] }


    // MARK: Owner

    /// A part of a contribution, from a peer or from this worker itself.
    func contribution(_ worker: UInt32, step: UInt64, attempt: UInt64, array: Int, arrays: Int, first: Int,
                      values: PartValues) throws {
        try partOwner.contribution(worker, step: step, attempt: attempt, array: array, arrays: arrays, first: first,
                               values: values)
    }

    /// The coordinator's order for `step`.
    func ordered(_ new: OrderedSum, step: UInt64) throws {
        try partOwner.ordered(new, step: step)
    }

    /// A part this worker summed: to every peer and the coordinator, and applied here.
    private func send(_ summed: PartOwner.Summed) throws {
        let range = summed.range, n = range.count, order = summed.order
        #if DEBUG
        if Self.lyingOwner == "1" { for i in 0..<n where summed.values[i].isFinite { summed.values[i] = summed.values[i].nextUp } }
        #endif
        let frames = try summed.meanFrames(job: jobID, worker: me)
        #if DEBUG
        if Self.lyingOwner == "peers" || Self.lyingOwner == "one" { return try equivocate(summed, frames) }
        #endif
        for peer in peers.list!.peers where peer.worker != me { try peers.send(try frames(), to: peer.worker) }
        try toCoordinator(try frames())
        try apply(range: range, values: UnsafePointer(summed.values), learningRate: order.learningRate,
                  optimizerStep: order.optimizerStep, samples: order.samples, step: summed.step)
    }

    #if DEBUG
    /// Tests only: the true mean to the coordinator and this worker's replica, one a unit off everywhere to the peers
    /// (or the first of them, "one"), the true one to any other.
    private func equivocate(_ summed: PartOwner.Summed, _ frames: () throws -> [Message]) throws {
        let range = summed.range, order = summed.order
        // Copied: the frames share the values, which change below.
        try toCoordinator(try frames().map { frame in try frame.withUnsafeBytes { try Message(copying: $0) } })
        try apply(range: range, values: UnsafePointer(summed.values), learningRate: order.learningRate,
                  optimizerStep: order.optimizerStep, samples: order.samples, step: summed.step)
        let others = peers.list!.peers.map(\.worker).filter { $0 != me }
        let victims = Self.lyingOwner == "one" ? Array(others.prefix(1)) : others
        for peer in others where !victims.contains(peer) {
            try peers.send(try frames().map { frame in try frame.withUnsafeBytes { try Message(copying: $0) } }, to: peer)
        }
        for i in 0..<range.count where summed.values[i].isFinite { summed.values[i] = summed.values[i].nextUp }
        let lie = try summed.meanFrames(job: jobID, worker: me)
        for peer in victims { try peers.send(try lie(), to: peer) }
    }
    #endif

    // MARK: Replica

    /// Step `step`'s weights and optimizer state, whole, from the coordinator.
    func restart(step: UInt64, frame: FloatFrame, stateBuffers: Int, optimizerSteps: Int, replicaKey: UInt64) throws {
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
        self.replicaKey = (step, replicaKey)
        weights.holdOwn(step: step)
        beginsWithNext = nil
        digestReplica()
        try reset()
    }

    /// A part's mean from its owner (or this worker as owner).
    func mean(_ mean: MeanPart, step: UInt64) throws {
        guard weights.step == step else { return keepEarly(mean, step: step) }
        // Read where they lie unless the optimizer would read past them (a part that ends off a 16-value block).
        let values = (Buffer<Float>.readsWhole(mean.range.count) ? mean.values.inPlace : nil) ?? {
            mean.values.copy(into: scratch.pointer)
            return UnsafePointer(scratch.pointer)
        }()
        try apply(range: mean.range, values: values, learningRate: mean.learningRate,
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
        let part = parts.part(startingAt: range.lowerBound)
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
    func begins(step: UInt64, replicaKey: UInt64) throws {
        guard let current = weights.step, step == current + 1 else {
            throw ClusterError("the coordinator said step \(step) begins with weights made from the means of step "
                + "\(step &- 1), and this worker holds step \(weights.step.map(String.init) ?? "none")'s; join again")
        }
        self.replicaKey = (step, replicaKey)
        beginsWithNext = step
        if appliedCount == parts.count { try advance() }
    }

    /// The digests of step `step`'s replica as it began, which this worker computed from, under the key the
    /// coordinator drew for it (nil when it sent none for the step).
    func weightsDigests(step: UInt64) -> [UInt64]? {
        stepDigests?.step == step ? stepDigests?.values : nil
    }

    /// The step's weights and state are held, none of its means applied yet: their digests, if the key is here.
    private func digestReplica() {
        guard let replicaKey, let step = weights.step, replicaKey.step == step else { return }
        let arrays = [UnsafePointer(weights.parameters.pointer)] + optimizer.state.map { UnsafePointer($0.pointer) }
        stepDigests = (step, ReplicaDigests.digests(of: arrays, parts: parts, seeds: [replicaKey.seed])[0])
    }

    private func advance() throws {
        weights.adopt(&next, step: weights.step! + 1)
        beginsWithNext = nil
        digestReplica()
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
