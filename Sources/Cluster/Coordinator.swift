import Engine
import Foundation
import Wire

/// Runs the distributed side of a step: sends the weights and each worker's micro-shards, gathers their gradient
/// sums and adds them — in worker order, so fast mode is reproducible too — into the trainer's `GradientSum`.
///
/// One thread owns the socket: the trainer's.
public final class Coordinator: GradientSource {
    public struct Settings: Sendable {
        public var endpoint: String
        public var workers: Int
        /// How long to wait for all workers to join.
        public var joinTimeout: Duration = .seconds(60)
        /// How long a worker may take to return one step's result before the run stops.
        public var workerTimeout: Duration = .seconds(30)
        /// Log every step's timings and shares.
        public var verbose = false

        public init(endpoint: String, workers: Int) {
            self.endpoint = endpoint
            self.workers = workers
        }
    }

    /// Where the last step's time went, in seconds.
    public struct StepTimings: Sendable {
        public var send = 0.0, wait = 0.0, reduce = 0.0
    }

    public let settings: Settings
    public private(set) var workers: [WorkerInfo] = []
    public private(set) var lastTimings = StepTimings()
    /// Checked while waiting: the pid and ending of a worker process this coordinator started that has exited.
    public var processCheck: (() -> (pid: Int32, ending: String)?)?

    private let job: Job
    private let training: Dataset
    private let jobID: UInt64
    private let announcement: JobAnnouncement
    private let limits: Limits
    private let context: Context
    private let router: Socket
    private let guardian: PeerGuard
    private let log: (String) -> Void
    // Two weight buffers in turn: one may still be in libzmq's hands while the next step's weights are written.
    private let payloads: [SharedPayload]
    private var nextPayload = 0
    private let clock = ContinuousClock()

    public init(job: Job, training: Dataset, settings: Settings, log: @escaping (String) -> Void) throws {
        self.job = job
        self.training = training
        self.settings = settings
        self.log = log
        jobID = UInt64(UInt32(truncatingIfNeeded: getpid())) << 32 | UInt64(UInt32(truncatingIfNeeded: time(nil)))
        announcement = JobAnnouncement(job: job, samples: training.count, fingerprint: training.fingerprint)
        let count = job.model.layout.parameterCount
        var limits = Limits(parameterCount: count, job: jobID)
        limits.maximumJobBytes = max(limits.maximumJobBytes, announcement.bytes.count + 1024)
        self.limits = limits
        payloads = [SharedPayload(byteCount: 4 * count), SharedPayload(byteCount: 4 * count)]
        // Two I/O threads: two workers' megabyte results are read from their connections side by side.
        context = try Context(ioThreads: 2)
        router = try Socket(context, .router)
        try SocketTuning.coordinator(router, maximumMessageBytes: limits.maximumFrameBytes)
        do {
            try router.bind(settings.endpoint)
        } catch {
            throw ClusterError("cannot listen on \(settings.endpoint): \(error); pick a free port or address")
        }
        guardian = PeerGuard(limit: 5, log: log)
    }

    /// The endpoint workers connect to (a `tcp://…:*` bind resolved to its port).
    public var endpoint: String { router.lastEndpoint }

    // MARK: Joining

    /// Waits until `settings.workers` workers have joined and hold the data.
    public func waitForWorkers() throws {
        let deadline = clock.now + settings.joinTimeout
        var joining: [[UInt8]: WorkerInfo] = [:]
        while workers.count < settings.workers {
            let now = clock.now
            guard now < deadline else {
                let joined = workers.map(\.label).joined(separator: ", ")
                throw ClusterError("only \(workers.count) of \(settings.workers) workers joined within "
                    + "\(settings.joinTimeout)\(joined.isEmpty ? "" : ": \(joined)"); start more with "
                    + "`shardtrain worker --connect \(endpoint)` or raise --join-timeout")
            }
            if let failure = processCheck?() { throw ClusterError("\(failure.ending) before the run started") }
            guard let (identity, envelope) = try receive(timeout: min(deadline - now, .milliseconds(200))) else { continue }
            switch envelope.payload {
            case .hello(let fields):
                let info = WorkerInfo(id: UInt32(workers.count + joining.count + 1), identity: identity,
                                      name: fields["name"] ?? "?", host: fields["host"] ?? "?", pid: fields["pid"] ?? "?",
                                      cores: fields["cores"] ?? "?", build: fields["build"] ?? "?")
                joining[identity] = info
                try router.send([Message(copying: identity)] + Codec.job(
                    announcement.bytes, job: jobID, worker: info.id, parameterCount: limits.parameterCount!,
                    maximumMicroShards: GradientSum.maximumMicroShards, exact: job.options.reduction == .exact))
                log("\(info.label) joined with \(info.cores) cores, build \(info.build)")
            case .ready(let hasData):
                guard let info = joining[identity] else { continue }
                if hasData {
                    joining[identity] = nil
                    workers.append(info)
                    log("\(info.label) ready (\(workers.count)/\(settings.workers))")
                } else {
                    log("\(info.label) has no matching copy of the data; sending \(training.count) samples")
                    try sendData(to: identity)
                }
            case .error(let text):
                if let info = joining[identity] { throw ClusterError("\(info.label) could not join: \(text)") }
            default:
                continue
            }
        }
    }

