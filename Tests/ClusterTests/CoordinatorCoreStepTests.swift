import Engine
import Foundation
import Testing
import Wire
@testable import Cluster

/// The coordinator core's steps: hand-out, the weights' forms, results checked against their assignments,
/// reassignment after losses, parts.
@Suite struct CoordinatorCoreHandOutTests {
    @Test("equal speeds split the micro-shards evenly; each member gets the weights whole, then its assignment")
    func evenSplit() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1, microShards: 6)
        let actions = h.handOut()
        #expect(actions.sends.map(\.member) == [0, 0, 1, 1])
        #expect(actions.weights.map(\.form) == [.whole, .whole])
        #expect(actions.assignments.map(\.order.ranges) == [[0..<3], [3..<6]])
        #expect(actions.assignments.map(\.order.attempt) == [1, 2])
        #expect(h.core.table.members.allSatisfy { $0.state == .assigned })
        #expect(h.core.round!.waitingCount == 0 && !h.core.round!.isComplete)
    }

    @Test("with no active member nothing goes out and the micro-shards wait")
    func nobody() throws {
        var h = CoreHarness()
        try h.hello(1)
        h.beginStep(1)
        #expect(h.handOut().isEmpty)
        #expect(h.core.round!.waitingCount == 4)
    }

    @Test("a member reading the weights region is told so instead of sent them")
    func weightsInRegion() throws {
        var h = CoreHarness()
        try h.hello(1)
        try h.ready(1, readsWeights: true)
        h.beginStep(1)
        #expect(h.handOut().weights.map(\.form) == [.inRegion])
    }

    @Test("a member that does not read the weights region gets them whole every step")
    func wholeEveryStep() throws {
        var h = CoreHarness()
        try h.join(1)
        for step in 1...2 {
            h.beginStep(step)
            let actions = h.handOut()
            #expect(actions.weights.map(\.form) == [.whole])
            for (_, order) in actions.assignments { try h.answer(1, order) }
            _ = h.core.endStep()
        }
    }

    @Test("a member that holds the step's weights is not sent them again when it takes over micro-shards")
    func weightsOncePerStep() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1)
        let first = h.handOut().assignments
        _ = h.core.lost(h.member(2), .unreachable)
        let again = h.handOut()
        #expect(again.weights.isEmpty && again.assignments.map(\.order.ranges) == [[2..<4]])
        #expect(again.assignments[0].order.attempt == 3 && first.count == 2)
    }

    @Test("result slots go only to members with a mapped region, once each per step")
    func resultSlots() throws {
        var h = CoreHarness()
        try h.hello(1)
        try h.ready(1, mappedRegion: true)
        try h.join(2)
        h.beginStep(1)
        let orders = h.handOut().assignments
        #expect(orders.map(\.order.resultSlot) == [0, nil])
    }

    @Test("in parts, a member sent every part of the next step's weights is told it holds them; others get them whole")
    func fromParts() throws {
        var h = CoreHarness { $0.overlap = true }
        try h.join(1, 2)
        h.beginStep(1)
        _ = h.handOut()
        let parts = h.core.partUpdated(0, nextStep: 2)
        #expect(parts.sends.map(\.outgoing) == [.weightsPart(step: 2, part: 0), .weightsPart(step: 2, part: 0)])
        h.core.table[h.member(2)].partsSent = 0  // as if it had missed the part
        h.beginStep(2)
        #expect(h.handOut().weights.map(\.form) == [.fromParts, .whole])
        h.core.partsUndone()
        #expect(h.core.table.members.allSatisfy { $0.partsStep == nil })
    }

    @Test("faster members get more micro-shards at the next step")
    func bySpeed() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1, microShards: 8)
        let orders = h.handOut().assignments
        try h.answer(1, orders[0].order, after: 0.1)
        try h.answer(2, orders[1].order, after: 0.3)
        _ = h.core.endStep()
        h.beginStep(2, microShards: 8)
        let next = h.handOut().assignments.map { $0.order.ranges.reduce(0) { $0 + $1.count } }
        #expect(next[0] > next[1] && next.reduce(0, +) == 8, "\(next)")
    }

    @Test("takeShares reports each member's samples and seconds since the last call, then starts over")
    func shares() throws {
        var h = CoreHarness()
        try h.join(1)
        h.beginStep(1)
        for (_, order) in h.handOut().assignments { try h.answer(1, order, after: 0.5) }
        let shares = h.core.takeShares()
        #expect(shares.count == 1 && shares[0].worker == "w1" && shares[0].samples == 16)
        #expect(abs(shares[0].seconds - 0.5) < 1e-9)
        #expect(h.core.takeShares().isEmpty)
    }
}

