import Foundation
import Testing
import Wire

/// A worker that speaks the protocol but returns a result no real worker could (the wrong sample count or mode, more
/// correct predictions than samples, limbs beyond what its micro-shards can add up to) is declared lost and named;
/// with no worker left to take its micro-shards, the run stops after --rejoin-timeout.
@Suite(.serialized)
struct MisbehavingWorkerTests {
    /// What the fake worker claims: samples, correct count, loss limbs and every gradient limb.
    struct Lie: Sendable, CustomTestStringConvertible {
        var samples = 4, correct = 0, lossHigh: Int64 = 0, limb: Int64 = 0, window: Int8 = 0
        var reduction = "exact"
        var expected: String
        var testDescription: String { expected }
    }

    static let lies = [
        Lie(samples: 3, reduction: "fast", expected: "lost: sent a mismatched result (3 samples, exact"),
        // Refused by the decoder already; the worker is then lost for silence.
        Lie(correct: 5, expected: "dropped a message from w1 \"liar\" (test, pid 1): gradient header: samples 4 and correct 5"),
        Lie(limb: 1 << 62, expected: "lost: sent a mismatched result (a gradient limb beyond ±1125899906842624, what 1 micro-shards of at most 2^50 each can add up to"),
        Lie(lossHigh: -(1 << 60), expected: "lost: sent a mismatched result (a loss sum no 1 micro-shards can produce)"),
        Lie(window: 9, expected: "lost: sent a mismatched result (a gradient window outside -3 to 2)"),
    ]

    @Test("an impossible result loses the worker, named; with none left the run stops after --rejoin-timeout",
          arguments: lies)
    func impossibleResult(lie: Lie) throws {
        let port = Command.freePort()
        let log = Command.temporaryPath("mismatch.log")
        let coordinator = try Command.start(["coordinator", "--config", "examples/xor.yaml", "--bind",
                                             "tcp://127.0.0.1:\(port)", "--workers", "1", "--reduction", lie.reduction,
                                             "--rejoin-timeout", "2"], stderr: log,
                                            environment: ["OPENBLAS_CORETYPE": "Haswell"])
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: log, containing: "waiting for 1 worker ", timeout: 30)

        let dealer = try Socket(Context(), .dealer)
        try dealer.connect("tcp://127.0.0.1:\(port)")
        // Exact mode admits only workers on the coordinator's BLAS kernel, pinned here.
        try dealer.send(Codec.hello(fields: ["name": "liar", "host": "test", "blas": "Haswell"], cores: 1, pid: 1))
        var limits = Limits()
        var job: UInt64 = 0, worker: UInt32 = 0
        let deadline = Date().addingTimeInterval(20)
        while coordinator.isRunning && Date() < deadline {
            guard try Socket.poll([dealer], timeout: .milliseconds(200))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { continue }
            let envelope = try Codec.decode(frames, limits: limits)
            switch envelope.payload {
            case .job(_, let count, _, _, _):
                (job, worker) = (envelope.header.job, envelope.header.worker)
                limits = Limits(parameterCount: count, job: job)
                try dealer.send(Codec.ready(job: job, worker: worker, hasData: true))
            case .assignment(_, _, let attempt, _, _):
                let count = limits.parameterCount!
                let values = [Int64](repeating: lie.limb, count: 2 * count).withUnsafeBytes(Array.init)
                    + [UInt8](repeating: UInt8(bitPattern: lie.window), count: count)
                try dealer.send([Codec.gradientHeader(job: job, step: envelope.header.step, worker: worker,
                                                      samples: lie.samples, correct: lie.correct, lossHigh: lie.lossHigh,
                                                      lossLow: 0, exact: true, overflowed: false, attempt: attempt),
                                 try Message(copying: values)])
            default:
                continue
            }
        }
        #expect(Command.wait(coordinator, timeout: 20) == 4)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("w1 \"liar\" (test, pid 1) lost: ") && text.contains(lie.expected), "\(text)")
        #expect(text.contains("error: no workers rejoined within --rejoin-timeout (2.0 s) at step 0; lost: w1 \"liar\""),
                "\(text)")
    }

    /// A fake worker on this machine that offers a result region: one whose token does not match (not mapped; a
    /// result claimed to be in it loses the worker), and a real one holding impossible limbs (read and checked).
    @Test("a result region is mapped only when it checks out, and what is read from it is checked",
          arguments: [("wrong token", "offered a result region that cannot be used (not the region the worker described",
                       "lost: sent a mismatched result (a result in slot 0 of a result region it has not offered)"),
                      ("impossible limbs", "hands its results over in shared memory",
                       "lost: sent a mismatched result (a gradient limb beyond ±1125899906842624")])
    func regionResults(kind: String, offered: String, lost: String) throws {
        let endpoint = "ipc://" + Command.temporaryPath("region.ipc")
        let log = Command.temporaryPath("region.log")
        let coordinator = try Command.start(["coordinator", "--config", "examples/xor.yaml", "--bind", endpoint,
                                             "--workers", "1", "--rejoin-timeout", "2", "--verbose"], stderr: log,
                                            environment: ["OPENBLAS_CORETYPE": "Haswell"])
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: log, containing: "waiting for 1 worker ", timeout: 30)
        let dealer = try Socket(Context(), .dealer)
        try dealer.connect(endpoint)
        try dealer.send(Codec.hello(fields: ["name": "sharer", "host": "test", "blas": "Haswell"], cores: 1, pid: 1))
        var limits = Limits()
        var job: UInt64 = 0, worker: UInt32 = 0
        var region: ResultRegion?
        let deadline = Date().addingTimeInterval(20)
        while coordinator.isRunning && Date() < deadline {
            guard try Socket.poll([dealer], timeout: .milliseconds(200))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { continue }
            let envelope = try Codec.decode(frames, limits: limits)
            switch envelope.payload {
            case .job(_, let count, _, _, _):
                (job, worker) = (envelope.header.job, envelope.header.worker)
                limits = Limits(parameterCount: count, job: job)
                region = ResultRegion(creatingFor: 17 * count)
                let r = try #require(region)
                let token = kind == "wrong token" ? (r.token.0 ^ 1, r.token.1) : r.token
                try dealer.send(Codec.ready(job: job, worker: worker, hasData: true,
                                            region: RegionOffer(pid: getpid(), descriptor: r.descriptor, token: token)))
            case .assignment(_, _, let attempt, _, let slot):
                let count = limits.parameterCount!, r = try #require(region)
                #expect((slot == nil) == (kind == "wrong token"), "slot \(String(describing: slot))")
                let values = r.slot(slot ?? 0)
                for i in 0 ..< 2 * count { values.storeBytes(of: Int64(1) << 62, toByteOffset: 8 * i, as: Int64.self) }
                try dealer.send([Codec.gradientHeader(job: job, step: envelope.header.step, worker: worker, samples: 4,
                                                      correct: 0, lossHigh: 0, lossLow: 0, exact: true,
                                                      overflowed: false, attempt: attempt, regionSlot: slot ?? 0),
                                 try Message(copying: [UInt8]())])
            default:
                continue
            }
        }
        #expect(Command.wait(coordinator, timeout: 20) == 4)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("w1 \"sharer\" (test, pid 1) \(offered)") && text.contains(lost), "\(text)")
    }
}
