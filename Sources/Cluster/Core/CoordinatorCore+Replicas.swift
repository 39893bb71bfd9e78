import Wire

/// The sharded layout's replicas, checked by their digests (`ReplicaDigests`): a result counts only when the weights
/// and optimizer state it was computed from are the coordinator's, part by part.
extension CoordinatorCore {
    /// What one member's digests of the step's replica must be (each part of the weights, then of each state
    /// buffer), and whether it made them from the last step's means (rather than taking the coordinator's).
    struct ReplicaCheck {
        let digests: [UInt64]
        let fromMeans: Bool
    }

    /// Steps an accusation counts for: an owner named by two members within them is lost.
    static let accusationWindow = 16

    /// Whether `frame` was computed from the step's replica. Where it was not:
    /// - a member that can be a victim — it made its replica from the means, and the parts that differ are one other
    ///   owner's — has its work of the step computed again from the coordinator's weights and state (sent at once
    ///   while no part of the step is applied here; once one is, it sits the step out), and names that owner;
    /// - any other (it took the coordinator's replica, differs again this step, or in parts no one else sent) is lost.
    /// An owner named by two members within `accusationWindow` steps sent them means other than the ones it sent the
    /// coordinator, which passed their checks there: it is lost and not admitted again.
    mutating func replicaHolds(_ index: Int, _ frame: GradientFrame, step: Int) -> Bool {
        guard let check = replicaChecks[index] else { return true }
        guard frame.replicaDigests.count == check.digests.count else {
            lose(index, .mismatched("a result with \(frame.replicaDigests.count) digests of its replica, where the "
                + "step's \(check.digests.count) ask one each"))
            return false
        }
        let differing = Set(check.digests.indices.filter { frame.replicaDigests[$0] != check.digests[$0] }
            .map { $0 % partCount }).sorted()
        guard !differing.isEmpty else { return true }
        let owners = Set(differing.map { meansOwners.indices.contains($0) ? meansOwners[$0] : nil })
        let why = "its replica for step \(step) differs from the coordinator's in "
            + "\(differing.count == 1 ? "part" : "parts") \(Self.listed(differing))"
        guard check.fromMeans, !staleReplicas.contains(index), owners.count == 1, let owner = owners.first!,
              owner != index else {
            lose(index, .staleWeights(why + (check.fromMeans ? "" : ", which it was sent whole")))
            return false
        }
        let line = why + ", whose means \(table[owner].label) sent at step \(step - 1)"
        if replicasResyncable {
            resync(index, why: line, step: step)
        } else if let eligible, eligible.subtracting([index]).contains(where: { table[$0].isActive }) {
            sitOut(index, why: line, step: step)
        } else {
            lose(index, .staleWeights(line))
        }
        accuse(owner, by: index, step: step)
        return false
    }

    /// `index`'s work of this step is taken back, answered or not, and it is sent the step's weights and state now,
    /// while the coordinator's are still all the step's, before it computes again.
    private mutating func resync(_ index: Int, why: String, step: Int) {
        let moved = round!.retract(index)
        staleReplicas.insert(index)
        replicaChecks[index] = ReplicaCheck(digests: replicaChecks[index]!.digests, fromMeans: false)
        emit(.send(member: index, .weights(step: step, .withState)))
        table[index].weightsStep = step
        if !round!.holds(index) { table[index].state = .ready }
        emit(.log("step \(step): \(table[index].label): \(why); its micro-shards \(describe(moved)) are computed "
            + "again, from the step's weights and state sent to it"))
    }

    /// `index`'s work of this step is taken back and goes to the others: a part of the step is applied here, so the
    /// coordinator no longer holds the step's replica to send it.
    private mutating func sitOut(_ index: Int, why: String, step: Int) {
        let moved = round!.retract(index)
        staleReplicas.insert(index)
        eligible?.remove(index)
        if !round!.holds(index) { table[index].state = .ready }
        emit(.log("step \(step): \(table[index].label): \(why); its micro-shards \(describe(moved)) go to the other "
            + "workers, and it sits the step out"))
    }

    /// `accuser` found `owner`'s last means other than the coordinator's. Named twice within the window, the owner
    /// owns no parts from the next step on (a replica's word alone cannot tell which of the two lies, and an owner
    /// with no parts has no means to lie about); by two accusers, it is lost and not admitted again (by its key, with
    /// keys).
    private mutating func accuse(_ owner: Int, by accuser: Int, step: Int) {
        guard table[owner].state != .lost else { return }
        let accuserKey = Self.admissionKey(of: table[accuser])
        let ownerKey = Self.admissionKey(of: table[owner])
        var named = accusations[ownerKey, default: []].filter { $0.step > step - Self.accusationWindow }
        named.append((accuserKey, step))
        if accusations.count >= MemberTable.capacity { accusations.removeAll() }
        accusations[ownerKey] = named
        guard Set(named.map(\.accuser)).count >= 2 else {
            if demoted.count >= MemberTable.capacity { demoted.removeAll() }
            if named.count >= 2, demoted.insert(ownerKey).inserted {
                emit(.log("step \(step): \(table[owner].label) owns no parts from the next step on: \(table[accuser].label) "
                    + "found its means other than the coordinator's twice within \(Self.accusationWindow) steps"))
            }
            return
        }
        let accusers = table.members.indices.filter {
            named.map(\.accuser).contains(Self.admissionKey(of: table[$0]))
                && (table[$0].state != .lost || $0 == accuser)
        }.map { table[$0].label }
        lose(owner, .mismatched("sent \(accusers.joined(separator: " and ")) means other than the ones it sent the "
            + "coordinator, which passed their checks"))
        accusations[ownerKey] = nil
        if notAdmittedAgain.count >= MemberTable.capacity { notAdmittedAgain.removeAll() }
        notAdmittedAgain[ownerKey] = "this worker sent members means other than the ones it sent the coordinator; it is "
            + "not admitted again in this run"
    }

    /// Whether `member` was named twice and owns no parts.
    func ownsNoParts(_ member: Member) -> Bool {
        demoted.contains(Self.admissionKey(of: member))
    }

    /// What a refusal for good is kept under: the worker's public key with keys (a new process has a new routing
    /// identity), its routing identity without.
    static func admissionKey(_ identity: [UInt8], _ key: String?) -> [UInt8] {
        key.map { Array("key:\($0)".utf8) } ?? identity
    }

    static func admissionKey(of member: Member) -> [UInt8] { admissionKey(member.identity, member.connectionKey) }

    /// Parts as a line names them: the first few, and how many more.
    private static func listed(_ parts: [Int]) -> String {
        parts.prefix(4).map(String.init).joined(separator: ", ") + (parts.count > 4 ? " and \(parts.count - 4) more" : "")
    }
}
