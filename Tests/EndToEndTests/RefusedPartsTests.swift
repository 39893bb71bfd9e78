import Engine
import Foundation
import Testing
import Wire

/// A result in parts is used part by part before its counts come. A worker refused after its parts were used (its
/// counts are impossible) must leave no trace: the parts it fed are undone and summed again from the micro-shards'
/// new answers, so the run ends with the uninterrupted run's bits.
@Suite(.serialized)
struct RefusedPartsTests {
    /// Three micro-shards a step.
    static let run = Command.jobWithReference("refused-parts", """
        model: {layers: [{units: 16, activation: relu}, {units: 3, activation: softmax}]}
        loss: cross_entropy
        optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
        batch_size: 6
        micro_shard: 2
        steps: 12
        seed: 4
        data: {builtin: blobs, samples: 48, classes: 3, features: 5, noise: 1.0}
        """)

    /// A worker in this process that joins, sends zero gradients (a possible result) for every micro-shard it is
    /// given, and holds back its counts until told what to send.
    final class FakeWorker {
        let dealer: Socket
        var joined: MisbehavingWorkerTests.Joined?
        /// Its first attempt, once its zeros have gone up.
        var first: (step: UInt64, attempt: UInt64, microShards: Int)?
        /// Whether the coordinator has sent a part of the next step's weights since: the zeros were used.
        var zerosUsed = false

        init(_ endpoint: String, name: String) throws {
            dealer = try Socket(Context(), .dealer)
            try dealer.connect(endpoint)
            try dealer.send(Codec.hello(fields: ["name": name, "host": "test"], cores: 1, pid: 1))
        }

        /// Handles what has come, waiting up to 50 ms.
        func serve() throws {
            guard try Socket.poll([dealer], timeout: .milliseconds(50))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { return }
            let envelope = try Codec.decode(frames, limits: joined?.limits ?? Limits())
            let step = envelope.header.step
            switch envelope.payload {
            case .job(let description, let count, _, _, _, _):
                let job = envelope.header.job
                joined = MisbehavingWorkerTests.Joined(job: job, worker: envelope.header.worker,
                                                       limits: Limits(parameterCount: count, job: job),
                                                       products: try MisbehavingWorkerTests.Joined.products(of: Array(description)))
                try dealer.send(Codec.ready(job: job, worker: joined!.worker, hasData: true, products: joined!.products))
            case .assignment(_, _, let attempt, let ranges, _, _, _, _):
                let j = joined!, microShards = ranges.reduce(0) { $0 + $1.count }
                for array in 0..<microShards {
                    try dealer.send([try Codec.gradientPartHeader(job: j.job, step: step, worker: j.worker,
                                                                  attempt: attempt, array: array, arrays: microShards,
                                                                  part: 0 ..< j.count),
                                     try Message(copying: [UInt8](repeating: 0, count: 4 * j.count))])
                }
                if first == nil { first = (step, attempt, microShards) }
            case .weightsPart where first.map { step == $0.step + 1 } ?? false:
                zerosUsed = true
            default:
                break
            }
        }

        func heartbeat() throws {
            guard let j = joined else { return }
            try dealer.send(Codec.heartbeat(job: j.job, step: first?.step ?? 0, worker: j.worker))
        }

        /// Counts for its first attempt that no real worker could send: one sample too many.
        func lie() throws {
            guard let j = joined, let f = first else {
                throw Command.CommandError(message: "the fake worker has no attempt to lie about")
            }
            try dealer.send([try Codec.gradientHeader(job: j.job, step: f.step, worker: j.worker,
                                                      samples: 2 * f.microShards + 1, correct: 0, lossHigh: 0,
                                                      lossLow: 0, exact: true, overflowed: false, attempt: f.attempt,
                                                      inParts: true),
                             try Message(copying: [UInt8]())])
        }
    }

