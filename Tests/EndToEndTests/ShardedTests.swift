import Foundation
import Testing
import Wire

/// `--layout sharded` (docs/scale-out.md): the workers own the parts of the sum and every worker applies every
/// update. Exact mode must give the uninterrupted in-process run's bits with any worker count (1 to 3 owners), with
/// keys, and through an owner killed mid-step; a peer socket admits only the layout's keys.
@Suite(.serialized)
struct ShardedTests {
    /// The overlap suite's job: 198,276 parameters (in 4 or 6 parts: `sameBits`), 60 steps.
    static var jobFile: String { OverlapTests.jobFile }
    static var reference: String { OverlapTests.reference }

    /// A coordinator with `workers` workers on a fresh loopback port; the workers' logs are `log` + `.wN`.
    static func start(_ name: String, workers: Int, coordinatorFlags: [String] = [], workerFlags: (Int) -> [String] = { _ in [] })
        throws -> (coordinator: Process, workers: [Process], log: String, out: String) {
        let port = Command.reservedPort(), endpoint = "tcp://127.0.0.1:\(port)"
        let log = Command.temporaryPath("\(name).log"), out = Command.temporaryPath("\(name).st")
        let coordinator = try Command.start(["coordinator", "--config", jobFile, "--bind", endpoint, "--heartbeat", "0.2",
                                             "--verbose", "--workers", String(workers), "--layout", "sharded",
                                             "--save", out] + coordinatorFlags, stderr: log)
        let started = try (1...workers).map { i in
            try Command.start(["worker", "--connect", endpoint, "--name", "\(name)\(i)", "--idle-timeout", "20"]
                              + workerFlags(i), stderr: "\(log).w\(i)")
        }
        return (coordinator, started, log, out)
    }

    @Test("exact sums owned by 1, 2, 3 and 5 workers give the in-process run's bits", arguments: [1, 2, 3, 5])
    func sameBits(workers: Int) throws {
        let run = try Self.start("sharded-\(workers)", workers: workers)
        defer { FailureTests.expectAllEnded([run.coordinator] + run.workers) }
        #expect(Command.wait(run.coordinator, timeout: 300) == 0, "\(ShardedTests.tail(run.log))")
        #expect(try FailureTests.digest(run.out) == Self.reference)
        let text = (try? String(contentsOfFile: run.log, encoding: .utf8)) ?? ""
        // The coordinator owns a share too. The 198,276 parameters come in the fewest parts of at most 65,536 that
        // divide evenly over the workers and the coordinator: 4 over 2, 6 over 3, 4 over 4, 6 over 6.
        let (parts, owners) = [1: (4, 2), 2: (6, 3), 3: (4, 4), 5: (6, 6)][workers]!
        #expect(text.contains("\(parts) parts over \(owners) owners ("), "\(text.prefix(3000))")
        #expect(text.contains("the coordinator \(parts / owners))"), "\(text.prefix(3000))")
        // Every replica's digests matched the coordinator's (a false mismatch would cost a recomputation, not bits).
        #expect(!text.contains("differs from the coordinator's") && !text.contains(" lost: "), "\(text.suffix(3000))")
    }

    @Test("fast mode with one worker gives the bits of the same split summed at the coordinator, as Floats and packed",
          arguments: [false, true])
    func fastMode(keyed: Bool) throws {
        let whole = Command.temporaryPath("sharded-fast-whole-\(keyed).st")
        let reference = try Command.run(["train", "--config", Self.jobFile, "--reduction", "fast", "--workers", "1",
                                         "--save", whole])
        #expect(reference.status == 0, "\(reference.stderr)")
        // With keys, bytes are dear: the coordinator tries packed Floats (steps 3, 5, 7 and 9 at least).
        let keys = keyed ? try SecurityTests.keys(["coordinator", "a"]) : ""
        let run = try Self.start("sharded-fast-\(keyed)", workers: 1,
                                 coordinatorFlags: ["--reduction", "fast"]
                                     + (keyed ? ["--key", "\(keys)/coordinator.key", "--authorized", "\(keys)/a.pub"] : []),
                                 workerFlags: { _ in keyed ? ["--key", "\(keys)/a.key", "--coordinator-key",
                                                              "\(keys)/coordinator.pub"] : [] })
        defer { FailureTests.expectAllEnded([run.coordinator] + run.workers) }
        #expect(Command.wait(run.coordinator, timeout: 300) == 0, "\(ShardedTests.tail(run.log))")
        #expect(try FailureTests.digest(run.out) == FailureTests.digest(whole))
        let text = (try? String(contentsOfFile: run.log, encoding: .utf8)) ?? ""
        #expect(text.contains("results and means in parts go ") == keyed, "\(text.suffix(2000))")
    }

