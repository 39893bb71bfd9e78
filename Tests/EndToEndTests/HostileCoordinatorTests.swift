import Engine
import Foundation
import Testing
import Wire

/// A real worker process against a fake coordinator built on the project's own Wire types, sending jobs, data,
/// weights and assignments that parse but lie: widths that do not fit the model, class targets out of range or NaN,
/// models and sample counts too large to hold, parameter counts that disagree, batches, epochs and ranges out of
/// bounds, weights of the wrong size, random job text, a frame far beyond the job. Whatever it is sent, the worker
/// ends by itself — exit status 0, 2 or 4 with one `error:` line, never a crash or a trap — with bounded memory.
@Suite(.serialized)
struct HostileCoordinatorTests {
    /// A small deterministic generator, so a failing case can be replayed by its number.
    struct Mix {
        var state: UInt64
        /// Whether the oversized frame went out (once a case: then the step goes on as it should).
        var oversizedSent = false
        mutating func next() -> UInt64 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return state
        }
        mutating func pick<T>(_ options: [T]) -> T { options[Int(next() % UInt64(options.count))] }
    }

    enum Lie: CaseIterable {
        case featureWidth, classTarget, nanTarget, hugeModel, hugeSamples, parameterCount, badBatch, badEpoch,
             badRanges, noWeights, wrongWeights, randomJob, negativeSamples, unmappedWeightsRegion, oversizedFrame
    }

    /// A frame far beyond what the job can need (its weights are 88 bytes, its largest message 1 MB): the worker's
    /// connection must refuse it at its size, before holding it.
    static let oversizedBytes = 16 << 20

    static let goodJob = """
        model: {inputs: 2, layers: [{units: 4, activation: relu}, {units: 2, activation: softmax}]}
        loss: cross_entropy
        batch_size: 4
        micro_shard: 2
        reduction: fast
        data: {builtin: xor}
        """

    /// The fake coordinator's side of one case; returns when the worker has gone quiet or the time is up.
    static func serve(_ lie: Lie, _ mix: inout Mix, router: Socket, until deadline: Date) throws {
        var jobText = goodJob, samples = 4, featureWidth = 2, features: [Float] = [0, 0, 0, 1, 1, 0, 1, 1]
        var targets: [Float] = [0, 1, 1, 0]
        switch lie {
        case .featureWidth:
            featureWidth = 3
            features = (0..<12).map { Float($0) }
        case .classTarget: targets[2] = 3e6
        case .nanTarget: targets[1] = .nan
        case .hugeModel: jobText = jobText.replacingOccurrences(of: "units: 4", with: "units: 500000000")
        case .randomJob: jobText = String((0..<200).map { _ in Character(UnicodeScalar(UInt8(32 + mix.next() % 90))) })
        default: break
        }
        let dataset = try Dataset(name: "fake", features: features, featureWidth: featureWidth, targets: targets,
                                  targetWidth: 1)
        let announcedSamples = lie == .hugeSamples ? Int.max / 2 : lie == .negativeSamples ? -5 : samples
        let header = "shardtrain-job samples=\(announcedSamples) fingerprint=\(dataset.fingerprint) blas=Haswell onednn=avx2 parts=65536\n"
        var parameterCount = 2 * 4 + 4 + 4 * 2 + 2
        if lie == .parameterCount { parameterCount = 1 << 20 }
        if lie == .hugeModel { parameterCount = 2 * 500_000_000 + 500_000_000 + 500_000_000 * 2 + 2 }
        var identity: [UInt8]?
        while Date() < deadline {
            guard try Socket.poll([router], timeout: .milliseconds(100))[0],
                  case .frames(let frames)? = try router.receive(maximumFrames: 4) else { continue }
            identity = frames[0].bytes
            guard let decoded = try? Codec.decode(Array(frames.dropFirst()),
                                                  limits: Limits(parameterCount: parameterCount, job: 77)) else { continue }
            // The worker may leave at any moment (that is the point): a send to it that fails is not an error here.
            func send(_ message: [Message]) throws {
                _ = try? router.send([Message(copying: identity!)] + message, wait: false)
            }
            switch decoded.payload {
            case .hello:
                // A weights region that is not there (no such descriptor): the worker must not map it.
                let region = lie == .unmappedWeightsRegion ? RegionOffer(pid: getpid(), descriptor: 1_000_000, token: 5) : nil
                try send(Codec.job(Array((header + jobText).utf8), job: 77, worker: 1, parameterCount: parameterCount,
                                   maximumMicroShards: 4096, exact: false, heartbeat: .milliseconds(200),
                                   weightsRegion: region))
            case .ready(let hasData, _, _, _):
                if !hasData {
                    samples = dataset.count
                    try send([Codec.dataHeader(job: 77, samples: samples, featureWidth: featureWidth, targetWidth: 1),
                              (features + targets).withUnsafeBytes { try Message(copying: $0) }])
                    continue
                }
                // The job and data were accepted: now lie in the step.
                if lie == .oversizedFrame && !mix.oversizedSent {
                    mix.oversizedSent = true
                    try send([Codec.weightsHeader(job: 77, step: 0, parameterCount: oversizedBytes / 4),
                              Message(copying: [UInt8](repeating: 0, count: oversizedBytes))])
                }
                let weights = [Float](repeating: 0.1, count: lie == .wrongWeights ? parameterCount + 7 : parameterCount)
                if lie == .unmappedWeightsRegion {
                    try send([Codec.weightsHeader(job: 77, step: 0, parameterCount: weights.count, inRegion: true),
                              Message(copying: [UInt8]())])
                } else if lie != .noWeights {
                    try send([Codec.weightsHeader(job: 77, step: 0, parameterCount: weights.count),
                              weights.withUnsafeBytes { try Message(copying: $0) }])
                }
                let epoch: UInt64 = lie == .badEpoch ? UInt64.max - mix.next() % 5 : 0
                let batch: UInt64 = lie == .badBatch ? 1 << (mix.next() % 63) : 0
                let ranges = lie == .badRanges ? [0..<Int(1 + mix.next() % 1000)] : [0..<2]
                try send(Codec.assignment(job: 77, step: 0, worker: 1, epoch: epoch, batch: batch, attempt: 1,
                                          ranges: ranges))
                try send(Codec.heartbeat(job: 77, step: 0, worker: 1))
            case .gradient, .error:
                // A result or a complaint: stop it, as a coordinator would.
                try send(Codec.shutdown("done", job: 77, disposition: .finished))
            default:
                continue
            }
        }
    }

    @Test("a fake coordinator's lies end the worker cleanly: one line, status 0, 2 or 4, never a crash",
          arguments: Array(0..<30))
    func lyingCoordinator(seed: Int) throws {
        var mix = Mix(state: 0x9E37_79B9_7F4A_7C15 &+ UInt64(seed) &* 0x1000_0001)
        let lie = Lie.allCases[seed % Lie.allCases.count]
        let context = try Context()
        let router = try Socket(context, .router)
        defer { router.close() }
        try SocketTuning.coordinator(router, maximumMessageBytes: 64 << 20)
        // Shared regions are offered only on one machine's ipc endpoints.
        try router.bind(lie == .unmappedWeightsRegion ? "ipc://" + Command.temporaryPath("hostile-\(seed).ipc")
                                                      : "tcp://127.0.0.1:*")
        let log = Command.temporaryPath("hostile-\(seed).log")
        let worker = try Command.start(["worker", "--connect", router.lastEndpoint, "--name", "target",
                                        "--idle-timeout", "3"], stderr: log)
        defer { kill(worker.processIdentifier, SIGKILL) }
        var largestRSS = 0
        let deadline = Date().addingTimeInterval(20)
        while worker.isRunning && Date() < deadline {
            try Self.serve(lie, &mix, router: router, until: min(deadline, Date().addingTimeInterval(0.3)))
            largestRSS = max(largestRSS, Self.residentKilobytes(worker.processIdentifier))
        }
        let status = Command.wait(worker, timeout: 5)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(worker.terminationReason == .exit, "\(lie): killed by a signal: \(text.suffix(800))")
        #expect([0, 2, 4].contains(status ?? -1), "\(lie): status \(String(describing: status)): \(text.suffix(800))")
        #expect(!text.contains("Fatal error") && !text.contains("crashed"), "\(lie): \(text.suffix(800))")
        if status != 0 {
            let errors = text.split(separator: "\n").filter { $0.hasPrefix("error: ") }
            #expect(errors.count == 1, "\(lie): \(text.suffix(800))")
        }
        #expect(largestRSS < 512 * 1024, "\(lie): \(largestRSS) kB resident")
        if lie == .oversizedFrame {
            // Refused unread, the frame never reaches the worker's code: it joins again and the step goes on.
            #expect(status == 0 && !text.contains("weights"), "\(text.suffix(800))")
        }
        if lie == .unmappedWeightsRegion {
            #expect(text.contains("the coordinator's weights region cannot be used (cannot open it)")
                && text.contains("weights are in a shared region this worker has not mapped"), "\(text)")
        }
    }

    /// A fake coordinator's ROUTER on a loopback port, and a real worker connected to it, logging to `log`.
    static func routerAndWorker(name: String, log: String) throws -> (router: Socket, worker: Process) {
        let router = try Socket(Context(), .router)
        try SocketTuning.coordinator(router, maximumMessageBytes: 64 << 20)
        try router.bind("tcp://127.0.0.1:*")
        let worker = try Command.start(["worker", "--connect", router.lastEndpoint, "--name", name, "--idle-timeout", "60"],
                                       stderr: log)
        return (router, worker)
    }

    @Test("a hello left unanswered (a network blip, a coordinator restarting) is said again whole, not as empty frames")
    func helloResentWhole() throws {
        let (router, worker) = try Self.routerAndWorker(name: "patient", log: Command.temporaryPath("hello-resent.log"))
        defer { router.close() }
        defer {
            kill(worker.processIdentifier, SIGKILL)
            _ = Command.wait(worker, timeout: 10)
        }
        // Three hellos, none answered: each must decode as the first does (it resends one every 2 s).
        var hellos: [[Int]] = []
        let deadline = Date().addingTimeInterval(60)
        while hellos.count < 3 && Date() < deadline {
            guard try Socket.poll([router], timeout: .milliseconds(200))[0],
                  case .frames(let frames)? = try router.receive(maximumFrames: 8) else { continue }
            let decoded = try? Codec.decode(Array(frames.dropFirst()), limits: Limits())
            guard case .hello? = decoded?.payload else {
                Issue.record("hello \(hellos.count + 1) does not decode: frame sizes \(frames.dropFirst().map(\.count))")
                break
            }
            hellos.append(frames.dropFirst().map(\.count))
        }
        #expect(hellos.count == 3 && Set(hellos).count == 1 && hellos[0].allSatisfy { $0 > 0 }, "\(hellos)")
    }

    static func residentKilobytes(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}

