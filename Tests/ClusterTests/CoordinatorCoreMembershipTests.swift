import Engine
import Foundation
import Testing
import Wire
@testable import Cluster

/// The coordinator core's membership: hellos, readiness, refusals, silence, losses — driven by decoded messages and
/// a clock the test moves, no socket and no process.
@Suite struct CoordinatorCoreJoiningTests {
    @Test("a hello admits a member, sends it the job and logs its join line once the job is sent")
    func hello() throws {
        var h = CoreHarness()
        let actions = try h.hello(1)
        #expect(h.core.table.members.count == 1 && h.core.table[0].state == .joining)
        guard case .send(0, .job, let then?) = actions.first else { Issue.record("\(actions)"); return }
        #expect(then == "w1 \"p1\" (h, pid 1001) joined with 2 cores, build b, oneDNN avx2")
        #expect(actions.logs.isEmpty, "the join line waits for the job's delivery")
    }

    @Test("a second hello from a live member is a restart: the old one is lost, a new id admitted")
    func restart() throws {
        var h = CoreHarness()
        try h.join(1)
        let actions = try h.hello(1)
        #expect(actions.logged("w1 \"p1\" (h, pid 1001) lost: said hello again (it restarted)"))
        #expect(h.id(1) == 2 && h.core.table[h.member(1)].state == .joining)
        #expect(h.core.table.lost.count == 1)
    }

    @Test("a full table answers a hello with an error and admits nothing")
    func fullTable() throws {
        var h = CoreHarness()
        for peer in 0..<MemberTable.capacity {
            _ = h.core.receive(try h.decode(Codec.hello(fields: ["name": "x"], cores: 1, pid: 1)),
                               from: [UInt8(peer & 255), UInt8(peer >> 8), 9], at: h.now)
        }
        let actions = try h.hello(1)
        #expect(actions.replies == [.error("this coordinator already holds 4096 workers; try again later")])
        #expect(h.core.table.members.count == MemberTable.capacity)
    }

    @Test("ready members count towards the start; past it they are said to take micro-shards too")
    func readyLines() throws {
        var h = CoreHarness(workers: 2)
        try h.hello(1)
        #expect(try h.ready(1).logs == ["w1 \"p1\" (h, pid 1001) ready (1/2)"])
        try h.hello(2)
        #expect(try h.ready(2).logs == ["w2 \"p2\" (h, pid 1002) ready (2/2)"])
        try h.hello(3)
        #expect(try h.ready(3).logs == ["w3 \"p3\" (h, pid 1003) ready (3 ready, 2 needed to start; all take micro-shards)"])
        #expect(h.core.activeCount == 3)
    }

    @Test("a member ready after the start takes micro-shards from the next assignment on")
    func readyAfterStart() throws {
        var h = CoreHarness(workers: 1)
        try h.join(1)
        h.core.started = true
        try h.hello(2)
        #expect(try h.ready(2).logs == ["w2 \"p2\" (h, pid 1002) is ready and takes micro-shards from the next assignment on"])
    }

    @Test("a member without the data is sent it and stays joining; a second ready with the data makes it ready")
    func sendsData() throws {
        var h = CoreHarness()
        try h.hello(1)
        let actions = try h.ready(1, hasData: false)
        #expect(actions.logs == ["w1 \"p1\" (h, pid 1001) has no matching copy of the data; sending 100 samples"])
        #expect(actions.sends.map(\.outgoing) == [.data])
        #expect(h.core.table[0].state == .joining)
        try h.ready(1)
        #expect(h.core.table[0].state == .ready)
        #expect(try h.ready(1).isEmpty, "a ready member's second ready changes nothing")
    }

    @Test("exact mode refuses a member whose products differ, telling it why and naming both kernels")
    func productsDiffer() throws {
        var h = CoreHarness(reduction: .exact)
        try h.hello(1)
        let actions = try h.ready(1, products: 0xBAD)
        guard case .shutdown(let why, .failed)? = actions.replies.first else { Issue.record("\(actions)"); return }
        #expect(why.contains("matrix products to match the coordinator's bit for bit") && why.contains("oneDNN avx2"))
        #expect(actions.logged("lost: was refused: exact mode needs"))
        #expect(actions.losses.map(\.valuesRefused) == [true])
        #expect(h.core.table[0].state == .lost)
    }

    @Test("exact mode on OpenBLAS refuses a member on another BLAS kernel, saying how to start it")
    func otherKernel() throws {
        var h = CoreHarness(reduction: .exact, library: .openBLAS)
        try h.hello(1, blas: "SkylakeX")
        let actions = try h.ready(1)
        #expect(actions.logged("runs SkylakeX; start it with OPENBLAS_CORETYPE=Haswell"))
        #expect(h.core.activeCount == 0)
    }

