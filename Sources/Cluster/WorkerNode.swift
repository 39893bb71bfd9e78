import Engine
import Foundation
import Wire

/// A worker process: joins a coordinator, holds the training data, and computes the micro-shards it is assigned
/// with the shared engine until told to stop.
public final class WorkerNode {
    public struct Settings: Sendable {
        public var endpoint: String
        public var name: String
        /// Threads computing micro-shards (each with single-threaded BLAS).
        public var threads = 1
        /// How long to wait without hearing from the coordinator before giving up.
        public var idleTimeout: Duration = .seconds(120)
        /// Stop when this process (the one that started us) is gone.
        public var parentPID: Int32?

        public init(endpoint: String, name: String) {
            self.endpoint = endpoint
            self.name = name
        }
    }

    private let settings: Settings
    private let log: (String) -> Void
    private let clock = ContinuousClock()

    public init(settings: Settings, log: @escaping (String) -> Void) {
        self.settings = settings
        self.log = log
    }

    /// Joins and works until the coordinator says stop; throws if it cannot go on (the message says why).
    public func run() throws {
        let context = try Context()
        let dealer = try Socket(context, .dealer)
        // Sizes are unknown until the job arrives; the decoder still checks every length against the job.
        try SocketTuning.worker(dealer, maximumMessageBytes: Int(Int32.max))
        try dealer.connect(settings.endpoint)
        var limits = Limits()
        let (jobID, workerID, announcement) = try join(dealer, limits: &limits)
        // Its own copy of the samples if it can make one that matches the fingerprint; else the coordinator's.
        var job = announcement.job
        var data: Dataset?
        do {
            let local = try announcement.job.trainingSamples()
            if local.training.fingerprint == announcement.fingerprint {
                (job, data) = (local.job, local.training)
            } else {
                log("\(settings.name): my copy of the data differs from the coordinator's; receiving it")
            }
        } catch {
            log("\(settings.name): no local copy of the data (\(error)); receiving it")
        }
        if data == nil {
            try dealer.send(Codec.ready(job: jobID, worker: workerID, hasData: false))
            data = try receiveData(dealer, limits: limits, expected: announcement)
        }
        guard let data else { return }
        try dealer.send(Codec.ready(job: jobID, worker: workerID, hasData: true))
        try work(dealer, job: job, data: data, limits: limits, jobID: jobID, workerID: workerID)
    }