@Suite struct CoordinatorCoreResultTests {
    /// Two members joined, step 1 handed out: the harness and the two assignments.
    static func started(reduction: Reduction = .fast, configure: (inout Coordinator.Settings) -> Void = { _ in })
        throws -> (CoreHarness, [AssignmentOrder]) {
        var h = CoreHarness(reduction: reduction, configure: configure)
        try h.join(1, 2)
        h.beginStep(1, microShards: 4)
        let orders = h.handOut().assignments.map(\.order)
        return (h, orders)
    }

    @Test("answers complete the round; the members are ready again; results are listed in micro-shard order")
    func complete() throws {
        var (h, orders) = try Self.started()
        try h.answer(2, orders[1])
        #expect(!h.core.round!.isComplete && h.core.table[1].state == .ready)
        try h.answer(1, orders[0])
        #expect(h.core.round!.isComplete)
        #expect(h.core.round!.orderedResults.map(\.firstMicroShard) == [0, 2])
        #expect(h.core.shares(of: h.core.round!) == "w1 8 samples, w2 8 samples")
    }

    @Test("exact results as each micro-shard's Floats are taken")
    func exactFloats() throws {
        var (h, orders) = try Self.started(reduction: .exact)
        try h.answer(1, orders[0])
        try h.answer(2, orders[1])
        #expect(h.core.round!.isComplete)
    }

    @Test("a result for another step is dropped without a loss (said with --verbose)")
    func otherStep() throws {
        var (h, orders) = try Self.started { $0.verbose = true }
        let actions = try h.receive(1, h.resultFrames(1, orders[0], step: 0))
        #expect(actions.logs == ["dropped w1 \"p1\" (h, pid 1001)'s result for step 0: not the current step"])
        #expect(h.core.table[0].state == .assigned)
    }

    @Test("an answer from a member lost since is not taken; its micro-shards are out to another member")
    func late() throws {
        var (h, orders) = try Self.started { $0.verbose = true }
        _ = h.core.lost(0, .silent(.seconds(4)))
        _ = h.handOut()
        let actions = try h.receive(1, h.resultFrames(1, orders[0]))
        #expect(actions.replies.count == 1 && actions.logs.isEmpty, "a lost member's answer is a rejoin, nothing more")
        let moved = h.core.round!.outstanding.values.first { $0.ranges == [0..<2] }
        #expect(moved?.member == 1)
    }

    /// Each wrong answer, and what the loss line says of it.
    nonisolated(unsafe) static let wrong: [(String, (CoreHarness, AssignmentOrder) throws -> [Message])] = [
        ("7 samples, fast, for micro-shards 0-1 of 8 samples", { h, o in try h.resultFrames(1, o, samples: 7) }),
        ("exact, for micro-shards 0-1", { h, o in try h.resultFrames(1, o, exact: true) }),
        ("a result region it has not offered", { h, o in try h.resultFrames(1, o, regionSlot: 0) }),
        ("a result in parts where its values were asked for in the message",
         { h, o in try h.resultFrames(1, o, inParts: true) }),
        ("for micro-shards 0-1 of 8", { h, o in try h.resultFrames(1, o, worker: 99) }),
    ]

    @Test("a result that cannot answer its assignment loses the member, names why, and its micro-shards move",
          arguments: 0..<5)
    func mismatched(index: Int) throws {
        var (h, orders) = try Self.started()
        let (text, frames) = Self.wrong[index]
        let actions = try h.receive(1, frames(h, orders[0]))
        #expect(actions.logged("lost: sent a mismatched result") && actions.logged(text), "\(actions.logs)")
        #expect(actions.logged("micro-shards 0-1 go to the other workers (1 left)"))
        #expect(actions.losses.first?.valuesRefused == true)
        #expect(h.core.round!.waitingCount == 2)
    }

