import Engine
import Foundation
import Testing

/// `--overlap`: results and weights in parts, each part updated as soon as every worker's values there are in.
/// A model of four or six parts; exact mode must give the uninterrupted in-process run's bits with any worker count, through
/// a worker killed mid-step and a coordinator stopped mid-step.
@Suite(.serialized)
struct OverlapTests {
    /// 198,276 parameters: four parts of 49,584 with 1 or 3 workers, six of 33,056 with 2 (`PartSplit`). 60 steps.
    static let job = """
        model: {layers: [{units: 1024, activation: relu}, {units: 128, activation: relu}, {units: 4, activation: softmax}]}
        loss: cross_entropy
        optimizer: {name: adam, lr: 0.001}
        batch_size: 48
        micro_shard: 8
        epochs: 3
        seed: 5
        data: {builtin: blobs, samples: 960, classes: 4, features: 64, noise: 3.0}
        """

    static let run = Command.jobWithReference("overlap", job)
    static var jobFile: String { run.file }
    static var reference: String { run.digest }

    @Test("exact results in parts give the in-process run's bits with 1, 2 and 3 workers", arguments: [1, 2, 3])
    func sameBits(workers: Int) throws {
        let out = Command.temporaryPath("overlap-\(workers).st")
        let run = try Command.run(["train", "--config", Self.jobFile, "--workers", String(workers), "--overlap", "on",
                                   "--save", out])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(try FailureTests.digest(out) == Self.reference)
    }

    @Test("fast mode in parts gives the bits of the same split summed whole")
    func fastMode() throws {
        // One worker computes every micro-shard, so the split is the same with and without parts.
        let whole = Command.temporaryPath("overlap-fast-whole.st"), out = Command.temporaryPath("overlap-fast.st")
        let reference = try Command.run(["train", "--config", Self.jobFile, "--reduction", "fast", "--workers", "1",
                                         "--save", whole])
        let run = try Command.run(["train", "--config", Self.jobFile, "--reduction", "fast", "--workers", "1",
                                   "--overlap", "on", "--save", out])
        #expect(reference.status == 0 && run.status == 0, "\(run.stderr)")
        let digests = (try FailureTests.digest(out), try FailureTests.digest(whole))
        #expect(run.stdout == reference.stdout && digests.0 == digests.1)
    }

    @Test("a worker killed with SIGKILL mid-run and a new one added: the same bits; no process left")
    func workerKilled() throws {
        let port = Command.reservedPort()
        let log = Command.temporaryPath("overlap-killed.log"), out = Command.temporaryPath("overlap-killed.st")
        let coordinator = try Command.start(["coordinator", "--config", Self.jobFile, "--bind", "tcp://127.0.0.1:\(port)",
                                             "--heartbeat", "0.2", "--verbose", "--workers", "3", "--overlap", "on",
                                             "--min-workers", "3", "--save", out], stderr: log)
        var workers = try (1...3).map { try FailureTests.worker(port, name: "o\($0)", log: log + ".w\($0)") }
        defer { FailureTests.expectAllEnded([coordinator] + workers) }
        try FailureTests.waitForStep(15, in: log)
        kill(workers[1].processIdentifier, SIGKILL)
        // With --min-workers 3 the loss holds the run until o4 joins, however fast the steps go.
        workers.append(try FailureTests.worker(port, name: "o4", log: log + ".w4"))
        #expect(Command.wait(coordinator, timeout: 120) == 0)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("\"o2\"") && text.contains("lost:") && text.contains("\"o4\""), "\(text.suffix(2000))")
        #expect(try FailureTests.digest(out) == Self.reference)
    }

    @Test("SIGTERM mid-run checkpoints the state before the step; the resumed run gives the same bits")
    func stoppedMidStep() throws {
        let folder = Command.temporaryPath("overlap-ckpt")
        try? FileManager.default.removeItem(atPath: folder)
        let log = Command.temporaryPath("overlap-term.log")
        let run = try Command.start(["train", "--config", Self.jobFile, "--workers", "2", "--overlap", "on", "--verbose",
                                     "--checkpoint", folder], stderr: log)
        try FailureTests.waitForStep(20, in: log)
        kill(run.processIdentifier, SIGTERM)
        #expect(Command.wait(run, timeout: 30) == 143)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("stopped by SIGTERM; checkpoint written to"), "\(text.suffix(2000))")
        let out = Command.temporaryPath("overlap-term.st")
        let resumed = try Command.run(["train", "--config", Self.jobFile, "--checkpoint", folder, "--resume",
                                       "--save", out])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(try FailureTests.digest(out) == Self.reference)
    }

