import Engine
import Foundation
import Wire

/// The sharded layout at the coordinator (docs/scale-out.md): results go from the workers to the parts' owners, not
/// here; once every micro-shard of the step is handed out this shell orders the owners to sum what the assignments
/// will send (again when the cover changes), so an owner sums each part as its contributions come, while later
/// layers' backward still runs elsewhere; each part's mean comes back from its owner, as it goes to every worker.
/// The trainer here applies every part, as every worker does, once the step's counts are all in, so this copy (the
/// one checkpoints hold) never holds values of a worker refused for its counts. Bookkeeping is `ShardedStep`'s; this
/// holds the sockets' side.
struct ShardedRun {
    /// The members of the layout, by table index, and the peers message they were sent.
    var members: [Int] = []
    var layout: ReductionLayout?
    /// Those of `members` the layout was made to give parts (`owning`), the coordinator last.
    var owners: [Int] = []
    var step: ShardedStep?
    var order: StepOrder?
    /// Parts whose mean is in `order.mean`, checked, and which the trainer has not applied yet: it applies them once
    /// the step's counts are in under the order they were summed for.
    var ready: [Int] = []
    /// The round's revision the owners' order was sent for: a later one (micro-shards computed again) needs a new order.
    var orderedRevision: Int?
    /// The round's revision when every count was last found in, and when: an owner whose mean has not come within
    /// --worker-timeout of then is lost.
    var completedRevision: Int?
    var orderedAt: ContinuousClock.Instant?
    /// That order's contributions and the member of each, as the spot checks ask them.
    var ordered: (contributions: [OrderedContribution], members: [Int])?
    /// Parts whose mean came and is being checked, by part.
    var checks: [Int: PartCheck] = [:]
    /// Means that came before every count of the step was in: their checks start once all are, since a contributor
    /// asked before it has computed could only answer that it holds nothing (and an owner that made a mean up
    /// early could have an honest worker lost so).
    var uncheckedMeans: [(part: Int, owner: Int, revision: Int)] = []
    /// A member of the layout was lost: a lost owner may have sent a part's mean to some members and not others, so
    /// every member starts the next step from the coordinator's weights and optimizer state.
    var resetReplicas = false
    /// `--layout auto` sent the last step through the star.
    var wasStar = false
    /// The coordinator's own share of the parts, and what it summed or refused, handled once it returns.
    var owner: PartOwner?
    var ownSums: [PartOwner.Summed] = []
    var ownRefusals: [(OrderedContribution, Int, String, UInt64)] = []
    /// The key seed drawn for each worker (by id) this step, which its replica's digests are made with, and the
    /// expected digests being made (`ReplicaExpectation`).
    var replicaKeys: [UInt32: UInt64] = [:]
    var expectation: ReplicaExpectation?
    var begun = ContinuousClock.now, sent = ContinuousClock.now

    /// No order is in force (a step begins, or a loss has it computed again): none sent, none covered, nothing checked.
    mutating func forgetOrder() {
        (orderedRevision, completedRevision, ordered, checks, uncheckedMeans) = (nil, nil, nil, [:], [])
    }

    /// Means checked but not yet applied are awaited again, under the order that replaces theirs.
    mutating func reopenChecked() {
        step?.reopen(ready)
        ready = []
    }
}

extension Coordinator {
    /// Whether step `step` goes through the sharded layout: every active member offers a peer socket its connection's
    /// address reaches. Otherwise `--layout sharded` stops the run, naming the member, and `--layout auto` sends the
    /// step through the star (the members are told that no layout holds, so their parts come here), saying so once
    /// a switch.
    func shardsStep(_ step: Int) throws -> Bool {
        try ensureEnoughWorkers()
        let members = core.table.active.sorted()
        guard let missing = members.first(where: { core.table[$0].peerEndpoint == nil }) else {
            if !core.sharding && settings.starWhenUnreachable && sharded.wasStar {
                log("step \(step): every worker offers a peer socket; the sum is sharded over them again")
            }
            core.sharding = true
            sharded.wasStar = false
            return true
        }
        let why = "\(core.label(missing)) offers no peer socket its connection's address can reach (a worker on an ipc "
            + "endpoint, behind NAT, or of another build)"
        guard settings.starWhenUnreachable else {
            throw ClusterError(why + ", which --layout sharded needs; use --layout star or auto")
        }
        if core.sharding || !sharded.wasStar { log("step \(step): \(why); the coordinator sums this run's steps (the star)") }
        if !sharded.members.isEmpty {
            // Their parts come here from now on.
            try perform(sharded.members.map { .send(member: $0, .peers(PeerList(peers: [], owners: []))) })
        }
        if !sharded.members.isEmpty { floatPacking.conditionsChanged() }
        (sharded.members, sharded.layout, core.eligible, core.sharding, sharded.wasStar) = ([], nil, nil, false, true)
        sharded.owner = nil
        for member in core.table.members.indices { core.table[member].meansStep = nil }
        return false
    }