    @Test("exact: Floats for a different number of micro-shards than assigned lose the member")
    func floatShards() throws {
        var (h, orders) = try Self.started(reduction: .exact)
        let actions = try h.receive(1, h.resultFrames(1, orders[0], floatShards: 1))
        #expect(actions.logged("1 micro-shards' Floats for micro-shards 0-1"), "\(actions.logs)")
    }

    @Test("after a loss, the next hand-out gives the waiting micro-shards to the survivor under a new attempt; the round covers every micro-shard once")
    func reassigned() throws {
        var (h, orders) = try Self.started()
        try h.answer(1, orders[0])
        _ = h.core.lost(1, .exited("killed by SIGKILL"))
        let again = h.handOut().assignments
        #expect(again.map(\.member) == [0] && again[0].order.ranges == [2..<4] && again[0].order.attempt == 3)
        try h.answer(1, again[0].order)
        #expect(h.core.round!.isComplete)
        #expect(h.core.round!.orderedResults.map(\.firstMicroShard) == [0, 2])
        #expect(h.core.round!.results.map(\.member) == [0, 0])
    }
}

@Suite struct CoordinatorCorePartsTests {
    static func started(reduction: Reduction = .fast) throws -> (CoreHarness, [AssignmentOrder]) {
        var h = CoreHarness(reduction: reduction) { $0.overlap = true }
        try h.join(1, 2)
        h.beginStep(1, microShards: 4)
        let orders = h.handOut().assignments.map(\.order)
        return (h, orders)
    }

    func partFrames(_ h: CoreHarness, _ peer: Int, _ order: AssignmentOrder, arrays: Int = 1, step: Int = 1)
        throws -> [Message] {
        [try Codec.gradientPartHeader(job: CoreHarness.jobID, step: UInt64(step), worker: h.id(peer),
                                      attempt: order.attempt, array: 0, arrays: arrays, part: 0..<CoreHarness.parameterCount),
         try Message(copying: [UInt8](repeating: 0, count: 4 * CoreHarness.parameterCount))]
    }

    @Test("in parts, assignments ask for parts, and a checked part goes to the shell with its micro-shard count")
    func takePart() throws {
        var (h, orders) = try Self.started()
        #expect(orders.allSatisfy { $0.inParts })
        let actions = try h.receive(1, partFrames(h, 1, orders[0]))
        guard case .takePart(0, let order)? = actions.first else { Issue.record("\(actions)"); return }
        #expect(order.attempt == orders[0].attempt && order.microShards == 2 && order.arrays == 1)
    }

    @Test("a part of the wrong number of arrays loses the member")
    func wrongArrays() throws {
        var (h, orders) = try Self.started()
        let actions = try h.receive(1, partFrames(h, 1, orders[0], arrays: 2))
        #expect(actions.logged("parts of 2 arrays for micro-shards 0-1, where fast mode takes 1"), "\(actions.logs)")
    }

    @Test("a part for another step is dropped")
    func otherStep() throws {
        var (h, orders) = try Self.started()
        #expect(try h.receive(1, partFrames(h, 1, orders[0], step: 0)).isEmpty)
    }

    @Test("a result whose parts have not all come loses the member; once they have, it completes the attempt")
    func resultAfterParts() throws {
        var (h, orders) = try Self.started()
        let early = try h.receive(1, h.resultFrames(1, orders[0], inParts: true))
        #expect(early.logged("a result whose parts did not all come before it"), "\(early.logs)")
        let second = orders[1]
        h.core.partsComplete = { $0 == second.attempt }
        _ = try h.receive(2, h.resultFrames(2, second, inParts: true))
        #expect(h.core.round!.completedAttempts[second.attempt] == 2)
    }

    @Test("a whole result where parts were asked for loses the member")
    func wholeWhereParts() throws {
        var (h, orders) = try Self.started()
        let actions = try h.receive(1, h.resultFrames(1, orders[0]))
        #expect(actions.logged("a result's values in its message where they were asked for in parts"))
    }
}