    /// Says hello until the coordinator answers with the job, backing off while it is not there yet.
    private func join(_ dealer: Socket, limits: inout Limits) throws -> (UInt64, UInt32, JobAnnouncement) {
        let hello = {
            try Codec.hello(fields: ["build": "shardtrain protocol \(Header.protocolVersion)",
                                     "host": ProcessInfo.processInfo.hostName, "name": self.settings.name],
                            cores: ProcessInfo.processInfo.activeProcessorCount, pid: getpid())
        }
        var backoff = Duration.milliseconds(100)
        var said = false
        let deadline = clock.now + settings.idleTimeout
        while clock.now < deadline {
            do {
                try dealer.send(hello(), wait: false)
            } catch let error as ZMQError where error.wouldBlock {
                if !said { log("\(settings.name): waiting for the coordinator at \(settings.endpoint)") }
                said = true
                Thread.sleep(forTimeInterval: Double(backoff / .milliseconds(1)) / 1000)
                backoff = min(backoff * 2, .seconds(2))
                continue
            }
            // Sent; wait for the job a while, then say hello again (the coordinator may have restarted).
            guard try Socket.poll([dealer], timeout: .seconds(5))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) else { continue }
            let envelope = try decode(frames, limits)
            switch envelope.payload {
            case .job(let description, let parameterCount, _, _):
                let announcement = try JobAnnouncement(bytes: description)
                limits = Limits(parameterCount: parameterCount, job: envelope.header.job)
                let width = announcement.job.model.inputs + max(1, announcement.job.model.outputs)
                limits.maximumDataBytes = announcement.samples * width * 4
                guard announcement.job.model.layout.parameterCount == parameterCount else {
                    throw ClusterError("the job's model has \(announcement.job.model.layout.parameterCount) parameters "
                        + "but the coordinator announced \(parameterCount)")
                }
                return (envelope.header.job, envelope.header.worker, announcement)
            case .error(let text):
                throw ClusterError("the coordinator refused this worker: \(text)")
            default:
                continue
            }
        }
        throw ClusterError("no coordinator answered at \(settings.endpoint) within \(settings.idleTimeout)")
    }

    private func receiveData(_ dealer: Socket, limits: Limits, expected: JobAnnouncement) throws -> Dataset {
        guard try waitForMessage(dealer),
              case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames),
              case .data(let samples, let featureWidth, let targetWidth, let frame) = try decode(frames, limits).payload else {
            throw ClusterError("the coordinator did not send the data")
        }
        var values = [Float](repeating: 0, count: frame.count)
        values.withUnsafeMutableBufferPointer { frame.copy(into: $0.baseAddress!) }
        let data = try Dataset(name: "coordinator's samples", features: Array(values[..<(samples * featureWidth)]),
                               featureWidth: featureWidth, targets: Array(values[(samples * featureWidth)...]),
                               targetWidth: targetWidth)
        guard data.fingerprint == expected.fingerprint else {
            throw ClusterError("the data received does not match its announced fingerprint")
        }
        return data
    }

    /// Computes assignments until shutdown.
    private func work(_ dealer: Socket, job: Job, data: Dataset, limits: Limits, jobID: UInt64, workerID: UInt32) throws {
        let options = job.options
        BLAS.setThreads(1)
        let slices = ParallelSlices(spec: job.model, loss: job.loss, targetWidth: data.targetWidth,
                                    microShardSize: options.microShardSize, reduction: options.reduction,
                                    largestSlice: options.batchSize, threads: settings.threads)
        let plan = BatchPlan(sampleCount: data.count, batchSize: options.batchSize, shuffle: options.shuffle,
                             dropLast: options.dropLast, seed: options.seed)
        let parameters = Buffer<Float>(count: job.model.layout.parameterCount)
        // Two sums in turn, each sent zero-copy: one may still be in libzmq's hands while the next is computed.
        let sums = (0..<2).map { _ in GradientSum(count: parameters.count, reduction: options.reduction) }
        let outgoing = sums.map { sum in
            SharedPayload(borrowing: UnsafeMutableRawPointer(mutating: sum.valueBytes.baseAddress!),
                          byteCount: sum.valueBytes.count, owner: sum)
        }
        var turn = 0
        let order = Buffer<Int>(count: data.count)
        var orderEpoch = -1
        var weightsStep: UInt64?
        while true {
            guard try waitForMessage(dealer) else {
                throw ClusterError("the coordinator has been silent for \(settings.idleTimeout); stopping")
            }
            guard case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) else { continue }
            let envelope = try decode(frames, limits)
            let step = envelope.header.step
            switch envelope.payload {
            case .weights(let frame):
                frame.copy(into: parameters.pointer)
                weightsStep = step
            case .assignment(let epoch, let batchIndex, _, let ranges):
                guard weightsStep == step else {
                    try dealer.send(Codec.error("assignment for step \(step) arrived without its weights", job: jobID,
                                                step: step, worker: workerID))
                    continue
                }
                if orderEpoch != Int(epoch) {
                    plan.writeOrder(epoch: Int(epoch), into: order.elements)
                    orderEpoch = Int(epoch)
                }
                let shardCount = slices.computers[0].microShardCount(batchSize: plan.range(ofBatch: Int(batchIndex)).count)
                guard Int(batchIndex) < plan.batchesPerEpoch, let last = ranges.last, last.upperBound <= shardCount else {
                    try dealer.send(Codec.error("assignment \(ranges) for batch \(batchIndex) is outside its "
                        + "\(plan.batchesPerEpoch) batches or their micro-shards", job: jobID, step: step, worker: workerID))
                    continue
                }
                let range = plan.range(ofBatch: Int(batchIndex))
                let batch = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(order.elements)[range])
                let sum = sums[turn], payload = outgoing[turn]
                turn = 1 - turn
                let idleBy = clock.now + settings.idleTimeout
                while !payload.isIdle {
                    guard clock.now < idleBy else {
                        throw ClusterError("the coordinator has not read step \(step)'s previous result within "
                            + "\(settings.idleTimeout); stopping")
                    }
                    usleep(20)
                }
                sum.reset()
                for shards in ranges {
                    slices.accumulate(batch: batch, microShards: shards, data: data, parameters: parameters.pointer,
                                      into: sum)
                }
                try dealer.send([Codec.gradientHeader(job: jobID, step: step, worker: workerID, samples: sum.samples,
                                                      correct: sum.correct, lossHigh: sum.lossWords.0,
                                                      lossLow: sum.lossWords.1, exact: options.reduction == .exact,
                                                      overflowed: sum.overflowed),
                                 Message(sharing: payload)])
            case .shutdown:
                return
            case .error(let text):
                throw ClusterError("the coordinator reported: \(text)")
            default:
                continue
            }
        }
    }

    /// Polls in one-second slices up to the idle timeout, stopping early if the parent process is gone.
    private func waitForMessage(_ dealer: Socket) throws -> Bool {
        let deadline = clock.now + settings.idleTimeout
        while clock.now < deadline {
            if try Socket.poll([dealer], timeout: .seconds(1))[0] { return true }
            if let parent = settings.parentPID, getppid() != parent {
                throw ClusterError("the process that started this worker (pid \(parent)) is gone; stopping")
            }
        }
        return false
    }

    private func decode(_ frames: [Message], _ limits: Limits) throws -> Envelope {
        do {
            return try Codec.decode(frames, limits: limits)
        } catch {
            throw ClusterError("malformed message from the coordinator: \(error)")
        }
    }
}
