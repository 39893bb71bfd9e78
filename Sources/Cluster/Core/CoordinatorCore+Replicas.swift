import Wire

/// The sharded layout's replicas, checked by their digests (`ReplicaDigests`): a result counts only when the weights
/// it was computed from are the coordinator's, part by part.
extension CoordinatorCore {
    /// What one member's digests of the step's weights must be, and whether it made them from the last step's means
    /// (rather than taking the coordinator's with the optimizer's state).
    struct ReplicaCheck {
        let digests: [UInt64]
        let fromMeans: Bool
    }

    /// Whether `frame`'s weights are the step's. Where they differ, what the member computed this step is computed
    /// again, and it takes the step's weights with the optimizer's state from here (it may be a victim: it is not
    /// lost, unless a part of the step is applied already, when the coordinator no longer holds the step's weights).
    /// The owners of those parts' last means are accused; one accused by two members sent them means other than the
    /// ones it sent the coordinator, which passed their checks there, and is lost for it.
    mutating func replicaHolds(_ index: Int, _ frame: GradientFrame, step: Int) -> Bool {
        guard let check = replicaChecks[index] else { return true }
        guard frame.replicaDigests.count == check.digests.count else {
            lose(index, .mismatched("a result with \(frame.replicaDigests.count) digests of its weights, where the "
                + "step's \(check.digests.count) parts ask one each"))
            return false
        }
        let differing = check.digests.indices.filter { frame.replicaDigests[$0] != check.digests[$0] }
        guard !differing.isEmpty else { return true }
        let suspects = check.fromMeans
            ? Set(differing.compactMap { meansOwners.indices.contains($0) ? meansOwners[$0] : nil }).subtracting([index])
            : []
        let named = suspects.sorted().map { table[$0].label }.joined(separator: ", ")
        let why = "its weights for step \(step) differ from the coordinator's in "
            + "\(differing.count == 1 ? "part" : "parts") \(Self.listed(differing))"
            + (suspects.isEmpty ? "" : ", whose means \(named) sent at step \(step - 1)")
        if replicasResyncable {
            resync(index, why: why, step: step)
        } else {
            lose(index, .staleWeights(why))
        }
        for owner in suspects.sorted() where table[owner].state != .lost {
            accusations[owner, default: []].insert(index)
            let accusers = accusations[owner]!
            guard accusers.count >= 2 else { continue }
            lose(owner, .mismatched("sent \(accusers.sorted().map { table[$0].label }.joined(separator: " and ")) "
                + "means at step \(step - 1) other than the ones it sent the coordinator, which passed their checks"))
            // Two members' word against it, each checked against the coordinator's own weights: not admitted again
            // (its clean steps between lies would reset a count of losses in a row).
            if notAdmittedAgain.count >= MemberTable.capacity { notAdmittedAgain.removeAll() }
            notAdmittedAgain[table[owner].identity] = "this worker sent members means other than the ones it sent "
                + "the coordinator; it is not admitted again in this run"
        }
        return false
    }

    /// `index`'s work of this step is taken back, answered or not, and it is sent the step's weights with the
    /// optimizer's state before it computes again (and the next step's too: its replica missed this step's start).
    private mutating func resync(_ index: Int, why: String, step: Int) {
        let moved = round!.retract(index)
        staleReplicas.insert(index)
        (table[index].weightsStep, table[index].meansStep) = (nil, nil)
        if !round!.holds(index) { table[index].state = .ready }
        emit(.log("step \(step): \(table[index].label): \(why); its micro-shards \(describe(moved)) are computed "
            + "again, and it takes the step's weights with the optimizer's state"))
    }

    /// Parts as a line names them: the first few, and how many more.
    private static func listed(_ parts: [Int]) -> String {
        parts.prefix(4).map(String.init).joined(separator: ", ") + (parts.count > 4 ? " and \(parts.count - 4) more" : "")
    }
}
