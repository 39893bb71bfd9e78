import Engine
import Foundation
import Testing

/// Exact mode across CPUs: a worker takes on the coordinator's oneDNN instruction set and gives its bits, unless
/// the user pinned another, and then it says so and stops.
@Suite(.serialized)
struct ProductsFollowTests {
    static let job = ["--config", "examples/spirals.yaml", "--epochs", "2"]
    /// An instruction set below this CPU's: the coordinator runs it, the worker must follow.
    static let lower = "AVX2"

    /// A CPU with an instruction set below its own to follow.
    static let canFollow = OneDNN.isa.hasPrefix("avx512")

    @Test("an exact-mode worker follows the coordinator's oneDNN instruction set, to the bits of an in-process run on it",
          .enabled(if: canFollow))
    func followsInstructionSet() throws {
        let folder = Command.temporaryPath("follow-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let capped = [OneDNN.variable: Self.lower]
        let alone = try Command.run(["train"] + Self.job + ["--save", "\(folder)/alone.st"], environment: capped)
        let native = try Command.run(["train"] + Self.job + ["--save", "\(folder)/native.st"],
                                     environment: [OneDNN.variable: ""])
        #expect(alone.status == 0 && native.status == 0, "\(alone.stderr)\(native.stderr)")
        // Otherwise this test could not tell following from not following.
        #expect(FileManager.default.contents(atPath: "\(folder)/alone.st")
                != FileManager.default.contents(atPath: "\(folder)/native.st"))

        let port = Command.reservedPort()
        let log = "\(folder)/coordinator.log", workerLog = "\(folder)/worker.log"
        let coordinator = try Command.start(["coordinator"] + Self.job + ["--bind", "tcp://127.0.0.1:\(port)",
                                             "--workers", "1", "--save", "\(folder)/distributed.st"],
                                            stderr: log, environment: capped)
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        let worker = try Command.start(["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "follower"],
                                       stderr: workerLog, environment: [OneDNN.variable: ""])
        defer { kill(worker.processIdentifier, SIGKILL) }
        let finished = Command.wait(coordinator, timeout: 60)
        #expect(finished == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(Command.wait(worker, timeout: 20) == 0)
        let said = try String(contentsOfFile: workerLog, encoding: .utf8)
        #expect(said.contains("follower: switching oneDNN from \(OneDNN.isa) to the coordinator's avx2 (exact mode)"),
                "\(said)")
        #expect(FileManager.default.contents(atPath: "\(folder)/distributed.st")
                == FileManager.default.contents(atPath: "\(folder)/alone.st"))
        // The coordinator's log says why the worker's first connection went away.
        let coordinatorSaid = try String(contentsOfFile: log, encoding: .utf8)
        #expect(coordinatorSaid.contains("\"follower\"") && coordinatorSaid.contains(
            "lost: reported: switching oneDNN from \(OneDNN.isa) to the coordinator's avx2 (exact mode); joining again"),
                "\(coordinatorSaid)")
    }

    @Test("a worker whose ONEDNN_MAX_CPU_ISA the user set does not follow: it names both and stops (status 4)",
          .enabled(if: canFollow))
    func pinnedWorkerStops() throws {
        let port = Command.reservedPort()
        let log = Command.temporaryPath("pinned-coordinator.log")
        let coordinator = try Command.start(["coordinator"] + Self.job + ["--bind", "tcp://127.0.0.1:\(port)",
                                             "--workers", "1", "--join-timeout", "60"],
                                            stderr: log, environment: [OneDNN.variable: ""])
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        let worker = try Command.run(["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "pinned"],
                                     environment: [OneDNN.variable: Self.lower])
        #expect(worker.status == 4)
        #expect(worker.stderr.contains("exact mode needs the coordinator's oneDNN instruction set \(OneDNN.isa), but "
                                       + "ONEDNN_MAX_CPU_ISA pins this worker to avx2; unset it or set it to "
                                       + OneDNN.isa.uppercased()), "\(worker.stderr)")
        // The coordinator's log names the worker and its reason.
        _ = try Command.waitForLine(in: log, containing: "\"pinned\"", timeout: 10,
                                    and: "lost: reported: exact mode needs the coordinator's oneDNN instruction set")
        kill(coordinator.processIdentifier, SIGTERM)
        #expect(Command.wait(coordinator, timeout: 20) != nil)
    }

    @Test("gemm: openblas reaches the workers: two of them give the in-process OpenBLAS run's bits, not oneDNN's")
    func openBLASJob() throws {
        let folder = Command.temporaryPath("openblas-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var results: [String: Data?] = [:]
        for (name, extra) in [("alone", ["--gemm", "openblas"]), ("workers", ["--gemm", "openblas", "--workers", "2"]),
                              ("onednn", [])] {
            let run = try Command.run(["train"] + Self.job + extra + ["--save", "\(folder)/\(name).st"])
            #expect(run.status == 0, "\(run.stderr)")
            results[name] = FileManager.default.contents(atPath: "\(folder)/\(name).st")
        }
        #expect(results["workers"]! == results["alone"]! && results["alone"]! != nil)
        #expect(results["alone"]! != results["onednn"]!)
    }
}