    /// 13,122,564 parameters: 201 parts, more than a worker's default queue would take in one step (see
    /// `SocketTuning`: the coordinator's queue to a worker holds two steps' parts).
    static let manyParts = Command.jobWithReference("overlap-many", """
        model: {layers: [{units: 12800, activation: relu}, {units: 4, activation: softmax}]}
        loss: cross_entropy
        optimizer: {name: sgd, lr: 0.01, momentum: 0.9}
        batch_size: 16
        micro_shard: 4
        steps: 3
        seed: 3
        data: {builtin: blobs, samples: 48, classes: 4, features: 1024, noise: 3.0}
        """)

    @Test("a model of 201 parts: two workers sending packed limbs in parts give the in-process run's bits")
    func manyParts() throws {
        let out = Command.temporaryPath("overlap-many.st")
        // A debug build spends seconds on 13 M parameters; a longer heartbeat keeps a busy machine from losing a
        // worker to silence. A full queue loses it at once ("its send queue is full"), whatever the heartbeat.
        let run = try Command.run(["train", "--config", Self.manyParts.file, "--workers", "2", "--overlap", "on",
                                   "--heartbeat", "2", "--verbose", "--save", out])
        #expect(run.status == 0 && run.stderr.contains("results and weights go in parts")
                    && !run.stderr.contains(" lost: "), "\(run.stderr.suffix(2000))")
        #expect(try FailureTests.digest(out) == Self.manyParts.digest)
    }

    @Test("--weights-as-change, no longer offered, is refused in one line that says what to use instead")
    func changeRefused() throws {
        let run = try Command.run(["train", "--config", Self.jobFile, "--workers", "2", "--weights-as-change"])
        #expect(run.status == 2 && run.stderr.contains("--weights-as-change is no longer offered")
                && run.stderr.contains("--overlap"), "\(run.status) \(run.stderr)")
    }

    @Test("--overlap auto: on where workers are on other machines, off on this one")
    func automatic() throws {
        // The choice is said before workers are awaited; none come, so each coordinator gives up after 0.3 s.
        func inParts(bind host: String, _ extra: [String] = []) throws -> Bool {
            let run = try Command.run(["coordinator", "--config", Self.jobFile, "--bind", "tcp://\(host):\(Command.reservedPort())",
                                       "--workers", "2", "--join-timeout", "0.3", "--verbose", "--insecure"] + extra)
            #expect(run.status != 0 && run.stderr.contains("workers joined within"), "\(run.stderr)")
            return run.stderr.contains("results and weights go in parts (--overlap)")
        }
        #expect(try inParts(bind: "0.0.0.0"))
        #expect(try inParts(bind: "0.0.0.0", ["--reduction", "fast"]))
        #expect(try !inParts(bind: "127.0.0.1"))
        #expect(try !inParts(bind: "0.0.0.0", ["--overlap", "off"]))
        #expect(try inParts(bind: "127.0.0.1", ["--overlap", "on"]))
    }

    @Test("a run diverging in parts stops with status 3, losing no worker: packed limbs, Floats and fast sums",
          arguments: [("exact", 1), ("exact", 4), ("fast", 2)])
    func divergence(reduction: String, workers: Int) throws {
        let job = try Command.divergingJob("overlap-diverge-\(reduction)-\(workers)", reduction: reduction,
                                           extra: "micro_shard: 8")
        // Eight micro-shards: one worker sends its sum's limbs packed, four send two micro-shards' Floats each.
        let result = try Command.run(["train", "--config", job, "--workers", String(workers), "--overlap", "on"])
        #expect(result.status == 3 && result.stderr.contains("training diverged at step")
                    && !result.stderr.contains(" lost: "), "\(result.stderr)")
    }
}
