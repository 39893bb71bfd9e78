import Engine
import Wire

/// The sharded layout's replicas at the coordinator: the key each worker digests its replica with, what the digests
/// must be (`ReplicaExpectation`, checked by the core: `CoordinatorCore+Replicas.swift`), the replica sent whole, and
/// who may own parts.
extension Coordinator {
    /// What each member's digests must be: the step's weights' and state's under its key, made on a thread while the
    /// members compute (nothing of the step is applied here before every count is in, which waits for them).
    func expectReplicas(_ members: [Int], fromMeans: Set<Int>, order: StepOrder) {
        let expected = members.compactMap { m in
            sharded.replicaKeys[core.table[m].id].map { (index: m, seed: $0, fromMeans: fromMeans.contains(m)) }
        }
        sharded.expectation = ReplicaExpectation(step: order.step, members: expected,
                                                 buffers: [order.parameters] + order.optimizer.state, parts: parts)
        core.replicasResyncable = true
    }

    /// The step's expected digests, into the core, before it reads a count (waits until they are made); only those
    /// of the sharded step in flight, so a step given up leaves none for the next.
    func awaitReplicaChecks() {
        guard let expectation = sharded.expectation else { return }
        sharded.expectation = nil
        let checks = expectation.wait()
        if core.sharding && core.round?.step == expectation.step { core.replicaChecks = checks }
    }

    /// The key seed of worker `worker`'s digests this step (one drawn now for a member sent the weights after the
    /// step began: its digests are not compared, since the trainer may have applied parts by then).
    func replicaKey(of worker: UInt32) -> UInt64 {
        if let seed = sharded.replicaKeys[worker] { return seed }
        let seed = ReplicaDigests.drawSeed()
        sharded.replicaKeys[worker] = seed
        return seed
    }

    /// Who may own parts among `members`: those no replica named twice (`CoordinatorCore.accuse`), and the
    /// coordinator.
    func owning(_ members: [Int]) -> [Int] {
        members.filter { !core.ownsNoParts(core.table[$0]) } + [ReductionLayout.coordinator]
    }

    /// The weights and the optimizer's state, for a member that joins the layout.
    func weightsWithState(step: Int, worker: UInt32) throws -> [Message] {
        guard let order = sharded.order else { throw ClusterError("no sharded step to send the weights of") }
        let count = order.parameters.count, state = order.optimizer.state
        // Written once into memory the message then shares.
        let payload = SharedPayload(byteCount: 4 * (1 + state.count) * count)
        let floats = payload.bytes.assumingMemoryBound(to: Float.self)
        floats.update(from: order.parameters.pointer, count: count)
        for (i, buffer) in state.enumerated() { (floats + (i + 1) * count).update(from: buffer.pointer, count: count) }
        let header = try Codec.shardedWeightsHeader(job: jobID, step: UInt64(step), parameterCount: count,
                                                    stateBuffers: state.count, optimizerSteps: order.optimizer.steps,
                                                    replicaKey: replicaKey(of: worker))
        return [header, try Message(sharing: payload)]
    }
}