    @Test("fast mode refuses a member that sends a products fingerprint")
    func fingerprintInFastMode() throws {
        var h = CoreHarness(reduction: .fast)
        try h.hello(1)
        #expect(try h.ready(1, products: 7).logged("sent a products fingerprint in fast mode (7)"))
    }

    @Test("shared memory: a mapped result region and the weights region are used, and said with --verbose")
    func sharesMemory() throws {
        var h = CoreHarness { $0.verbose = true }
        try h.hello(1)
        let actions = try h.ready(1, readsWeights: true, mappedRegion: true)
        #expect(actions.logs.first == "w1 \"p1\" (h, pid 1001) shares memory with this coordinator: weights and results")
        #expect(h.core.table[0].hasResultRegion && h.core.table[0].readsWeightsRegion)
    }

    @Test("in parts, no shared memory is used even when offered")
    func noSharedMemoryInParts() throws {
        var h = CoreHarness { $0.overlap = true }
        try h.hello(1)
        try h.ready(1, readsWeights: true, mappedRegion: true)
        #expect(!h.core.table[0].hasResultRegion && !h.core.table[0].readsWeightsRegion)
    }

    @Test("a peer that is no member is asked to join again; a lost member is told once")
    func strangers() throws {
        var h = CoreHarness()
        let unknown = try h.receive(5, Codec.heartbeat(job: CoreHarness.jobID, step: 0, worker: 3))
        #expect(unknown.replies == [.shutdown("this coordinator does not know this worker; join again", .rejoin)])
        try h.join(1)
        _ = h.core.lost(0, .unreachable)
        let first = try h.receive(1, Codec.heartbeat(job: CoreHarness.jobID, step: 0, worker: 1))
        #expect(first.replies == [.shutdown("w1 \"p1\" (h, pid 1001) was declared lost; join again", .rejoin)])
        #expect(try h.receive(1, Codec.heartbeat(job: CoreHarness.jobID, step: 0, worker: 1)).isEmpty)
    }

    @Test("a member's error loses it with its text, cut at 300 characters")
    func reportedError() throws {
        var h = CoreHarness()
        try h.join(1)
        let text = String(repeating: "e", count: 500)
        let actions = try h.receive(1, Codec.error(text, job: CoreHarness.jobID, step: 0, worker: h.id(1)))
        #expect(actions.logs == ["w1 \"p1\" (h, pid 1001) lost: reported: \(String(repeating: "e", count: 300)) (no workers left)"])
        #expect(actions.losses.map(\.valuesRefused) == [false])
    }
}

