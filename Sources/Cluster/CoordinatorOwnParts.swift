import Engine
import Wire

/// The coordinator's own share of the sharded layout's parts (`ReductionLayout.coordinator`; docs/scale-out.md): the
/// workers send those parts here over their connection, it sums them as a worker owner does (`PartOwner`) and sends
/// each part's mean to every member. So its link carries a share of the step's traffic, as every worker host's does,
/// and each worker's carries less. Its own means need no spot check.
extension Coordinator {
    /// The owner role, made at the first sharded step.
    func ownParts() -> PartOwner {
        if let owner = sharded.owner { return owner }
        let owner = PartOwner(
            parts: parts, reduction: job.options.reduction,
            owns: { [unowned self] in ownsPart($0) },
            // Handled once the owner role returns (`settleOwnParts`): sending may lose a member, which moves parts.
            refute: { [unowned self] c, part, why, step in sharded.ownRefusals.append((c, part, why, step)) },
            deliver: { [unowned self] summed in sharded.ownSums.append(summed) })
        sharded.owner = owner
        return owner
    }

    /// Whether the layout gives this coordinator `part`.
    private func ownsPart(_ part: Int) -> Bool { sharded.layout?.owners[part] == ReductionLayout.coordinator }

    /// A part of a result for one of the parts this coordinator owns (the core checked it against its assignment).
    func keepOwnPart(_ member: Int, _ order: PartOrder) throws {
        // Only parts this coordinator owns are kept (the layout's list sends no others here).
        guard let step = sharded.step?.step, ownsPart(parts.part(startingAt: order.first)) else { return }
        try ownParts().contribution(core.table[member].id, step: UInt64(step), attempt: order.attempt,
                                    array: order.array, arrays: order.arrays, first: order.first, values: order.values)
        try settleOwnParts()
    }

    /// The order for the step in flight, as the worker owners get it.
    func orderOwnParts(_ order: OrderedSum, step: Int) throws {
        try ownParts().ordered(order, step: UInt64(step))
        try settleOwnParts()
    }

    /// Parts moved here from a lost owner may be ready to sum.
    func ownPartsMoved() throws {
        try ownParts().layoutChanged()
        try settleOwnParts()
    }

    /// Loses the members whose values the owner role refused, then sends and applies what it summed (a refusal
    /// loses its sender and has the step computed again, under an order the sums queued with it do not follow).
    func settleOwnParts() throws {
        while !sharded.ownSums.isEmpty || !sharded.ownRefusals.isEmpty {
            guard !sharded.ownRefusals.isEmpty else {
                try shareOwnSum(sharded.ownSums.removeFirst())
                // Summing and sending parts takes a while in a large model: the workers must still hear from here.
                try perform(core.heartbeats(at: clock.now))
                continue
            }
            let (c, part, why, step) = sharded.ownRefusals.removeFirst()
            guard sharded.step.map({ UInt64($0.step) }) == step,
                  let accused = sharded.members.first(where: { core.table[$0].id == c.worker }) else { continue }
            try perform(core.lost(accused, .mismatched("the coordinator, owner of part \(part), found its values there "
                + why)))
        }
    }

    /// A part this coordinator summed: given to the trainer here (its own sum needs no check) and sent to every member.
    private func shareOwnSum(_ summed: PartOwner.Summed) throws {
        // Not after a loss cancelled the order it follows (until the next order, none is in force).
        guard let order = sharded.order, sharded.ordered != nil, var bookkeeping = sharded.step,
              UInt64(bookkeeping.step) == summed.step else { return }
        let revision = summed.order.revision
        guard bookkeeping.meanArrived(part: summed.part, from: ReductionLayout.coordinator, revision: revision)
            .contains(.check(part: summed.part)) else { return }
        let passed = bookkeeping.passed(part: summed.part)
        sharded.step = bookkeeping
        (order.mean + summed.range.lowerBound).update(from: summed.values, count: summed.range.count)
        if passed.contains(.apply(part: summed.part)) { sharded.ready.append(summed.part) }
        let frames = try summed.meanFrames(job: jobID, worker: PeerList.coordinator)
        for member in sharded.members where core.table[member].isActive { _ = try deliver(try frames(), to: member) }
    }
}
