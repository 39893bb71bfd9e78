/// A worker's result for one assignment: the member that computed it and the attempt it answered. The coordinator
/// names the contributions that make a step; an owner adds exactly those.
struct Contribution: Hashable, Comparable, CustomStringConvertible {
    let member: Int
    let attempt: UInt64

    static func < (a: Contribution, b: Contribution) -> Bool { (a.attempt, a.member) < (b.attempt, b.member) }
    var description: String { "w\(member) attempt \(attempt)" }
}

/// The coordinator's word on what a step sums: the contributions whose micro-shards cover the batch once, and the
/// batch's samples. A later revision (a worker lost after its result went out: its micro-shards computed again by
/// another) replaces an earlier one.
struct SumOrder: Equatable {
    let step: Int
    let revision: Int
    let contributions: [Contribution]
    let samples: Int
}

/// One step at an owner (docs/scale-out.md): which contributions came for each part, the order that says which to add,
/// and which parts it has added and sent. Contributions come from the workers and the order and any parts taken over
/// from a lost owner come from the coordinator, each in any order (a resent contribution can come before the word that
/// its part moved here, a newer attempt before the order revision naming it), so everything is kept until the step
/// ends. A part is added once an order, as soon as it is this owner's, the order is in and every contribution the
/// order names has come for it: a new revision (micro-shards computed again after a loss) has every part added again,
/// since the coordinator applies a part only once its mean passed a spot check of the order in force. Events in,
/// actions out: the shell keeps the bytes, adds and sends. A value.
struct OwnerRound {
    enum Action: Equatable {
        /// Add these contributions' values for `part`, scale by the samples, send the mean to every worker and to the
        /// coordinator, and apply it here.
        case sum(part: Int, contributions: [Contribution], samples: Int)
    }

    let step: Int
    private(set) var owned: Set<Int>
    private(set) var arrived: [Int: Set<Contribution>] = [:]
    private(set) var order: SumOrder?
    /// Parts added and sent for the order held.
    private(set) var summed: Set<Int> = []

    init(step: Int, owning parts: [Int]) {
        self.step = step
        owned = Set(parts)
    }

    var isDone: Bool { summed == owned }

    /// A contribution's values for `part` are in.
    mutating func arrived(_ contribution: Contribution, part: Int) -> [Action] {
        arrived[part, default: []].insert(contribution)
        return sumIfReady(part)
    }

    /// The coordinator's order for this step; one older than the order held is ignored. Every owned part is added
    /// again for a new revision.
    mutating func ordered(_ new: SumOrder) -> [Action] {
        guard new.step == step, new.revision > (order?.revision ?? -1) else { return [] }
        order = new
        summed = []
        return owned.sorted().flatMap { sumIfReady($0) }
    }

    /// Parts this owner takes over from a lost one.
    mutating func own(_ parts: [Int]) -> [Action] {
        owned.formUnion(parts)
        return parts.sorted().flatMap { sumIfReady($0) }
    }

    /// The sum of `part` was given up: one of its contributions was no possible sum (the coordinator loses its sender
    /// and orders the step again without it). The part waits again, with the contributions still `held` for it.
    mutating func reopen(_ part: Int, holding held: Set<Contribution>) -> [Action] {
        guard summed.remove(part) != nil else { return [] }
        arrived[part] = held
        return sumIfReady(part)
    }

    private mutating func sumIfReady(_ part: Int) -> [Action] {
        guard owned.contains(part), let order, !summed.contains(part),
              Set(order.contributions).isSubset(of: arrived[part] ?? []) else { return [] }
        summed.insert(part)
        return [.sum(part: part, contributions: order.contributions.sorted(), samples: order.samples)]
    }
}
