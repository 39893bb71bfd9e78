import Foundation
import Testing
import Wire

/// A worker that speaks the protocol but returns a wrong result is declared lost and named; with no worker left to
/// take its micro-shards, the run stops after --rejoin-timeout.
@Suite(.serialized)
struct MisbehavingWorkerTests {
    @Test("a mismatched gradient loses the worker, named; with none left the run stops after --rejoin-timeout")
    func mismatchedResult() throws {
        let port = Command.freePort()
        let log = Command.temporaryPath("mismatch.log")
        let coordinator = try Command.start(["coordinator", "--config", "examples/xor.yaml", "--bind",
                                             "tcp://127.0.0.1:\(port)", "--workers", "1", "--reduction", "fast",
                                             "--rejoin-timeout", "2"], stderr: log)
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: log, containing: "waiting for 1 workers", timeout: 30)

        let dealer = try Socket(Context(), .dealer)
        try dealer.connect("tcp://127.0.0.1:\(port)")
        try dealer.send(Codec.hello(fields: ["name": "liar", "host": "test"], cores: 1, pid: 1))
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
            case .assignment:
                // Claims 3 samples where the batch holds 4, with all-zero limbs.
                let zeros = [UInt8](repeating: 0, count: 16 * limits.parameterCount!)
                try dealer.send([Codec.gradientHeader(job: job, step: envelope.header.step, worker: worker, samples: 3,
                                                      correct: 0, lossHigh: 0, lossLow: 0, exact: true,
                                                      overflowed: false, attempt: 1), Message(copying: zeros)])
            default:
                continue
            }
        }
        #expect(Command.wait(coordinator, timeout: 20) == 4)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        #expect(text.contains("w1 \"liar\" (test, pid 1) lost: sent a mismatched result"), "\(text)")
        #expect(text.contains("error: no workers rejoined within --rejoin-timeout (2.0 s) at step 0; lost: w1 \"liar\""),
                "\(text)")
    }
}
