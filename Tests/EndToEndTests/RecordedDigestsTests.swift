import Engine
import Foundation
import Testing

/// SHA-256 values recorded before the Cluster code was rebuilt, for a fixed set of runs: a refactoring that changes a
/// bit of any of them fails here, not only where one run is compared with another of the same build.
///
/// The job is chosen so that its exact bits are the same on every x86-64 CPU: its data are written from integers, every
/// matrix product of a micro-shard is at most `matmul_small_limit` multiply-adds (the portable loop, not a library's
/// CPU-chosen kernel), and it uses no libm function (ReLU, MSE, Adam's square root is exact). Fast mode multiplies a
/// thread's whole slice at once, through oneDNN, whose kernel follows the CPU (AVX-512 adds in another order than
/// AVX2): its run is recorded with oneDNN held to AVX2, which every CPU the project runs on has.
@Suite(.serialized)
struct RecordedDigestsTests {
    static let exact = "7e5b4d11572060c23c01b7ebed3abf9d951bff02b079afe85cc90445fd8989f6"
    static let fast = "5f3bb15d5da40908cad32cce652646636d49b0d602cc8c657ede42737ca24879"

    /// 8 features and a target per row, each an integer over 7 (exact in decimal and in float32).
    static let job: String = {
        var csv = "x0,x1,x2,x3,x4,x5,x6,x7,y\n"
        for row in 0..<512 {
            let features = (0..<8).map { String(Double((row * 37 + $0 * 11) % 29 - 14) / 8) }
            csv += (features + [String(Double((row * 5) % 13) / 4 - 1.5)]).joined(separator: ",") + "\n"
        }
        let data = Command.temporaryPath("recorded.csv")
        try? csv.write(toFile: data, atomically: true, encoding: .utf8)
        return Command.job("recorded.yaml", """
            model: {layers: [{units: 16, activation: relu}, {units: 8, activation: relu}, {units: 1}]}
            loss: mse
            optimizer: {name: adam, lr: 0.01}
            batch_size: 64
            micro_shard: 8
            epochs: 100
            seed: 11
            data: {csv: \(data), target: y}
            """)
    }()

    static func train(_ flags: [String], environment: [String: String] = [:]) throws -> String {
        let out = Command.temporaryPath("recorded-\(UUID().uuidString.prefix(8)).st")
        let result = try Command.run(["train", "--config", job, "--save", out] + flags, environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
        return try FailureTests.digest(out)
    }

    @Test("in-process, one thread and two, exact and fast: the recorded SHA-256")
    func inProcess() throws {
        #expect(try Self.train(["--threads", "1"]) == Self.exact)
        #expect(try Self.train(["--threads", "2"]) == Self.exact)
        #expect(try Self.train(["--threads", "1", "--reduction", "fast"], environment: ["ONEDNN_MAX_CPU_ISA": "AVX2"])
                == Self.fast)
    }

    @Test("2 and 3 local workers, whole and in parts: the recorded SHA-256", arguments: [
        ["--workers", "2"], ["--workers", "3"], ["--workers", "2", "--overlap", "on"],
    ])
    func workers(flags: [String]) throws {
        #expect(try Self.train(flags) == Self.exact)
    }

    @Test("the coordinator killed with SIGKILL and resumed from its checkpoint with new workers: the recorded SHA-256")
    func killedAndResumed() throws {
        let port = Command.reservedPort()
        let folder = Command.temporaryPath("ckpt-recorded")
        try? FileManager.default.removeItem(atPath: folder)
        let log = Command.temporaryPath("recorded-coordinator.log"), out = Command.temporaryPath("recorded-resumed.st")
        let start = { (log: String, extra: [String]) in
            try Command.start(["coordinator", "--config", Self.job, "--bind", "tcp://127.0.0.1:\(port)",
                               "--heartbeat", "0.2", "--verbose", "--workers", "2", "--checkpoint", folder] + extra,
                              stderr: log)
        }
        let first = try start(log, ["--checkpoint-every", "20"])
        var workers = try (1...2).map { try FailureTests.worker(port, name: "r\($0)", log: log + ".w\($0)") }
        defer { FailureTests.expectAllEnded(workers) }
        try FailureTests.waitForStep(100, in: log)
        kill(first.processIdentifier, SIGKILL)
        #expect(Command.wait(first, timeout: 10) != nil)
        for worker in workers { kill(worker.processIdentifier, SIGKILL) }
        for worker in workers { _ = Command.wait(worker, timeout: 10) }
        let log2 = Command.temporaryPath("recorded-coordinator-2.log")
        let second = try start(log2, ["--resume", "--save", out])
        workers += try (3...4).map { try FailureTests.worker(port, name: "r\($0)", log: log2 + ".w\($0)") }
        #expect(Command.wait(second, timeout: 120) == 0)
        let text = (try? String(contentsOfFile: log2, encoding: .utf8)) ?? ""
        #expect(text.contains("resumed from"), "\(text.prefix(1500))")
        #expect(try FailureTests.digest(out) == Self.exact)
    }
}