    /// A step of the sharded layout begins: the layout follows the active members (each told when it changes), a
    /// member that does not hold this step's weights and optimizer state is sent them, and the work goes out.
    func beginSharded(_ order: StepOrder) throws {
        let begun = clock.now
        let members = core.table.active.sorted()
        let owners = owning(members)
        if members != sharded.members || sharded.layout == nil || sharded.owners != owners {
            let layout = ReductionLayout(parts: parts.count, members: owners)
            sharded.owners = owners
            (sharded.members, sharded.layout) = (members, layout)
            // Other members, other links: the packing is measured again.
            floatPacking.conditionsChanged()
            try sendPeers()
            let owners = layout.members.count
            log("step \(order.step): the sum is sharded: \(parts.count) parts over \(owners) owner\(owners == 1 ? "" : "s") ("
                + layout.members.map { "\(ownerName($0)) \(layout.parts(of: $0).count)" }.joined(separator: ", ") + ")")
        }
        core.eligible = Set(members)
        (sharded.order, sharded.ready, sharded.begun) = (order, [], begun)
        sharded.forgetOrder()
        // Every member hears the step's weights now, assigned work or not: those that applied every mean of the last
        // step make them; the others are sent them with the optimizer's state. Each with a key of its own for their
        // digests, drawn now that every mean of the last step is out.
        sharded.replicaKeys = [:]
        var fromMeans: Set<Int> = []
        for member in members {
            let form: WeightsForm = core.table[member].meansStep == order.step ? .fromMeans : .withState
            if form == .fromMeans { fromMeans.insert(member) }
            sharded.replicaKeys[core.table[member].id] = ReplicaDigests.drawSeed()
            try perform([.send(member: member, .weights(step: order.step, form))])
            core.table[member].weightsStep = order.step
        }
        core.beginStep(step: order.step, epoch: order.epoch, batchIndex: order.batchIndex,
                       microShards: order.microShards, batchSamples: order.batch.count)
        // The coordinator sees only its own share of the parts: a result's counts come after those.
        core.partsComplete = { [unowned self] in ownParts().holdsOwnedParts(attempt: $0, step: UInt64(order.step)) }
        sharded.step = ShardedStep(step: order.step, layout: sharded.layout!)
        stepWeights = .from(order.parameters)
        expectReplicas(members, fromMeans: fromMeans, order: order)
        try handOut()
        try orderEarly()
        sharded.sent = clock.now
    }

    /// The next part for the trainer to apply, once the step's counts are in; nil once every part is applied.
    func nextSharded() throws -> StepEvent? {
        guard let order = sharded.order else { return nil }
        while true {
            if awaitingMeans, let part = sharded.ready.popLast() {
                // From now the coordinator's weights are no longer all the step's.
                core.replicasResyncable = false
                let range = parts[part]
                let exact = job.options.reduction == .exact
                let finite = !exact || GradientSum.allFinite(order.mean + range.lowerBound, count: range.count)
                return .update(ReadyPart(range: range, gradients: UnsafePointer(order.mean), scale: exact ? 1 : 1 / Float(order.batch.count),
                                         finite: finite, closesStep: false))
            }
            if sharded.step!.isDone, awaitingMeans, sharded.ready.isEmpty {
                finishSharded(order)
                return nil
            }
            try pump(timeout: settings.heartbeat / 4)
            guard let round = core.round else { return nil }
            if round.waitingCount > 0 { try handOut() }
            try orderEarly()
            if round.isComplete {
                try orderSum(round, order)
                try checkEarlyMeans()
            }
            try loseSilentOwner()
        }
    }