    @Test("with keys: the in-process bits; a peer socket refuses a key outside the layout and drops forged parts")
    func keys() throws {
        let keys = try SecurityTests.keys(["coordinator", "a", "b", "c", "stranger"])
        let authorized = "\(keys)/authorized"
        try FileManager.default.createDirectory(atPath: authorized, withIntermediateDirectories: true)
        for name in ["a", "b", "c"] {
            try FileManager.default.copyItem(atPath: "\(keys)/\(name).pub", toPath: "\(authorized)/\(name).pub")
        }
        let names = ["a", "b", "c"]
        let run = try Self.start("sharded-keys", workers: 3,
                                 coordinatorFlags: ["--key", "\(keys)/coordinator.key", "--authorized", authorized],
                                 workerFlags: { ["--key", "\(keys)/\(names[$0 - 1]).key",
                                                 "--coordinator-key", "\(keys)/coordinator.pub"] })
        defer { FailureTests.expectAllEnded([run.coordinator] + run.workers) }
        // A stranger's key, and no key at all, at the first worker's peer socket, while the run goes on.
        let endpoint = try Self.peerEndpoint(in: "\(run.log).w1")
        let stranger = try KeyFiles.readSecret("\(keys)/stranger.key")
        let serverKey = try KeyFiles.readPublicKey("\(keys)/a.pub")
        let forgers = try [Self.forgeParts(to: endpoint, keyPair: stranger, serverKey: serverKey),
                           Self.forgeParts(to: endpoint, keyPair: nil, serverKey: nil)]
        defer { for (context, socket) in forgers { socket.close(); context.terminate() } }
        try Command.waitForLine(in: "\(run.log).w1", containing: "refused a worker at 127.0.0.1", timeout: 60)
        #expect(Command.wait(run.coordinator, timeout: 300) == 0, "\(ShardedTests.tail(run.log))")
        #expect(try FailureTests.digest(run.out) == Self.reference)
        // Bytes are dear with keys: steps went with packed means and Floats too, and then as measured.
        let text = (try? String(contentsOfFile: run.log, encoding: .utf8)) ?? ""
        #expect(text.contains("results and means in parts go "), "\(text.suffix(2000))")
        let workerLog = (try? String(contentsOfFile: "\(run.log).w1", encoding: .utf8)) ?? ""
        #expect(workerLog.contains("refused a worker at 127.0.0.1") && workerLog.contains(stranger.publicKey.z85),
                "\(workerLog)")
    }

    @Test("an owner killed with SIGKILL mid-run, and a worker added: its parts move, the same bits; no process left")
    func ownerKilled() throws {
        // With --min-workers 3 the loss holds the run until the added worker joins, however fast the steps go.
        var run = try Self.start("sharded-killed", workers: 3, coordinatorFlags: ["--min-workers", "3"])
        defer { FailureTests.expectAllEnded([run.coordinator] + run.workers) }
        try FailureTests.waitForStep(15, in: run.log)
        // w1 owns one of the four parts (parts go round-robin in id order, the coordinator last).
        let first = try Self.workerNamed(1, in: run.log)
        kill(run.workers[first].processIdentifier, SIGKILL)
        run.workers.append(try Command.start(["worker", "--connect", Self.endpoint(of: run.coordinator), "--name",
                                              "sharded-killed4", "--idle-timeout", "20"], stderr: "\(run.log).w4"))
        #expect(Command.wait(run.coordinator, timeout: 300) == 0, "\(ShardedTests.tail(run.log))")
        let text = (try? String(contentsOfFile: run.log, encoding: .utf8)) ?? ""
        #expect(text.contains("lost:") && text.contains("1 part of the sum moved to") && text.contains("\"sharded-killed4\""),
                "\(text.suffix(3000))")
        #expect(try FailureTests.digest(run.out) == Self.reference)
    }

    @Test("a worker whose parts are no possible sum is refuted by their owner, lost and named; the in-process bits")
    func impossibleParts() throws {
        let port = Command.reservedPort(), endpoint = "tcp://127.0.0.1:\(port)"
        let log = Command.temporaryPath("sharded-refuted.log"), out = Command.temporaryPath("sharded-refuted.st")
        let coordinator = try Command.start(["coordinator", "--config", Self.jobFile, "--bind", endpoint, "--heartbeat",
                                             "0.2", "--verbose", "--workers", "2", "--layout", "sharded", "--save", out],
                                            stderr: log)
        // Three micro-shards each: results go as packed limbs, which an owner checks.
        let honest = try Command.start(["worker", "--connect", endpoint, "--name", "honest", "--idle-timeout", "20"],
                                       stderr: log + ".honest")
        let liar = try Command.start(["worker", "--connect", endpoint, "--name", "liar", "--idle-timeout", "20"],
                                     stderr: log + ".liar", environment: ["SHARDTRAIN_TEST_IMPOSSIBLE_LIMBS": "1"])
        defer { FailureTests.expectAllEnded([coordinator, honest, liar]) }
        #expect(Command.wait(coordinator, timeout: 300) == 0, "\(Self.tail(log))")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("\"liar\"") && text.contains("owner of part")
                    && text.contains("found its values there a gradient limb beyond"), "\(text.suffix(3000))")
        #expect(try FailureTests.digest(out) == Self.reference)
    }

    @Test("an owner whose means are one unit off is caught by the coordinator's spot check, lost and named; exact: the in-process bits",
          arguments: ["exact", "fast"])
    func lyingOwner(reduction: String) throws {
        let log = Command.temporaryPath("sharded-lying-\(reduction).log")
        let out = Command.temporaryPath("sharded-lying-\(reduction).st"), endpoint = "tcp://127.0.0.1:\(Command.reservedPort())"
        let coordinator = try Command.start(["coordinator", "--config", Self.jobFile, "--bind", endpoint, "--heartbeat",
                                             "0.2", "--verbose", "--workers", "3", "--layout", "sharded", "--reduction",
                                             reduction, "--save", out], stderr: log)
        let workers = try ["honest1", "honest2", "liar"].map { name in
            try Command.start(["worker", "--connect", endpoint, "--name", name, "--idle-timeout", "20"],
                              stderr: "\(log).\(name)",
                              environment: name == "liar" ? ["SHARDTRAIN_TEST_LYING_OWNER": "1"] : [:])
        }
        defer { FailureTests.expectAllEnded([coordinator] + workers) }
        #expect(Command.wait(coordinator, timeout: 300) == 0, "\(Self.tail(log))")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let caught = text.split(separator: "\n").filter { $0.contains("\"liar\"") && $0.contains("sent a mean whose parameter") }
        #expect(!caught.isEmpty && caught.allSatisfy { $0.contains("contributions give") }, "\(text.suffix(3000))")
        if reduction == "exact" { #expect(try FailureTests.digest(out) == Self.reference) }
    }

    @Test("an owner that sends its peers (or one of them) other means than the coordinator: its victims compute again from the coordinator's replica, no honest worker is lost; lying to two, it is lost and not admitted again; the in-process bits",
          arguments: ["peers", "one"])
    func equivocatingOwner(lies: String) throws {
        let log = Command.temporaryPath("sharded-equivocating-\(lies).log")
        let out = Command.temporaryPath("sharded-equivocating-\(lies).st")
        let endpoint = "tcp://127.0.0.1:\(Command.reservedPort())"
        let coordinator = try Command.start(["coordinator", "--config", Self.jobFile, "--bind", endpoint, "--heartbeat",
                                             "0.2", "--verbose", "--workers", "3", "--layout", "sharded", "--save", out],
                                            stderr: log)
        let workers = try ["honest1", "honest2", "liar"].map { name in
            try Command.start(["worker", "--connect", endpoint, "--name", name, "--idle-timeout", "20"],
                              stderr: "\(log).\(name)",
                              environment: name == "liar" ? ["SHARDTRAIN_TEST_LYING_OWNER": lies] : [:])
        }
        defer { FailureTests.expectAllEnded([coordinator] + workers) }
        #expect(Command.wait(coordinator, timeout: 300) == 0, "\(Self.tail(log))")
        let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
        let victims = lines.filter { $0.contains("\"honest") && $0.contains("differs from the coordinator's") }
        #expect(!victims.isEmpty && victims.allSatisfy { $0.contains("whose means w") && $0.contains("\"liar\"") },
                "\(lines.suffix(30).joined(separator: "\n"))")
        #expect(!lines.contains { $0.range(of: #"^w[0-9]+ "honest[0-9]" \(.*\) lost: "#, options: .regularExpression) != nil },
                "\(lines.suffix(30).joined(separator: "\n"))")
        if lies == "peers" {
            #expect(lines.contains { $0.contains("\"liar\"") && $0.contains("other than the ones it sent the coordinator") })
            #expect(lines.contains { $0.contains("(liar)") && $0.contains("not admitted again") })
        } else {
            // Named twice by its one victim: it owns no parts from then on, so it has no means to lie about.
            #expect(lines.contains { $0.contains("\"liar\"") && $0.contains("owns no parts from the next step on") })
            #expect(victims.count == 2, "\(victims.joined(separator: "\n"))")
        }
        #expect(try FailureTests.digest(out) == Self.reference)
    }

    // MARK: Helpers

    static func tail(_ log: String) -> String {
        String(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(3000))
    }

    static func endpoint(of coordinator: Process) -> String {
        let arguments = coordinator.arguments ?? []
        return arguments[(arguments.firstIndex(of: "--bind") ?? 0) + 1]
    }

    /// Which of the started workers (0-based) joined as `w<id>`, from its own log line.
    static func workerNamed(_ id: Int, in log: String) throws -> Int {
        for i in 0..<8 {
            let text = (try? String(contentsOfFile: "\(log).w\(i + 1)", encoding: .utf8)) ?? ""
            if text.contains("joined as w\(id);") { return i }
        }
        throw Command.CommandError(message: "no worker log says it joined as w\(id)")
    }

    /// The peer socket a worker's log says it listens on.
    static func peerEndpoint(in log: String) throws -> String {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("peers reach it at ") }) {
                return String(line.split(separator: " ").last!)
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        throw Command.CommandError(message: "no peer socket in \(log)")
    }

    /// Connects to a worker's peer socket (with `keyPair`, as a CurveZMQ client of `serverKey`) and sends a part
    /// claiming to be w2's, step 1, attempt 1; the caller closes the socket once the worker has had its say.
    static func forgeParts(to endpoint: String, keyPair: CurveKeyPair?, serverKey: CurvePublicKey?) throws
        -> (Context, Socket) {
        let context = try Context()
        let socket = try Socket(context, .dealer)
        if let keyPair, let serverKey { try SocketTuning.curveClient(socket, keyPair: keyPair, server: serverKey) }
        try socket.connect(endpoint)
        let values = [Float](repeating: 1e30, count: 65536)
        let frames = [try Codec.gradientPartHeader(job: 0, step: 1, worker: 2, attempt: 1, array: 0, arrays: 1,
                                                   part: 0..<65536),
                      try values.withUnsafeBytes { try Message(copying: $0) }]
        try? socket.send(frames, wait: false)
        return (context, socket)
    }
}
