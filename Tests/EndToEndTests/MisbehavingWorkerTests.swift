import CExactSum
import Engine
import Foundation
import Jobs
import Testing
import Wire

/// A worker that speaks the protocol but returns a result no real worker could (the wrong sample count or mode, more
/// correct predictions than samples, limbs beyond what its micro-shards can add up to, parts that do not fit what was
/// asked) is declared lost and named; with no worker left to take its micro-shards, the run stops after
/// --rejoin-timeout.
@Suite(.serialized)
struct MisbehavingWorkerTests {
    /// What the fake worker claims: samples, correct count, loss limbs and every gradient limb.
    struct Lie: Sendable, CustomTestStringConvertible {
        var samples = 4, correct = 0, lossHigh: Int64 = 0, limb: Int64 = 0, window: Int8 = 0
        /// Micro-shards' Floats instead of limbs: this many, each gradient 1.0 everywhere (or NaN).
        var floatShards = 0, floatValue: Float = 1
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
        Lie(floatShards: 2, expected: "lost: sent a mismatched result (2 micro-shards' Floats for micro-shards 0)"),
    ]

    /// What the fake worker was told on joining: the job's id, its worker id and the decoding limits.
    struct Joined {
        let job: UInt64
        let worker: UInt32
        let limits: Limits
        /// What a real worker's products of the job hash to here (exact mode admits only that).
        let products: UInt64
        var count: Int { limits.parameterCount! }