    /// An owner that has not sent a part's mean within --worker-timeout of the order, or a contributor that has not
    /// answered its check, is lost (parts move, and the step is computed again): a step never waits for good on one
    /// member.
    private func loseSilentOwner() throws {
        guard awaitingMeans, let since = sharded.orderedAt, let step = sharded.step else { return }
        let waited = clock.now - since
        guard waited > settings.workerTimeout,
              let part = step.layout.owners.indices.first(where: {
                  !step.applied.contains($0) && step.layout.owners[$0] != ReductionLayout.coordinator
              }) else { return }
        sharded.orderedAt = clock.now
        let silent = sharded.checks[part].flatMap { check in check.missing.map { check.members[$0] } }
        try perform(core.lost(silent ?? step.layout.owners[part], .tooSlow(waited)))
    }

    /// How the log names an owner of the layout.
    func ownerName(_ owner: Int) -> String {
        owner == ReductionLayout.coordinator ? "the coordinator" : "w\(core.table[owner].id)"
    }

    /// The layout's members and owners, to every member.
    private func sendPeers() throws {
        let layout = sharded.layout!
        let list = PeerList(peers: sharded.members.map { PeerList.Peer(worker: core.table[$0].id,
                                                                        endpoint: core.table[$0].peerEndpoint!,
                                                                        key: core.table[$0].peerKey) },
                            owners: layout.owners.map { $0 == ReductionLayout.coordinator ? PeerList.coordinator
                                                                                          : core.table[$0].id })
        try perform(sharded.members.map { .send(member: $0, .peers(list)) })
    }

    /// Whether the round is complete and its owners have their order: then only means are awaited.
    var awaitingMeans: Bool {
        guard let round = core.round, sharded.order != nil else { return false }
        return round.isComplete && sharded.orderedRevision == round.revision
    }

    /// Every micro-shard of the step is out, each once: the owners are told now which contributions to add, the
    /// assignments' (again, when the cover changes), so they sum each part as its contributions come. (Steps in
    /// parts hand nothing out twice and compute no NaN result again; were either to, the first answer would decide,
    /// and the order would wait for the counts: `orderSum`.)
    private func orderEarly() throws {
        guard let round = core.round, let order = sharded.order, round.waitingCount == 0, !round.isComplete,
              round.twins.isEmpty, round.rechecks.isEmpty, sharded.orderedRevision != round.revision else { return }
        let out = round.outstanding.map { attempt, a in
            (a.member, OrderedContribution(worker: core.table[a.member].id, firstMicroShard: a.ranges.first!.lowerBound,
                                           microShards: a.ranges.reduce(0) { $0 + $1.count }, attempt: attempt))
        }
        try sendOrder(round.results.map(ordered) + out, round, order)
    }

    /// The step's micro-shards are covered by results: the owners have their order (sent early, or now, or again
    /// when the cover changed), and owners' means are due from now.
    private func orderSum(_ round: StepRound, _ order: StepOrder) throws {
        if sharded.completedRevision != round.revision { (sharded.completedRevision, sharded.orderedAt) = (round.revision, clock.now) }
        try sendOrder(round.results.map(ordered), round, order)
    }

    /// A result as an order names it, with its member.
    private func ordered(_ r: StepRound.Result) -> (member: Int, contribution: OrderedContribution) {
        (r.member, OrderedContribution(worker: core.table[r.member].id, firstMicroShard: r.firstMicroShard,
                                       microShards: r.microShards, attempt: r.frame.attempt))
    }