    private func sendData(to identity: [UInt8]) throws {
        let values = training.features + training.targets
        try router.send([Message(copying: identity),
                         Codec.dataHeader(job: jobID, samples: training.count, featureWidth: training.featureWidth,
                                          targetWidth: training.targetWidth),
                         values.withUnsafeBytes { try Message(copying: $0) }])
    }

    // MARK: A step

    public func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                           parameters: Buffer<Float>, into sum: GradientSum) throws {
        let started = clock.now
        let ranges = Sharding.split(microShards, speeds: workers.map(\.speed))
        let payload = payloads[nextPayload]
        nextPayload = 1 - nextPayload
        let idleBy = started + settings.workerTimeout
        while !payload.isIdle {
            guard clock.now < idleBy else {
                throw ClusterError("the weights of step \(step - 2) are still not delivered after "
                    + "\(settings.workerTimeout); a worker has stopped reading. The run stops")
            }
            usleep(20)
        }
        payload.bytes.copyMemory(from: parameters.pointer, byteCount: payload.byteCount)
        let weights = try Message(sharing: payload)
        for (worker, range) in zip(workers, ranges) where !range.isEmpty {
            try send(to: worker, [Codec.weightsHeader(job: jobID, step: UInt64(step), parameterCount: payload.byteCount / 4),
                                  weights.share()])
            try send(to: worker, Codec.assignment(job: jobID, step: UInt64(step), worker: worker.id,
                                                  epoch: UInt64(epoch), batch: UInt64(batchIndex), ranges: [range]))
        }
        let sent = clock.now
        let microShardSize = job.options.microShardSize
        var results = [GradientFrame?](repeating: nil, count: workers.count)
        var waiting = Set(ranges.indices.filter { !ranges[$0].isEmpty })
        let deadline = sent + settings.workerTimeout
        while !waiting.isEmpty {
            if let failure = processCheck?() {
                let index = workers.firstIndex { $0.pid == String(failure.pid) }
                let shards = index.map { ranges[$0].isEmpty ? ", which had no micro-shards this step"
                    : ", which held micro-shards \(ranges[$0]) of batch \(batchIndex)" } ?? ""
                let name = index.map { workers[$0].label + ": " } ?? ""
                throw ClusterError("\(name)\(failure.ending) during step \(step)\(shards); the run stops")
            }
            guard clock.now < deadline else {
                let late = waiting.sorted().map { "\(workers[$0].label) (micro-shards \(ranges[$0]))" }
                throw ClusterError("no result for step \(step) (epoch \(epoch), batch \(batchIndex)) within "
                    + "\(settings.workerTimeout) from \(late.joined(separator: ", ")); the run stops. Raise "
                    + "--worker-timeout if the workers are only slow")
            }
            guard let (identity, envelope) = try receive(timeout: .milliseconds(100)) else { continue }
            guard let index = workers.firstIndex(where: { $0.identity == identity }) else {
                if case .hello = envelope.payload {
                    let why = "the run has started with its \(workers.count) workers and takes no new ones; start "
                        + "workers before the coordinator's --workers count is reached"
                    log("refused \(PeerGuard.name(identity)): \(why)")
                    try? router.send([Message(copying: identity)] + Codec.error(why, job: jobID, step: 0, worker: 0),
                                     wait: false)
                }
                continue
            }
            let worker = workers[index]
            switch envelope.payload {
            case .gradient(let result):
                let range = ranges[index]
                let expected = min(range.upperBound * microShardSize, batch.count) - range.lowerBound * microShardSize
                guard waiting.contains(index), envelope.header.step == UInt64(step), envelope.header.worker == worker.id,
                      result.samples == expected, result.exact == (job.options.reduction == .exact) else {
                    throw ClusterError("\(worker.label) sent a mismatched result (step \(envelope.header.step), "
                        + "\(result.samples) samples) for step \(step), micro-shards \(range) (\(expected) samples); "
                        + "it is disconnected and the run stops")
                }
                results[index] = result
                waiting.remove(index)
                let seconds = max((clock.now - sent) / .seconds(1), 1e-6)
                let speed = Double(range.count) / seconds
                workers[index].speed = worker.speed == 1.0 ? speed : 0.7 * worker.speed + 0.3 * speed
            case .error(let text):
                throw ClusterError("\(worker.label) failed at step \(step) (micro-shards \(ranges[index])): \(text)")
            default:
                continue
            }
        }
        let gathered = clock.now
        for result in results.compactMap({ $0 }) {
            result.withValues { bytes in
                sum.add(bytes: bytes, samples: result.samples, correct: result.correct,
                        lossWords: (result.lossHigh, result.lossLow), overflowed: result.overflowed)
            }
        }
        let reduced = clock.now
        lastTimings = StepTimings(send: (sent - started) / .seconds(1), wait: (gathered - sent) / .seconds(1),
                                  reduce: (reduced - gathered) / .seconds(1))
        if settings.verbose {
            let shares = zip(workers, ranges).map { "w\($0.id) \($1.count)" }.joined(separator: ", ")
            log(String(format: "step %d: send %.3f ms, wait %.3f ms, reduce %.3f ms; micro-shards %@", step,
                       lastTimings.send * 1000, lastTimings.wait * 1000, lastTimings.reduce * 1000, shares))
        }
    }

    /// Tells every worker to stop (best effort: a worker that is gone is simply skipped).
    public func shutdown(reason: String = "training finished") {
        for worker in workers {
            try? router.send([Message(copying: worker.identity)] + Codec.shutdown(reason, job: jobID), wait: false)
        }
    }

    // MARK: Receiving

    private func send(to worker: WorkerInfo, _ frames: [Message]) throws {
        do {
            try router.send([Message(copying: worker.identity)] + frames)
        } catch let error as ZMQError where error.unroutable {
            throw ClusterError("\(worker.label) is no longer connected; the run stops")
        }
    }

    /// The next valid message from a peer that is not cut off, or nil after `timeout`. Garbage is logged in one
    /// line naming the peer and dropped.
    private func receive(timeout: Duration) throws -> ([UInt8], Envelope)? {
        let deadline = clock.now + timeout
        while true {
            let remaining = deadline - clock.now
            guard remaining > .zero, try Socket.poll([router], timeout: remaining)[0] else { return nil }
            while let received = try router.receive(maximumFrames: Codec.maximumFrames + 1) {
                switch received {
                case .tooManyFrames(let first, let total):
                    let identity = first.first?.bytes ?? []
                    if !guardian.isCutOff(identity) { guardian.refused(identity, name: name(identity), .tooManyFrames(total)) }
                case .frames(let frames):
                    let identity = frames[0].bytes
                    guard !guardian.isCutOff(identity) else { continue }
                    do {
                        return (identity, try Codec.decode(Array(frames.dropFirst()), limits: limits))
                    } catch {
                        if case .version = error {
                            try? router.send([Message(copying: identity)] + Codec.error("\(error)", job: jobID, step: 0,
                                                                                      worker: 0), wait: false)
                        }
                        if guardian.refused(identity, name: name(identity), error),
                           let worker = workers.first(where: { $0.identity == identity }) {
                            throw ClusterError("\(worker.label) sent malformed messages (\(error)); it is disconnected "
                                + "and the run stops")
                        }
                    }
                }
            }
        }
    }

    private func name(_ identity: [UInt8]) -> String {
        workers.first { $0.identity == identity }?.label ?? PeerGuard.name(identity)
    }
}