        /// The products' fingerprint of the job an announcement describes, as a worker computes it.
        static func products(of description: [UInt8]) throws -> UInt64 {
            let text = String(decoding: description, as: UTF8.self)
            let newline = try #require(text.firstIndex(of: "\n"))
            let samples = try #require(text[..<newline].split(separator: " ").first { $0.hasPrefix("samples=") }
                .flatMap { Int($0.dropFirst("samples=".count)) })
            let job = try Job.parse(String(text[text.index(after: newline)...]), file: "announcement", folder: "")
            return job.productsFingerprint(samples: samples)
        }
    }

    /// Starts a coordinator on `endpoint` for the XOR job (exact mode admits only workers on its BLAS kernel, pinned
    /// here), joins it as one fake worker named `name`, answers its job with `ready` and each assignment with
    /// `answer` (given the assignment's step, attempt and result slot), until the coordinator exits; returns its
    /// exit status and log.
    func runFakeWorker(endpoint: String, name: String, flags: [String] = [], workers: Int = 1,
                       ready: (Joined) throws -> [Message],
                       before: (Joined, _ step: UInt64, _ attempt: UInt64) throws -> [[Message]] = { _, _, _ in [] },
                       answer: (Joined, _ step: UInt64, _ attempt: UInt64, _ slot: Int?) throws -> [Message])
        throws -> (status: Int32?, log: String) {
        let log = Command.temporaryPath("\(name).log")
        let coordinator = try Command.start(["coordinator", "--config", "examples/xor.yaml", "--bind", endpoint,
                                             "--workers", "\(workers)", "--rejoin-timeout", "2"] + flags, stderr: log,
                                            environment: ["OPENBLAS_CORETYPE": "Haswell"])
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        _ = try Command.waitForLine(in: log, containing: "waiting for \(workers) worker", timeout: 30)
        let dealer = try Socket(Context(), .dealer)
        try dealer.connect(endpoint)
        try dealer.send(Codec.hello(fields: ["name": name, "host": "test", "blas": "Haswell", "onednn": "avx2"],
                                    cores: 1, pid: 1))
        var joined: Joined?
        let deadline = Date().addingTimeInterval(20)
        while coordinator.isRunning && Date() < deadline {
            guard try Socket.poll([dealer], timeout: .milliseconds(200))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { continue }
            let envelope = try Codec.decode(frames, limits: joined?.limits ?? Limits())
            switch envelope.payload {
            case .job(let description, let count, _, _, _, _):
                let (job, worker) = (envelope.header.job, envelope.header.worker)
                joined = Joined(job: job, worker: worker, limits: Limits(parameterCount: count, job: job),
                                products: try Joined.products(of: Array(description)))
                try dealer.send(ready(joined!))
            case .assignment(_, _, let attempt, _, let slot, _, _, _):
                for message in try before(joined!, envelope.header.step, attempt) { try dealer.send(message) }
                let answer = try answer(joined!, envelope.header.step, attempt, slot)
                if !answer.isEmpty { try dealer.send(answer) }
            case .heartbeat:
                // Beats back, as a real worker does: however long the others take to join, this one is not silent.
                if let joined { try dealer.send(Codec.heartbeat(job: joined.job, step: envelope.header.step, worker: joined.worker)) }
            default:
                continue
            }
        }
        let status = Command.wait(coordinator, timeout: 20)
        return (status, try String(contentsOfFile: log, encoding: .utf8))
    }

    @Test("an impossible result loses the worker, named; with none left the run stops after --rejoin-timeout",
          arguments: lies)
    func impossibleResult(lie: Lie) throws {
        let (status, text) = try runFakeWorker(
            endpoint: "tcp://127.0.0.1:\(Command.reservedPort())", name: "liar", flags: ["--reduction", lie.reduction],
            ready: { try Codec.ready(job: $0.job, worker: $0.worker, hasData: true, products: $0.products) },
            answer: { joined, step, attempt, _ in try Self.answer(lie, joined, step, attempt) })
        #expect(status == 4)
        #expect(text.contains("w1 \"liar\" (test, pid 1) lost: ") && text.contains(lie.expected), "\(text)")
        #expect(text.contains("error: no workers rejoined within --rejoin-timeout (2.0 s) at step 0; lost: w1 \"liar\""),
                "\(text)")
    }

    static func answer(_ lie: Lie, _ joined: Joined, _ step: UInt64, _ attempt: UInt64) throws -> [Message] {
        let values = lie.floatShards > 0
            ? [Float](repeating: lie.floatValue, count: lie.floatShards * joined.count).withUnsafeBytes(Array.init)
            : [Int64](repeating: lie.limb, count: 2 * joined.count).withUnsafeBytes(Array.init)
                + [UInt8](repeating: UInt8(bitPattern: lie.window), count: joined.count)
        return [try Codec.gradientHeader(job: joined.job, step: step, worker: joined.worker, samples: lie.samples,
                                         correct: lie.correct, lossHigh: lie.lossHigh, lossLow: 0, exact: true,
                                         overflowed: false, attempt: attempt, floatShards: lie.floatShards),
                try Message(copying: values)]
    }

    @Test("exact mode refuses a worker whose products of the job differ from the coordinator's, naming both")
    func differentProducts() throws {
        let (status, text) = try runFakeWorker(
            endpoint: "tcp://127.0.0.1:\(Command.reservedPort())", name: "other-cpu", flags: ["--join-timeout", "3"],
            ready: { try Codec.ready(job: $0.job, worker: $0.worker, hasData: true, products: $0.products ^ 1) },
            answer: { _, _, _, _ in [] })
        #expect(status == 4)
        #expect(text.contains("w1 \"other-cpu\" (test, pid 1) lost: was refused: exact mode needs every worker's matrix "
                              + "products to match the coordinator's bit for bit, and w1 \"other-cpu\" (test, pid 1)'s "
                              + "differ (it runs oneDNN avx2, the coordinator oneDNN \(OneDNN.isa))"), "\(text)")
    }

    @Test("a micro-shard's Floats holding a NaN stop the run as diverged (exit 3), as a worker's overflow does")
    func nonFiniteFloats() throws {
        let (status, text) = try runFakeWorker(
            endpoint: "tcp://127.0.0.1:\(Command.reservedPort())", name: "nan", flags: [],
            ready: { try Codec.ready(job: $0.job, worker: $0.worker, hasData: true, products: $0.products) },
            answer: { joined, step, attempt, _ in
                try Self.answer(Lie(floatShards: 1, floatValue: .nan, expected: ""), joined, step, attempt)
            })
        #expect(status == 3)
        #expect(text.contains("training diverged at step 0") && !text.contains(" lost: "), "\(text)")
    }

    /// A fake worker answering with `answer`, beside a real worker, on the XOR example; the run's status and log, and
    /// whether its weights are those of the in-process run.
    func runBesideRealWorker(name: String, flags: [String] = [],
                             answer: @escaping (Joined, UInt64, UInt64, Int?) throws -> [Message])
        throws -> (status: Int32?, log: String, sameBits: Bool) {
        let port = Command.reservedPort(), out = Command.temporaryPath("\(name)-beside.st")
        let reference = Command.temporaryPath("\(name)-reference.st")
        #expect(try Command.run(["train", "--config", "examples/xor.yaml", "--threads", "1", "--save", reference]).status == 0)
        var real: Process?
        defer { if let real { FailureTests.expectAllEnded([real]) } }
        let (status, text) = try runFakeWorker(
            endpoint: "tcp://127.0.0.1:\(port)", name: name, flags: ["--save", out] + flags, workers: 2,
            ready: { joined in
                real = try Command.start(["worker", "--connect", "tcp://127.0.0.1:\(port)", "--name", "honest"],
                                         stderr: Command.temporaryPath("\(name)-honest.log"))
                return try Codec.ready(job: joined.job, worker: joined.worker, hasData: true, products: joined.products)
            },
            answer: answer)
        return (status, text, (try? FailureTests.digest(out)) == (try? FailureTests.digest(reference)))
    }

    @Test("a NaN from one worker where another computes the same micro-shards finite loses that worker; the run ends with the in-process SHA-256")
    func oneWorkersNaN() throws {
        let (status, text, sameBits) = try runBesideRealWorker(name: "nan") { joined, step, attempt, _ in
            try Self.answer(Lie(floatShards: 1, floatValue: .nan, expected: ""), joined, step, attempt)
        }
        #expect(status == 0, "\(text)")
        #expect(text.contains("holds a NaN or ∞; w2 \"honest\"") && text.contains("w1 \"nan\" (test, pid 1) lost: sent a "
            + "mismatched result (a NaN or ∞ for micro-shards 0 of step"), "\(text)")
        #expect(sameBits)
    }

    @Test("a worker that takes assignments and never answers does not hold the run up: its micro-shards go to another worker too; the same SHA-256")
    func neverAnswers() throws {
        let (status, text, sameBits) = try runBesideRealWorker(name: "stalled", flags: ["--heartbeat", "0.2"]) { _, _, _, _ in [] }
        #expect(status == 0, "\(text)")
        #expect(text.contains("w1 \"stalled\" (test, pid 1) has not answered micro-shards")
                    && text.contains("w2 \"honest\"") && text.contains("computes them too"), "\(text)")
        #expect(sameBits)
    }

    /// A fake worker on this machine that offers a result region: one whose token does not match (not mapped; a
    /// result claimed to be in it loses the worker), and a real one holding impossible limbs (read and checked).
    @Test("a result region is mapped only when it checks out, and what is read from it is checked",
          arguments: [("wrong token", "offered a result region that cannot be used (not the region described",
                       "lost: sent a mismatched result (a result in slot 0 of a result region it has not offered)"),
                      ("a plain file", "offered a result region that cannot be used (not a memfd)",
                       "lost: sent a mismatched result (a result in slot 0 of a result region it has not offered)"),
                      ("impossible limbs", "shares memory with this coordinator: results",
                       "lost: sent a mismatched result (a gradient limb beyond ±1125899906842624"),
                      ("another slot", "shares memory with this coordinator: results",
                       "lost: sent a mismatched result (a result in slot 1 of its region, where the assignment named slot 0)")])
    func regionResults(kind: String, offered: String, lost: String) throws {
        var region: SharedRegion?
        let (status, text) = try runFakeWorker(
            endpoint: "ipc://" + Command.temporaryPath("region.ipc"), name: "sharer", flags: ["--verbose"],
            ready: { joined in
                region = SharedRegion(creatingFor: 17 * joined.count, slots: SharedRegion.resultSlots)
                let r = try #require(region)
                let token = kind == "wrong token" ? r.token ^ 1 : r.token
                // A plain file of the right size: this test's own copy of the region's bytes on disk.
                let descriptor = kind == "a plain file" ? plainFile(size: r.size) : r.descriptor
                return try Codec.ready(job: joined.job, worker: joined.worker, hasData: true,
                                       region: RegionOffer(pid: getpid(), descriptor: descriptor, token: token),
                                       products: joined.products)
            },
            answer: { joined, step, attempt, slot in
                let r = try #require(region)
                let mapped = kind != "wrong token" && kind != "a plain file"
                #expect((slot == nil) == !mapped, "slot \(String(describing: slot))")
                let claimed = kind == "another slot" ? 1 - (slot ?? 0) : slot ?? 0
                let values = r.slot(claimed)
                for i in 0 ..< 2 * joined.count { values.storeBytes(of: Int64(1) << 62, toByteOffset: 8 * i, as: Int64.self) }
                return [try Codec.gradientHeader(job: joined.job, step: step, worker: joined.worker, samples: 4,
                                                 correct: 0, lossHigh: 0, lossLow: 0, exact: true, overflowed: false,
                                                 attempt: attempt, regionSlot: claimed),
                        try Message(copying: [UInt8]())]
            })
        #expect(status == 4)
        #expect(text.contains("w1 \"sharer\" (test, pid 1) \(offered)") && text.contains(lost), "\(text)")
    }

    /// A descriptor of this process for a regular file of `size` bytes (left open: the process ends with the tests).
    func plainFile(size: Int) -> Int32 {
        let path = Command.temporaryPath("plain-region")
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: size))
        return open(path, O_RDWR)
    }

    /// Results in parts (`--overlap on`) that no real worker could send. The XOR job: 13 parameters, one part, one
    /// micro-shard a step.
    @Test("results in parts that no real worker could send lose the worker, named",
          arguments: [("garbage packed limbs", "packed limbs of 5 bytes that are not a sum of part 0's 13 parameters"),
                      ("packed limbs beyond range", "a gradient limb beyond ±1125899906842624, what 1 micro-shards of "
                          + "at most 2^50 each can add up to in part 0"),
                      ("two arrays for one micro-shard", "parts of 2 arrays for micro-shards 0, where exact mode takes 1"),
                      ("counts without parts", "a result whose parts did not all come before it"),
                      ("values in the message", "a result's values in its message where they were asked for in parts")])
    func impossibleParts(kind: String, expected: String) throws {
        let (status, text) = try runFakeWorker(
            endpoint: "tcp://127.0.0.1:\(Command.reservedPort())", name: "parts", flags: ["--overlap", "on"],
            ready: { try Codec.ready(job: $0.job, worker: $0.worker, hasData: true, products: $0.products) },
            before: { joined, step, attempt in
                let part = 0 ..< joined.count
                func header(arrays: Int = 1, array: Int = 0, packed: Bool = false) throws -> Message {
                    try Codec.gradientPartHeader(job: joined.job, step: step, worker: joined.worker, attempt: attempt,
                                                 array: array, arrays: arrays, part: part,
                                                 form: packed ? .packedLimbs(diverged: false) : .floats)
                }
                // A message is used up by its send: one each.
                func floats() throws -> Message {
                    try Message(copying: [Float](repeating: 0.5, count: joined.count).withUnsafeBytes(Array.init))
                }
                switch kind {
                case "garbage packed limbs":
                    return [[try header(packed: true), try Message(copying: [0x1F, 9, 0, 0, 0])]]
                case "packed limbs beyond range":
                    let sum = [Int64](repeating: 1 << 62, count: 2 * joined.count).withUnsafeBytes(Array.init)
                        + [UInt8](repeating: 0, count: joined.count)
                    var packed = [UInt8](repeating: 0, count: cexact_pack_bound(joined.count))
                    let length = cexact_pack(sum, joined.count, &packed)
                    return [[try header(packed: true), try Message(copying: Array(packed[..<length]))]]
                case "two arrays for one micro-shard":
                    return [[try header(arrays: 2), try floats()], [try header(arrays: 2, array: 1), try floats()]]
                default:
                    return []
                }
            },
            answer: { joined, step, attempt, _ in
                guard kind == "values in the message" else {
                    return [try Codec.gradientHeader(job: joined.job, step: step, worker: joined.worker, samples: 4,
                                                     correct: 0, lossHigh: 0, lossLow: 0, exact: true, overflowed: false,
                                                     attempt: attempt, inParts: true),
                            try Message(copying: [UInt8]())]
                }
                return try Self.answer(Lie(floatShards: 1, expected: ""), joined, step, attempt)
            })
        #expect(status == 4)
        #expect(text.contains("w1 \"parts\" (test, pid 1) lost: sent a mismatched result (\(expected)"), "\(text)")
    }
}