    /// Sends the owners the order of `entries` (in micro-shard order once sorted) unless they have it. Parts checked
    /// under an order it replaces are awaited again.
    private func sendOrder(_ entries: [(member: Int, contribution: OrderedContribution)], _ round: StepRound,
                           _ order: StepOrder) throws {
        sharded.orderedRevision = round.revision
        let sorted = entries.sorted { $0.contribution.firstMicroShard < $1.contribution.firstMicroShard }
        let cover = sorted.map { Contribution(member: $0.member, attempt: $0.contribution.attempt) }
        guard case .order(let sum)? = sharded.step!.covered(by: cover, samples: order.batch.count).first else {
            return
        }
        sharded.reopenChecked()
        (sharded.ordered, sharded.checks, sharded.uncheckedMeans) = ((sorted.map(\.contribution), sorted.map(\.member)), [:], [])
        let wire = OrderedSum(
            revision: sum.revision, samples: sum.samples, learningRate: order.learningRate,
            optimizerStep: order.optimizer.steps,
            contributions: sharded.ordered!.contributions, packsMeans: packsFloats)
        try perform(sharded.members.map { .send(member: $0, .sumOrder(wire, step: order.step)) })
        // Unless sending it lost a member (the step is then computed again, under a new order).
        if sharded.ordered != nil { try orderOwnParts(wire, step: order.step) }
    }

    /// A part's mean from an owner: from the part's owner, for the order in force, once, copied where the trainer reads
    /// the step's gradient and checked before the trainer applies it.
    func meanArrived(_ mean: MeanPart, step: Int, from identity: [UInt8]) throws {
        guard let member = core.table.index(of: identity), core.table[member].isActive else { return }
        core.table[member].lastHeard = clock.now
        guard var bookkeeping = sharded.step, let order = sharded.order, bookkeeping.step == step else { return }
        let part = parts.part(startingAt: mean.range.lowerBound)
        guard mean.learningRate == order.learningRate, mean.optimizerStep == order.optimizer.steps,
              mean.samples == order.batch.count else {
            try perform(core.lost(member, .mismatched("a mean of part \(part) for learning rate \(mean.learningRate), "
                + "optimizer step \(mean.optimizerStep) and \(mean.samples) samples; the step's are \(order.learningRate), "
                + "\(order.optimizer.steps) and \(order.batch.count)")))
            return
        }
        let actions = bookkeeping.meanArrived(part: part, from: member, revision: mean.revision)
        sharded.step = bookkeeping
        guard actions.contains(.check(part: part)) else { return }
        mean.values.copy(into: order.mean + mean.range.lowerBound)
        guard awaitingMeans else { return sharded.uncheckedMeans.append((part, member, mean.revision)) }
        try startCheck(part: part, owner: member, revision: mean.revision, step: step)
    }

    /// Every count of the step is in: the checks of means that came before start (those of the order in force, still
    /// awaiting their check).
    private func checkEarlyMeans() throws {
        guard awaitingMeans, !sharded.uncheckedMeans.isEmpty, let step = sharded.step, let revision = step.order?.revision
        else { return }
        let early = sharded.uncheckedMeans
        sharded.uncheckedMeans = []
        for mean in early where mean.revision == revision && step.checking.contains(mean.part) {
            // Unless a check just started lost a member (the step is then computed again).
            guard sharded.step?.order?.revision == revision else { return }
            try startCheck(part: mean.part, owner: mean.owner, revision: revision, step: step.step)
        }
    }

    /// An owner found a contribution to its part no possible sum: the member that sent it is lost, named with the
    /// owner's word, and the step's micro-shards are computed again without it. Heard only from the part's owner in
    /// the step in flight, about an attempt of this step.
    func refuted(worker: UInt32, attempt: UInt64, part: Int, reason: String, step: Int, from identity: [UInt8]) throws {
        guard let owner = core.table.index(of: identity), core.table[owner].isActive,
              let layout = sharded.layout, sharded.order?.step == step, layout.owners.indices.contains(part),
              layout.owners[part] == owner,
              let accused = sharded.members.first(where: { core.table[$0].id == worker }),
              core.round.map({ round in round.assignment(attempt, of: accused) != nil
                  || round.results.contains(where: { $0.member == accused && $0.frame.attempt == attempt }) }) ?? false
        else { return }
        try perform(core.lost(accused, .mismatched("w\(core.table[owner].id), owner of part \(part), found its values "
            + "there \(reason)")))
    }

