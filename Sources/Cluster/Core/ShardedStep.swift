/// One step of the sharded layout at the coordinator (docs/scale-out.md): the owners of the parts, the order it sent
/// them, which parts' means have come back and are being spot-checked, and which passed and were applied to its copy
/// of the run (the one checkpoints hold). Events in, actions out; the step's micro-shards themselves stay in its
/// `StepRound`, the checks' values in the shell. A value.
struct ShardedStep {
    enum Action: Equatable {
        /// Send `order` to every owner.
        case order(SumOrder)
        /// Tell every member that these parts now belong to these owners: a worker sends its values for them there,
        /// again if it sent them to the lost owner; the new owner adds them.
        case moved([Part])
        /// Spot-check this part's mean against the order's contributions.
        case check(part: Int)
        /// This part's mean passed its check: apply it to the coordinator's copy once the step's counts are in
        /// (until then a new order may `reopen` it).
        case apply(part: Int)
        /// Every part's mean is applied: the step is over.
        case done
    }

    struct Part: Equatable {
        let part: Int
        let owner: Int
    }

    let step: Int
    private(set) var layout: ReductionLayout
    private(set) var order: SumOrder?
    private(set) var applied: Set<Int> = []
    /// Parts whose mean for the order held came and is being checked.
    private(set) var checking: Set<Int> = []

    init(step: Int, layout: ReductionLayout) {
        self.step = step
        self.layout = layout
    }

    var isDone: Bool { applied.count == layout.owners.count }

    /// The step's micro-shards are covered by these contributions (again, after a loss: a new revision).
    mutating func covered(by contributions: [Contribution], samples: Int) -> [Action] {
        let new = SumOrder(step: step, revision: (order?.revision ?? -1) + 1, contributions: contributions.sorted(),
                           samples: samples)
        guard new.contributions != order?.contributions || new.samples != order?.samples else { return [] }
        order = new
        // Checks of the last order's means are void: every owner sums its parts again for this one.
        checking = []
        return [.order(new)]
    }

    /// A part's mean for order revision `revision` came from `owner`. Only the part's owner is heard (a lost owner's
    /// late mean has the same bits, but the part is someone else's now), only for the order held, and only once: a
    /// part being checked or applied is not checked again.
    mutating func meanArrived(part: Int, from owner: Int, revision: Int) -> [Action] {
        guard layout.owners.indices.contains(part), layout.owners[part] == owner, revision == order?.revision,
              !applied.contains(part), !checking.contains(part) else { return [] }
        checking.insert(part)
        return [.check(part: part)]
    }

    /// The check of `part`'s mean passed: it is applied. (One that fails loses the owner: `lost`.)
    mutating func passed(part: Int) -> [Action] {
        guard checking.remove(part) != nil else { return [] }
        applied.insert(part)
        return [.apply(part: part)] + (isDone ? [.done] : [])
    }

    /// Parts that passed their check but were not applied, under an order since replaced (a contribution it named
    /// was lost or refused before the step's counts were all in): their means are awaited again, for the new order.
    mutating func reopen(_ parts: [Int]) {
        applied.subtract(parts)
    }

    /// `member` is lost: every part it owned goes to `remaining`, those whose means came here too, since a lost
    /// owner may have sent a mean to some workers and not to others (the new owner's has the same bits, and whoever
    /// applied the part already ignores it). With no member left nothing moves: the run waits for members or stops,
    /// as without the layout.
    mutating func lost(_ member: Int, remaining: [Int]) -> [Action] {
        // The step is computed again: parts not yet applied wait for the next order's means.
        checking = []
        guard !remaining.filter({ $0 != member }).isEmpty else { return [] }
        let moved = layout.remove(member, giving: remaining)
        return moved.isEmpty ? [] : [.moved(moved.map { Part(part: $0.part, owner: $0.owner) })]
    }
}