    func startCoordinator(workers: Int, name: String) throws -> (Process, port: Int, log: String, out: String) {
        let port = Command.reservedPort()
        let log = Command.temporaryPath("\(name).log"), out = Command.temporaryPath("\(name).st")
        // Heartbeats of 1 s: the fake workers' connections (answered by libzmq's I/O thread in this test process) must
        // outlast 3 of them on a loaded machine; at 0.2 s, a 0.6 s stall once dropped one before it could lie.
        let coordinator = try Command.start(["coordinator", "--config", Self.run.file, "--bind", "tcp://127.0.0.1:\(port)",
                                             "--workers", String(workers), "--overlap", "on", "--heartbeat", "1",
                                             "--verbose", "--save", out], stderr: log)
        _ = try Command.waitForLine(in: log, containing: "waiting for \(workers) workers", timeout: 30)
        return (coordinator, port, log, out)
    }

    @Test("a worker whose parts were used and whose counts are then refused leaves the run's bits untouched")
    func refusedAfterUse() throws {
        let (coordinator, port, log, out) = try startCoordinator(workers: 2, name: "refused-parts")
        let liar = try FakeWorker("tcp://127.0.0.1:\(port)", name: "liar")
        let honest = try FailureTests.worker(port, name: "honest", log: log + ".honest")
        defer { FailureTests.expectAllEnded([coordinator, honest]) }
        let deadline = Date().addingTimeInterval(30)
        while !liar.zerosUsed && coordinator.isRunning && Date() < deadline {
            try liar.serve()
            try liar.heartbeat()  // while the honest worker starts, however long that takes
        }
        #expect(liar.zerosUsed, "the fake worker never saw its zeros used")
        try liar.lie()
        liar.dealer.close()
        // The honest worker finishes the run alone.
        #expect(Command.wait(coordinator, timeout: 60) == 0)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("\"liar\" (test, pid 1) lost: sent a mismatched result (")
                    && text.contains("step 0: 1 of 1 parts of the weights held w1 \"liar\" (test, pid 1)'s refused values; "
                                     + "they are undone"), "\(text.suffix(3000))")
        #expect(try FailureTests.digest(out) == Self.run.digest, "\(text.suffix(3000))")
    }

    @Test("a part undone after a lost worker's micro-shards were answered again is summed from every micro-shard")
    func undoneAfterReplacement() throws {
        let (coordinator, port, log, out) = try startCoordinator(workers: 3, name: "refused-after-loss")
        let endpoint = "tcp://127.0.0.1:\(port)"
        let vanishing = try FakeWorker(endpoint, name: "vanishing"), liar = try FakeWorker(endpoint, name: "liar")
        let honest = try FailureTests.worker(port, name: "honest", log: log + ".honest")
        defer { FailureTests.expectAllEnded([coordinator, honest]) }
        var deadline = Date().addingTimeInterval(30)
        while !(vanishing.zerosUsed && liar.zerosUsed) && coordinator.isRunning && Date() < deadline {
            try vanishing.serve()
            try liar.serve()
            // Both beat until their zeros are used: the honest worker may take seconds to start on a loaded machine.
            try vanishing.heartbeat()
            try liar.heartbeat()
        }
        #expect(vanishing.zerosUsed && liar.zerosUsed, "the fake workers never saw their zeros used")
        // The vanishing worker goes silent: its micro-shard goes to the honest worker (by far the faster), whose
        // answer reaches a part updated already.
        vanishing.dealer.close()
        deadline = Date().addingTimeInterval(20)
        var text = ""
        while !text.contains("\"vanishing\" (test, pid 1) lost:") && coordinator.isRunning && Date() < deadline {
            try liar.serve()
            try liar.heartbeat()
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        let settle = Date().addingTimeInterval(1)
        while Date() < settle {
            try liar.serve()
            try liar.heartbeat()
        }
        // Now the liar is refused: the part is undone and summed again, the vanished worker's micro-shard included.
        try liar.lie()
        liar.dealer.close()
        #expect(Command.wait(coordinator, timeout: 60) == 0)
        text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("\"liar\" (test, pid 1)'s refused values; they are undone"), "\(text.suffix(3000))")
        #expect(try FailureTests.digest(out) == Self.run.digest, "\(text.suffix(3000))")
    }
}