    /// Every part is applied: the step's counts go to the trainer's sum, and every member of the layout holds the next
    /// step's weights (each applied the same means).
    private func finishSharded(_ order: StepOrder) {
        let round = core.endStep()
        for result in round.orderedResults {
            core.wrongValuesStreak[core.table[result.member].identity] = nil
            let frame = result.frame
            order.sum.addStatistics(samples: frame.samples, correct: frame.correct, lossWords: frame.lossWords,
                                    overflowed: frame.overflowed)
        }
        awaitReplicaChecks()
        // A replica found wrong may have fed means others applied (an owner sums a contribution before its counts
        // come): like a loss, every member starts the next step from the coordinator's weights and state.
        let reset = sharded.resetReplicas || !core.staleReplicas.isEmpty
        if !reset {
            for member in sharded.members where core.table[member].isActive { core.table[member].meansStep = order.step + 1 }
        }
        // Whose means the replicas applied, part by part, for the next step's digests to name.
        core.meansOwners = reset ? [] : sharded.layout!.owners.map { $0 == ReductionLayout.coordinator ? nil : $0 }
        sharded.resetReplicas = false
        let gathered = clock.now
        lastTimings = StepTimings(send: (sharded.sent - sharded.begun) / .seconds(1),
                                  wait: (gathered - sharded.sent) / .seconds(1), reduce: 0)
        stepWork = gathered - sharded.begun
        trace(round, begun: sharded.begun, sent: sharded.sent, gathered: gathered, reduced: gathered)
        if settings.verbose { logStep(round) }
        core.partsComplete = { _ in false }
        stepWeights = .none
        (sharded.order, sharded.step) = (nil, nil)
        sharded.forgetOrder()
    }

    /// A member of the layout is lost. Mid-step, its parts go to the members left (`ShardedStep.lost`), who are told,
    /// and every micro-shard of the step is computed again from the step's weights, which every worker keeps until
    /// the next step begins: the values sent to the lost owner, and any it had not yet summed, are made again. Parts
    /// whose mean was applied stay applied (exact sums give the same bits again). Every member starts the next step
    /// from the coordinator's weights and state.
    func shardedLoss(_ member: Int, label: String) throws {
        guard sharded.members.contains(member) else { return }
        sharded.resetReplicas = true
        for m in sharded.members { core.table[m].meansStep = nil }
        let remaining = sharded.members.filter { $0 != member && core.table[$0].isActive }
        let owners = owning(remaining)
        // Between steps: no step, or every part of it given to the trainer (which happens only once its counts are in).
        guard var step = sharded.step, !(step.isDone && sharded.ready.isEmpty) else {
            // Between steps: the next step's layout must not name it (the members left are the same as the active
            // ones then, so it would not be made again).
            (sharded.members, sharded.owners) = (remaining, owners)
            guard var layout = sharded.layout, !layout.parts(of: member).isEmpty else { return }
            let moved = layout.remove(member, giving: owners)
            sharded.layout = layout
            try sendPeers()
            log(movedLine(label, owners: moved.map(\.owner)))
            return
        }
        guard !remaining.isEmpty else {
            throw ClusterError("every worker of the sharded layout was lost during step \(step.step); resume from the "
                + "last checkpoint (--resume)")
        }
        let moved = step.lost(member, remaining: owners)
        (sharded.step, sharded.layout, sharded.members, sharded.owners) = (step, step.layout, remaining, owners)
        core.eligible = Set(remaining)
        try sendPeers()
        try ownPartsMoved()
        core.retractStep()
        // Means checked but not applied wait for the new order: the lost member may have fed them.
        sharded.reopenChecked()
        sharded.forgetOrder()
        if case .moved(let parts)? = moved.first {
            log("step \(step.step): " + movedLine(label, owners: parts.map(\.owner))
                + "; the step's micro-shards are computed again")
        }
    }

    /// `label`'s parts, one new owner each, as the log says where they went.
    private func movedLine(_ label: String, owners: [Int]) -> String {
        "\(label)'s \(owners.count) part\(owners.count == 1 ? "" : "s") of the sum moved to "
            + Set(owners.map(ownerName)).sorted().joined(separator: ", ")
    }
}