/// The other way round: a real coordinator and worker train while fake workers say hello with odd fields, claim to
/// be ready with and without data, send heartbeats for any step, results that cannot be right, errors, shutdowns,
/// repeated hellos and raw garbage. The run must finish with the uninterrupted run's bits, with bounded memory and
/// log.
@Suite(.serialized)
struct HostilePeersTests {
    @Test("30 fake workers sending random protocol messages: the run ends with the in-process bits, bounded log and memory")
    func randomPeers() throws {
        var mix = HostileCoordinatorTests.Mix(state: 0xDEAD_BEEF_1234_5678)
        let port = Command.reservedPort(), endpoint = "tcp://127.0.0.1:\(port)"
        let log = Command.temporaryPath("peers.log"), out = Command.temporaryPath("peers.st")
        let coordinator = try Command.start(["coordinator", "--config", FailureTests.jobFile, "--bind", endpoint,
                                             "--workers", "1", "--heartbeat", "0.2", "--save", out], stderr: log)
        defer { kill(coordinator.processIdentifier, SIGKILL) }
        let worker = try FailureTests.worker(port, name: "honest", log: Command.temporaryPath("peers-worker.log"))
        _ = try Command.waitForLine(in: log, containing: "ready (1/1)", timeout: 30)
        let context = try Context()
        let peers = try (0..<30).map { index -> Socket in
            let dealer = try Socket(context, .dealer)
            try dealer.connect(endpoint)
            return dealer
        }
        defer { peers.forEach { $0.close() } }
        var largestRSS = 0, sent = 0
        let deadline = Date().addingTimeInterval(60)
        while coordinator.isRunning && Date() < deadline {
            let peer = peers[Int(mix.next() % UInt64(peers.count))]
            let job = mix.next() % 4 == 0 ? 0 : mix.next()
            let step = mix.next() % 700
            let messages: [[Message]]
            switch mix.next() % 9 {
            case 0:
                let name = String(repeating: mix.pick(["\u{1b}[31m", "x", "é", "\n", "\u{0}"]), count: Int(mix.next() % 300))
                messages = [try Codec.hello(fields: ["name": name, "host": "fake", "blas": mix.pick(["", "Haswell", "?"])],
                                            cores: Int(mix.next() % 1000), pid: Int32(truncatingIfNeeded: mix.next()))]
            case 1: messages = [try Codec.ready(job: job, worker: UInt32(mix.next() % 40), hasData: mix.next() % 2 == 0)]
            case 2: messages = [try Codec.heartbeat(job: job, step: step, worker: UInt32(mix.next() % 40))]
            case 3:
                // Never a result a real worker could send: the sample count is always off.
                let count = Int(mix.next() % 3000)
                messages = [[try Codec.gradientHeader(job: job, step: step, worker: UInt32(mix.next() % 40),
                                                      samples: 97 + Int(mix.next() % 5), correct: 0, lossHigh: 0,
                                                      lossLow: 0, exact: true, overflowed: false,
                                                      attempt: mix.next() % 4),
                             try Message(copying: [UInt8](repeating: UInt8(mix.next() % 256), count: count))]]
            case 4: messages = [try Codec.error(String(repeating: "e", count: Int(mix.next() % 5000)), job: job,
                                                step: step, worker: UInt32(mix.next() % 40))]
            case 5: messages = [try Codec.shutdown("bye", job: job, disposition: .finished)]
            case 6: messages = [try (0..<Int(1 + mix.next() % 5)).map { _ in
                try Message(copying: (0..<Int(mix.next() % 200)).map { _ in UInt8(mix.next() % 256) }) }]
            default: messages = []
            }
            for message in messages { try? peer.send(message, wait: false); sent += 1 }
            largestRSS = max(largestRSS, HostileCoordinatorTests.residentKilobytes(coordinator.processIdentifier))
            if sent % 50 == 0 { usleep(2000) }
        }
        let status = Command.wait(coordinator, timeout: 60)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(status == 0, "\(text.suffix(1500))")
        #expect(try FailureTests.digest(out) == FailureTests.reference.digest, "garbage changed the bits")
        #expect(text.utf8.count < 400_000, "\(text.utf8.count) bytes of log for \(sent) messages")
        #expect(!text.contains("\u{1b}"), "a control character reached the log")
        #expect(largestRSS < 512 * 1024, "\(largestRSS) kB resident")
        FailureTests.expectAllEnded([worker])
    }
}
