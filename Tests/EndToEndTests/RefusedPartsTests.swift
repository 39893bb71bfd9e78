import Engine
import Foundation
import Testing
import Wire

/// A result in parts is used part by part before its counts come. A worker refused after its parts were used (its
/// counts are impossible) must leave no trace: the parts it fed are undone and summed again from the micro-shards'
/// new answers, so the run ends with the uninterrupted run's bits.
@Suite(.serialized)
struct RefusedPartsTests {
    static let run = Command.jobWithReference("refused-parts", """
        model: {layers: [{units: 16, activation: relu}, {units: 3, activation: softmax}]}
        loss: cross_entropy
        optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
        batch_size: 8
        micro_shard: 2
        steps: 12
        seed: 4
        data: {builtin: blobs, samples: 48, classes: 3, features: 5, noise: 1.0}
        """)

    @Test("a worker whose parts were used and whose counts are then refused leaves the run's bits untouched")
    func refusedAfterUse() throws {
        let port = Command.freePort(), endpoint = "tcp://127.0.0.1:\(port)"
        let log = Command.temporaryPath("refused-parts.log"), out = Command.temporaryPath("refused-parts.st")
        let coordinator = try Command.start(["coordinator", "--config", Self.run.file, "--bind", endpoint,
                                             "--workers", "2", "--overlap", "on", "--verbose", "--save", out],
                                            stderr: log)
        var real: Process?
        defer { FailureTests.expectAllEnded([coordinator] + (real.map { [$0] } ?? [])) }
        _ = try Command.waitForLine(in: log, containing: "waiting for 2 workers", timeout: 30)
        let dealer = try Socket(Context(), .dealer)
        try dealer.connect(endpoint)
        try dealer.send(Codec.hello(fields: ["name": "liar", "host": "test"], cores: 1, pid: 1))
        real = try FailureTests.worker(port, name: "honest", log: log + ".honest")
        var joined: MisbehavingWorkerTests.Joined?
        // After its zero gradients went up: the step and the samples it claims, off by one, once they have been used.
        var pending: (step: UInt64, attempt: UInt64, samples: Int)?
        var refused = false
        let deadline = Date().addingTimeInterval(30)
        while !refused && coordinator.isRunning && Date() < deadline {
            guard try Socket.poll([dealer], timeout: .milliseconds(100))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { continue }
            let envelope = try Codec.decode(frames, limits: joined?.limits ?? Limits())
            let step = envelope.header.step
            switch envelope.payload {
            case .job(let description, let count, _, _, _, _):
                joined = MisbehavingWorkerTests.Joined(
                    job: envelope.header.job, worker: envelope.header.worker,
                    limits: Limits(parameterCount: count, job: envelope.header.job),
                    products: try MisbehavingWorkerTests.Joined.products(of: Array(description)))
                try dealer.send(Codec.ready(job: joined!.job, worker: joined!.worker, hasData: true,
                                            products: joined!.products))
            case .assignment(_, _, let attempt, let ranges, _, _) where pending == nil:
                let j = joined!, microShards = ranges.reduce(0) { $0 + $1.count }
                // Zeros are a possible gradient: nothing about these parts gives the lie away.
                for array in 0..<microShards {
                    try dealer.send([try Codec.gradientPartHeader(job: j.job, step: step, worker: j.worker,
                                                                  attempt: attempt, array: array, arrays: microShards,
                                                                  part: 0 ..< j.count),
                                     try Message(copying: [UInt8](repeating: 0, count: 4 * j.count))])
                }
                pending = (step, attempt, 2 * microShards + 1)
            case .weightsPart where pending.map { step == $0.step + 1 } ?? false:
                // The part holding its zeros is updated: now the counts no real worker could send.
                let j = joined!, p = pending!
                try dealer.send([try Codec.gradientHeader(job: j.job, step: p.step, worker: j.worker, samples: p.samples,
                                                          correct: 0, lossHigh: 0, lossLow: 0, exact: true,
                                                          overflowed: false, attempt: p.attempt, inParts: true),
                                 try Message(copying: [UInt8]())])
                refused = true
            default:
                continue
            }
        }
        #expect(refused, "the fake worker never saw its zeros used")
        dealer.close()
        // The honest worker finishes the run alone.
        #expect(Command.wait(coordinator, timeout: 60) == 0)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("\"liar\" (test, pid 1) lost: sent a mismatched result (")
                    && text.contains("step 0: 1 of 1 parts of the weights held w1 \"liar\" (test, pid 1)'s refused values; "
                                     + "they are undone"), "\(text.suffix(3000))")
        #expect(try FailureTests.digest(out) == Self.run.digest, "\(text.suffix(3000))")
    }
}