/// A NaN or ∞ in one member's result is computed again by another before the run is called diverged.
@Suite struct CoordinatorCoreNonFiniteTests {
    @Test("a NaN where another member computes the same micro-shards finite loses the first, named; the step goes on",
          arguments: [Reduction.fast, .exact])
    func oneMembersNaN(reduction: Reduction) throws {
        var h = CoreHarness(reduction: reduction)
        try h.join(1, 2)
        h.beginStep(1, microShards: 4)
        let orders = h.handOut().assignments.map(\.order)
        try h.answer(2, orders[1])
        let suspected = try h.answer(1, orders[0], value: .nan)
        #expect(suspected.logs == ["step 1: w1 \"p1\" (h, pid 1001)'s result for micro-shards 0-1 holds a NaN or ∞; "
            + "w2 \"p2\" (h, pid 1002) computes them again before the run is called diverged"])
        let recheck = suspected.assignments
        #expect(recheck.map(\.member) == [1] && recheck[0].order.ranges == [0..<2] && recheck[0].order.attempt == 3)
        #expect(suspected.weights.isEmpty, "w2 holds the step's weights")
        let checked = try h.answer(2, recheck[0].order)
        #expect(checked.logs == ["w1 \"p1\" (h, pid 1001) lost: sent a mismatched result (a NaN or ∞ for micro-shards "
            + "0-1 of step 1, which w2 \"p2\" (h, pid 1002) computed finite) (1 left)"])
        #expect(h.core.round!.isComplete && h.core.round!.results.allSatisfy { $0.member == 1 })
    }

    @Test("a NaN that another member finds too is the run diverging: that result is taken and nobody is lost")
    func bothNaN() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1, microShards: 4)
        let orders = h.handOut().assignments.map(\.order)
        let recheck = try h.answer(1, orders[0], value: .infinity).assignments[0].order
        let second = try h.answer(2, recheck, value: .nan)
        #expect(second.losses.isEmpty && second.logs.isEmpty)
        let own = try h.answer(2, orders[1], value: .nan)
        #expect(own.assignments.isEmpty, "w1's result was checked already: w2's own is not checked by it")
        #expect(h.core.round!.isComplete && h.core.round!.results.count == 2)
    }

    @Test("alone, a member's NaN is taken at once (the step then stops the run as diverged); finite Floats are taken")
    func noChecker() throws {
        var alone = CoreHarness()
        try alone.join(1)
        alone.beginStep(1)
        let order = alone.handOut().assignments[0].order
        #expect(try alone.answer(1, order, value: .nan).isEmpty)
        #expect(alone.core.round!.isComplete)
        var exact = CoreHarness(reduction: .exact)
        try exact.join(1, 2)
        exact.beginStep(1)
        let finite = exact.handOut().assignments[0].order
        #expect(try exact.answer(1, finite).assignments.isEmpty, "finite Floats are taken")
    }
}

/// A member that beats but answers slowly, or never, does not hold a step up.
@Suite struct CoordinatorCoreSlowMemberTests {
    /// Three members, step 1 of 6 micro-shards handed out; members 1 and 2 answer in 0.1 s, member 3 does not.
    static func stalled() throws -> (CoreHarness, [AssignmentOrder]) {
        var h = CoreHarness(workers: 3) { $0.workerTimeout = .seconds(30) }
        try h.join(1, 2, 3)
        h.beginStep(1, microShards: 6)
        let orders = h.handOut().assignments.map(\.order)
        try h.answer(1, orders[0])
        try h.answer(2, orders[1])
        return (h, orders)
    }

