/// The sharded layout's owners (docs/scale-out.md): which member adds up each part of the parameters and sends its
/// mean. Parts go round-robin over the members in id order, so every owner holds parts of every layer and has work
/// while backward still runs (it finishes the last layer first); a lost owner's parts go round-robin over the rest,
/// and every other part stays where it is. Owners keep no state, so a part can move at any time: only the step in
/// flight has to send it again. A value the coordinator's core keeps.
struct ReductionLayout: Equatable {
    /// The coordinator's place among the members: it owns a share of the parts as a worker does, so its link carries
    /// its share. Last in id order: when the parts do not divide evenly, workers take the remainder, since the
    /// coordinator's one thread also spot-checks and applies every part (first in order, it slowed 8-host steps by
    /// about 8 %: docs/scale-out.md). It is never lost.
    static let coordinator = Int.max

    /// The owner of each part, by member id.
    private(set) var owners: [Int]

    /// `parts` parts over `members` (at least one, each once).
    init(parts: Int, members: [Int]) {
        let order = members.sorted()
        precondition(!order.isEmpty && Set(order).count == order.count, "a layout needs distinct members: \(members)")
        owners = (0..<parts).map { order[$0 % order.count] }
    }

    var members: [Int] { Array(Set(owners)).sorted() }

    func parts(of member: Int) -> [Int] { owners.indices.filter { owners[$0] == member } }

    /// Gives `member`'s parts to `remaining` (members of the layout or new ones), round-robin from the one after it in
    /// id order so that repeated losses do not all land on the lowest id. Returns the parts that moved, each with its
    /// new owner; none when `member` owned nothing. `remaining` must not be empty.
    mutating func remove(_ member: Int, giving remaining: [Int]) -> [(part: Int, owner: Int)] {
        let order = remaining.filter { $0 != member }.sorted()
        precondition(!order.isEmpty, "no member left to own \(member)'s parts")
        let first = order.firstIndex { $0 > member } ?? 0
        return parts(of: member).enumerated().map { index, part in
            owners[part] = order[(first + index) % order.count]
            return (part, owners[part])
        }
    }
}