@Suite struct CoordinatorCoreLivenessTests {
    @Test("heartbeats go out once a heartbeat has passed, to every member not lost")
    func heartbeats() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        #expect(h.advance(.milliseconds(500)).sends.isEmpty)
        let beats = h.advance(.milliseconds(600)).sends
        #expect(beats.map(\.member) == [0, 1] && beats.allSatisfy { $0.outgoing == .heartbeat(step: 0) })
        #expect(h.advance(.milliseconds(100)).sends.isEmpty, "not again before the next heartbeat")
    }

    @Test("a member still preparing its data gets one heartbeat round in three")
    func joiningBeatsLess() throws {
        var h = CoreHarness()
        try h.hello(1)
        var rounds: [Bool] = []
        for _ in 0..<6 {
            h.core.table[0].lastHeard = h.now  // it beats back
            rounds.append(!h.advance(.seconds(1)).sends.isEmpty)
        }
        #expect(rounds == [false, false, true, false, false, true])
    }

    @Test("an idle member silent for three heartbeats is lost as silent; one that beats is kept")
    func silentIdle() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.advance(.seconds(2))
        h.core.table[1].lastHeard = h.now
        let actions = h.advance(.milliseconds(1500))
        #expect(actions.logs.first == "w1 \"p1\" (h, pid 1001) lost: silent for 3.5 s (1 left)")
        #expect(h.core.table[0].state == .lost && h.core.table[1].state == .ready)
    }

    @Test("a member computing an assignment is judged by its connection, not its beats, until --worker-timeout")
    func computingMemberNotSilent() throws {
        var h = CoreHarness { $0.workerTimeout = .seconds(10) }
        try h.join(1)
        h.beginStep(1)
        _ = h.handOut()
        #expect(h.advance(.seconds(9)).losses.isEmpty)
        let late = h.advance(.seconds(2))
        #expect(late.logged("lost: returned no result within --worker-timeout (10.0 s); step 1 (epoch 0, batch 1): "
            + "micro-shards 0-3 wait for a worker (no workers left)"))
        #expect(h.core.round!.waitingCount == 4)
    }

    @Test("a joining worker reconnecting for its job's frame bound: a send that finds no connection just after it spoke is not a loss; later it is")
    func joiningReconnect() throws {
        var h = CoreHarness()
        try h.hello(1)
        let member = h.member(1)
        h.now += .milliseconds(20)
        let quick = h.core.sendFailed(member, .unroutable, at: h.now)
        #expect(quick.logs.isEmpty && h.core.table[member].state == .joining, "\(quick.logs)")
        h.now += .seconds(4)
        #expect(h.core.sendFailed(member, .unroutable, at: h.now).logged("lost: silent for 4.0 s"))
        // A ready member's failed send is a loss at once, however recently it spoke.
        try h.join(2)
        #expect(h.core.sendFailed(h.member(2), .unroutable, at: h.now).logged("lost: its connection is gone"))
    }

    @Test("a failed send: unroutable after the silence is silent, before it the connection is gone; a full queue is overloaded")
    func sendFailures() throws {
        var h = CoreHarness()
        try h.join(1, 2, 3)
        #expect(h.core.sendFailed(0, .unroutable, at: h.now).logged("lost: its connection is gone"))
        h.now += .seconds(4)
        #expect(h.core.sendFailed(1, .unroutable, at: h.now).logged("lost: silent for 4.0 s"))
        #expect(h.core.sendFailed(2, .queueFull, at: h.now).logged("lost: stopped reading (its send queue is full)"))
    }

    @Test("a local worker process that exited is lost with how it ended; a pid no member has changes nothing")
    func exited() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        #expect(h.core.exited(pid: 4242, ending: "exited with status 1").isEmpty)
        let actions = h.core.exited(pid: 1002, ending: "killed by SIGKILL")
        #expect(actions.logs == ["w2 \"p2\" (h, pid 1002) lost: killed by SIGKILL (1 left)"])
    }

    @Test("losing a member twice says it once")
    func loseOnce() throws {
        var h = CoreHarness()
        try h.join(1)
        #expect(h.core.lost(0, .unreachable).logs.count == 1)
        #expect(h.core.lost(0, .overloaded).isEmpty)
    }

    @Test("a member lost for what it sent has its values refused; one lost for silence keeps them")
    func refusedValues() {
        #expect(LossReason.malformed("x").refusesItsValues && LossReason.mismatched("x").refusesItsValues)
        #expect(LossReason.refused("x").refusesItsValues)
        #expect(!LossReason.silent(.seconds(3)).refusesItsValues && !LossReason.exited("x").refusesItsValues)
        #expect(!LossReason.tooSlow(.seconds(3)).refusesItsValues && !LossReason.unreachable.refusesItsValues)
    }

    @Test("a member lost mid-step hands its micro-shards back under the attempts the shell must forget")
    func lossReleasesAttempts() throws {
        var h = CoreHarness()
        try h.join(1, 2)
        h.beginStep(1, microShards: 6)
        let orders = h.handOut().assignments
        let actions = h.core.lost(1, .mismatched("test"))
        #expect(actions.losses.first?.attempts == [orders[1].order.attempt])
        #expect(actions.losses.first?.valuesRefused == true)
        #expect(actions.logged("micro-shards 3-5 go to the other workers (1 left)"))
        #expect(h.core.round!.waitingCount == 3)
    }
}

@Suite struct CoordinatorCoreFloodTests {
    @Test("a flood of hellos: 20 join lines per 10 s, the rest summed up; members that never became ready are lost within the same budget")
    func joinLines() throws {
        var h = CoreHarness()
        var joined = 0
        for peer in 0..<50 {
            for case .send(_, .job, let then?) in try h.hello(peer) { _ = then; joined += 1 }
        }
        #expect(joined == 20)
        h.now += .seconds(11)
        let next = try h.hello(60)
        #expect(next.logs == ["30 more join and loss lines of workers that never became ready were not logged in the last 11 s"])
        var lossLines = 0
        for peer in 0..<50 { lossLines += h.core.sendFailed(h.member(peer), .unroutable, at: h.now).logs.count }
        #expect(lossLines == 19, "the budget's 20 lines less the one the last join took")
        try h.join(70)
        h.beginStep(1)
        _ = h.handOut()
        #expect(h.core.lost(h.member(70), .unreachable).logs.count == 1, "a member that was ready: always said")
    }
}

@Suite struct CoordinatorCoreRepeatedHelloTests {
    @Test("a hello said again before the job arrived is the same member: the job goes again, nobody is lost")
    func repeatedHello() throws {
        var h = CoreHarness()
        try h.hello(1)
        h.now += .seconds(2)
        let again = try h.hello(1)
        #expect(again.sends.map(\.outgoing) == [.job] && again.sends[0].member == 0 && again.logs.isEmpty)
        #expect(h.core.table.members.count == 1 && h.core.table[0].state == .joining)
        #expect(h.core.table[0].lastHeard == h.now)
        try h.ready(1)
        #expect(h.core.activeCount == 1)
    }
}
