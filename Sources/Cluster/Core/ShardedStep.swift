/// One step of the sharded layout at the coordinator (docs/scale-out.md): the owners of the parts, the order it sent
/// them, and which parts' means have come back and been applied to its copy of the run (the one checkpoints hold).
/// Events in, actions out; the step's micro-shards themselves stay in its `StepRound`. A value.
struct ShardedStep {
    enum Action: Equatable {
        /// Send `order` to every owner.
        case order(SumOrder)
        /// Tell every member that these parts now belong to these owners: a worker sends its values for them there,
        /// again if it sent them to the lost owner; the new owner adds them.
        case moved([Part])
        /// Apply this part's mean to the coordinator's copy.
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
        return [.order(new)]
    }

    /// A part's mean came from `owner`. Only the part's owner is heard (a lost owner's late mean has the same bits,
    /// but the part is someone else's now), and only once: the same part from a new owner after a loss is not
    /// applied twice.
    mutating func meanArrived(part: Int, from owner: Int) -> [Action] {
        guard layout.owners.indices.contains(part), layout.owners[part] == owner, !applied.contains(part) else { return [] }
        applied.insert(part)
        return [.apply(part: part)] + (isDone ? [.done] : [])
    }

    /// `member` is lost: every part it owned goes to `remaining`, those whose means came here too, since a lost
    /// owner may have sent a mean to some workers and not to others (the new owner's has the same bits, and whoever
    /// applied the part already ignores it). With no member left nothing moves: the run waits for members or stops,
    /// as without the layout.
    mutating func lost(_ member: Int, remaining: [Int]) -> [Action] {
        guard !remaining.filter({ $0 != member }).isEmpty else { return [] }
        let moved = layout.remove(member, giving: remaining)
        return moved.isEmpty ? [] : [.moved(moved.map { Part(part: $0.part, owner: $0.owner) })]
    }
}