    @Test("an assignment over 4 times slower than the step's answers, and 2 heartbeats, goes to an idle member too; the first answer is taken")
    func backup() throws {
        var (h, orders) = try Self.stalled()
        #expect(h.advance(.seconds(1)).assignments.isEmpty, "within two heartbeats")
        let actions = h.advance(.seconds(1.5))
        #expect(actions.logged("step 1: w3 \"p3\" (h, pid 1003) has not answered micro-shards 4-5 in 2.7 s (the slowest "
            + "answer lately took 0.2 s); w"), "\(actions.logs)")
        let backup = actions.assignments
        #expect(backup.count == 1 && backup[0].order.ranges == [4..<6] && backup[0].member != h.member(3))
        #expect(actions.weights.isEmpty, "the helper holds the step's weights")
        let helper = backup[0].member == h.member(1) ? 1 : 2
        try h.answer(helper, backup[0].order)
        #expect(h.core.round!.isComplete && h.core.round!.results.count == 3)
        #expect(h.core.table[h.member(3)].state == .ready && h.core.table[h.member(3)].speed < 1)
        #expect(h.core.round!.orderedResults.map(\.firstMicroShard) == [0, 2, 4])
        _ = orders
    }

    @Test("the slow member's late answer is dropped, and it is not lost for it")
    func lateAnswer() throws {
        var (h, orders) = try Self.stalled()
        let backup = h.advance(.seconds(2.5)).assignments[0]
        try h.answer(backup.member == h.member(1) ? 1 : 2, backup.order)
        let late = try h.answer(3, orders[2])
        #expect(late.losses.isEmpty && h.core.table[h.member(3)].unansweredSince == nil)
        #expect(h.core.round!.results.count == 3)
    }

    @Test("a member that answers nothing for --worker-timeout after its assignment went to another is lost as too slow")
    func neverAnswers() throws {
        var (h, _) = try Self.stalled()
        let backup = h.advance(.seconds(2.5)).assignments[0]
        try h.answer(backup.member == h.member(1) ? 1 : 2, backup.order)
        _ = h.core.endStep()
        for peer in [1, 2, 3] { h.core.table[h.member(peer)].lastHeard = h.now + .seconds(30) }
        #expect(h.advance(.seconds(20)).losses.isEmpty)
        let lost = h.advance(.seconds(11))
        #expect(lost.logs == ["w3 \"p3\" (h, pid 1003) lost: returned no result within --worker-timeout (30.0 s) (2 left)"])
    }

    @Test("if the slow member answers first after all, the backup is withdrawn")
    func originalFirst() throws {
        var (h, orders) = try Self.stalled()
        let backup = h.advance(.seconds(2.5)).assignments[0]
        try h.answer(3, orders[2])
        #expect(h.core.round!.isComplete && h.core.table[backup.member].state == .ready)
        #expect(h.core.round!.outstanding.isEmpty)
    }

    @Test("a member lost holding an assignment out twice leaves its twin to finish it: nothing waits again")
    func lostWithTwin() throws {
        var (h, _) = try Self.stalled()
        _ = h.advance(.seconds(2.5))
        let actions = h.core.lost(h.member(3), .unreachable)
        #expect(!actions.logged("micro-shards"), "\(actions.logs)")
        #expect(h.core.round!.waitingCount == 0 && h.core.round!.outstanding.count == 1)
    }

    @Test("with no answer yet in the run, a backup waits ten heartbeats, and goes only to an idle member")
    func firstStep() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1, microShards: 1)
        let orders = h.handOut().assignments
        #expect(orders.count == 1, "one micro-shard: one member works, the other is idle")
        for peer in [1, 2] { h.core.table[h.member(peer)].lastHeard = h.now + .seconds(60) }
        #expect(h.advance(.seconds(9.5)).assignments.isEmpty)
        let helped = h.advance(.seconds(1))
        #expect(helped.logged("has not answered micro-shards 0 in 10.5 s (no answer yet to compare)"), "\(helped.logs)")
        #expect(helped.assignments.count == 1 && helped.assignments[0].member != orders[0].member)
        #expect(h.advance(.seconds(30)).assignments.isEmpty, "out twice already; nobody else idle")
    }

    @Test("a worker lost twice in a row as too slow is not admitted again; one that answers between is")
    func twiceTooSlow() throws {
        var h = CoreHarness(workers: 1) { $0.workerTimeout = .seconds(5) }
        for round in 1...2 {
            try h.join(1)
            h.beginStep(round)
            _ = h.handOut()
            h.core.table[h.member(1)].lastHeard = h.now + .seconds(10)
            #expect(h.advance(.seconds(6)).logged("lost: returned no result within --worker-timeout"))
        }
        let refused = try h.hello(1)
        guard case .shutdown(let why, .failed)? = refused.replies.first else { Issue.record("\(refused)"); return }
        #expect(why == "this worker was lost twice in a row for returning no result within --worker-timeout (5.0 s); "
            + "it is not admitted again in this run")
        #expect(refused.logged("refused a hello from peer 0x0001 (p1): this worker was lost twice"))
        #expect(h.core.table.members.count == 2, "not admitted")
    }
}
