import CExactSum
import Engine
import Foundation
import Jobs
import Wire

/// A worker process: joins a coordinator, holds the training data, and computes the micro-shards it is assigned
/// with the shared engine until told to stop. It holds no training state, so when its coordinator goes silent it
/// simply joins again — the same coordinator, or one restarted with `--resume` on the same endpoint.
package final class WorkerNode {
    package struct Settings: Sendable {
        package var endpoint: String
        package var name: String
        /// Threads computing micro-shards (each with single-threaded products).
        package var threads = 1
        /// How long to keep trying to reach a coordinator before giving up.
        package var idleTimeout: Duration = .seconds(120)
        /// Stop when this process (the one that started us) is gone.
        package var parentPID: Int32?
        /// CurveZMQ: this worker's key and its coordinator's (nil: plaintext).
        package var keys: WorkerKeys?

        package init(endpoint: String, name: String) {
            self.endpoint = endpoint
            self.name = name
        }
    }

    /// How one session with a coordinator ended.
    enum SessionEnd {
        case finished
        case rejoin(String)
    }

    /// What a coordinator told this worker when it joined.
    struct Joined {
        let jobID: UInt64
        let workerID: UInt32
        let announcement: JobAnnouncement
        let heartbeat: Duration
        let limits: Limits
        /// The coordinator's weights region, mapped read-only (nil: weights come as messages).
        let weightsRegion: SharedRegion?
        /// Exact mode: this worker's fingerprint of the job's matrix products, sent with `ready` (0 in fast mode).
        var products: UInt64 = 0
    }

    let settings: Settings
    let log: (String) -> Void
    let clock = ContinuousClock()
    /// The same routing id across reconnects, so the coordinator recognises this worker.
    let routingID = (0..<16).map { _ in UInt8.random(in: 0 ... 255) }
    var checkHandshake: () throws -> Void = {}
    /// The socket other workers reach this one on, in a sharded layout (none for an ipc coordinator).
    var peers: WorkerPeers?

    package init(settings: Settings, log: @escaping (String) -> Void) {
        self.settings = settings
        self.log = log
    }

    /// The connection to the coordinator: a DEALER under this worker's routing id, and its handshake events.
    private struct Link {
        let dealer: Socket
        let monitor: HandshakeMonitor
        /// The largest frame it accepts.
        let frameBound: Int

        func close() {
            monitor.close()
            dealer.close()
        }
    }

    /// A DEALER to the coordinator that accepts frames no larger than a coordinator may send under `limits` (with no
    /// job: while joining, when the largest is a job), and no smaller than `atLeast`. libzmq refuses a larger frame
    /// at its size, before allocating it, and ends that connection for good (a protocol error: it does not
    /// reconnect), so a worker sent one hears nothing more and joins again on a new socket. A connection's bound is
    /// fixed when it is made, so a new bound takes a new socket (the coordinator hands the routing id over to it),
    /// `old` closed first: nothing sent after this can leave on the old connection and be lost with it. `old` is kept
    /// when its bound is the one needed and `keep` says its connection still works.
    private func link(_ context: Context, _ limits: Limits, atLeast: Int = 0, replacing old: Link?,
                      keep: Bool = true) throws -> Link {
        var limits = limits
        if limits.parameterCount == nil { limits.maximumJobBytes = JobAnnouncement.maximumBytes }
        let bytes = max(limits.maximumFrameBytesFromCoordinator, atLeast)
        if let old, keep, old.frameBound == bytes { return old }
        old?.close()
        let dealer = try Socket(context, .dealer)
        try SocketTuning.worker(dealer, maximumMessageBytes: bytes, routingID: routingID)
        if let keys = settings.keys {
            try SocketTuning.curveClient(dealer, keyPair: keys.keyPair, server: keys.coordinatorKey)
        }
        let monitor = try HandshakeMonitor(dealer, context: context)
        try dealer.connect(settings.endpoint)
        return Link(dealer: dealer, monitor: monitor, frameBound: bytes)
    }

    /// Joins and works until a coordinator says stop; throws if it cannot go on (the message says why).
    package func run() throws {
        let context = try Context()
        var link = try link(context, Limits(), replacing: nil)
        defer { link.close() }
        var verdict = HandshakeVerdict(endpoint: settings.endpoint, keys: settings.keys)
        // A refused key or a mismatch ends the worker at once; libzmq alone would retry in silence.
        checkHandshake = {
            if let refusal = verdict.judge(link.monitor.drain()) { throw ClusterError(refusal) }
        }
        peers = try WorkerPeers(context: context, coordinator: settings.endpoint, keys: settings.keys) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        defer { peers?.close() }
        var previousID: UInt32 = 0
        var held: (fingerprint: String, job: Job, data: Dataset)?
        while true {
            guard var joined = try join(link.dealer, previousID: previousID) else {
                log("\(settings.name): the run finished before this worker joined again; stopping")
                return
            }
            let told = joined, toldDealer = link.dealer
            try followKernel(joined.announcement) { text in
                try? send(toldDealer, Codec.error(text, job: told.jobID, step: 0, worker: told.workerID))
                // The message must leave before a re-execution ends this process's sockets.
                Thread.sleep(forTimeInterval: 0.1)
            }
            // The job, the coordinator's answer to this worker's hello, is the last message sent under the
            // previous bound that matters: a beat or a repeated job or key list may be lost in the switch.
            link = try self.link(context, joined.limits, replacing: link)
            let dealer = link.dealer
            joined.products = joined.announcement.job.productsFingerprint(samples: joined.announcement.samples)
            let (job, data) = try prepareData(dealer, joined, held: held)
            held = (joined.announcement.fingerprint, job, data)
            // On the coordinator's machine (an ipc endpoint), results can be handed over in shared memory.
            let region = EndpointReach.sharesMemory(settings.endpoint)
                ? SharedRegion(creatingFor: job.model.layout.parameterCount * GradientSum.bytesPerParameter(job.options.reduction),
                               slots: SharedRegion.resultSlots)
                : nil
            try send(dealer, Codec.ready(job: joined.jobID, worker: joined.workerID, hasData: true,
                                         region: region?.offer, readsWeightsRegion: joined.weightsRegion != nil,
                                         products: joined.products))
            // The coordinator names local workers itself; a remote one says where it is.
            if settings.parentPID == nil {
                log("\(settings.name): joined as w\(joined.workerID); \(job.options.library.kernels)"
                    + (peers.map { "; peers reach it at \($0.endpoint)" } ?? ""))
            }
            switch try work(dealer, joined, job: job, data: data, region: region) {
            case .finished:
                if settings.parentPID == nil { log("\(settings.name): the run finished; stopping") }
                return
            case .rejoin(let why):
                log("\(settings.name): \(why); joining again")
                previousID = joined.workerID
                // A new socket (this one's connection may have ended at a frame too large), whose bound still admits
                // what the coordinator may send from the last session until it hears this worker join again.
                link = try self.link(context, Limits(), atLeast: link.frameBound, replacing: link, keep: false)
            }
        }
    }

    // MARK: Working

    /// Computes assignments and sends heartbeats until the coordinator says stop, asks this worker to join again,
    /// or falls silent for three heartbeats.
    private func work(_ dealer: Socket, _ joined: Joined, job: Job, data: Dataset,
                      region: SharedRegion?) throws -> SessionEnd {
        let heartbeat = joined.heartbeat
        BLAS.setThreads(1)
        var weightsStep: UInt64?
        var lastHeard = clock.now, lastSent = clock.now
        func beat() {
            guard clock.now - lastSent >= heartbeat else { return }
            lastSent = clock.now
            try? dealer.send(Codec.heartbeat(job: joined.jobID, step: weightsStep ?? 0, worker: joined.workerID),
                             wait: false)
        }
        let session = WorkerSession(
            job: job, data: data, ids: .init(job: joined.jobID, worker: joined.workerID), parts: joined.limits.parts,
            threads: settings.threads,
            weightsRegion: joined.weightsRegion, resultRegion: region,
            packs: settings.keys != nil || !EndpointReach.isLocal(settings.endpoint),
            send: { [unowned self] frames in
                try self.send(dealer, frames)
                lastSent = self.clock.now
            },
            waitUntilIdle: { [unowned self] in try self.waitUntilIdle($0, step: $1) }, beat: beat)
        let sharded = peers.map { peers in
            ShardedWorker(peers: peers, me: joined.workerID, jobID: joined.jobID, options: job.options,
                          parts: joined.limits.parts,
                          weights: session.weights,
                          toCoordinator: { [unowned self] frames in try self.send(dealer, frames) })
        }
        if let sharded {
            session.route = route(to: sharded, joined) { [unowned self] frames in
                try self.send(dealer, frames)
                lastSent = self.clock.now
            }
            session.ownsPart = { [unowned sharded] in sharded.owner(of: $0) == joined.workerID }
            session.replicaDigests = { [unowned sharded] in sharded.weightsDigests(step: $0) }
        }
        var deferred: [AssignmentRequest] = []
        while true {
            try checkParent()
            beat()
            let sockets = [dealer] + (sharded.map { [$0.peers.router] } ?? [])
            let readable = try Socket.poll(sockets, timeout: heartbeat / 2)
            if let sharded, readable.count > 1, readable[1] { try receivePeers(sharded, joined) }
            if readable[0] {
                while case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) {
                    lastHeard = clock.now
                    let envelope: Envelope
                    do {
                        envelope = try Codec.decode(frames, limits: joined.limits)
                    } catch {
                        if case .wrongJob = error { return .rejoin("a new coordinator answers at \(settings.endpoint)") }
                        throw ClusterError("malformed message from the coordinator: \(error)")
                    }
                    if let sharded, try dispatchSharded(envelope, sharded, joined, session: session, deferred: &deferred) {
                        continue
                    }
                    if let end = try dispatch(envelope, to: session, dealer, joined) { return end }
                    weightsStep = session.weights.step
                }
            }
            // Assignments that waited for this step's weights to be made from the last step's means.
            while let request = deferred.first, let held = session.weights.step, request.step <= held {
                deferred.removeFirst()
                guard request.step == held else { continue }
                if let problem = session.refusal(of: request) {
                    try send(dealer, Codec.error(problem, job: joined.jobID, step: request.step, worker: joined.workerID))
                } else {
                    try session.run(request)
                }
                weightsStep = session.weights.step
            }
            // Judged only after a poll found nothing from the coordinator: after a long computation its messages
            // wait in the socket, and the next poll reads them.
            let silent = clock.now - lastHeard
            if !readable[0] && silent > heartbeat * 3 {
                return .rejoin("the coordinator has been silent for \(Seconds(silent))")
            }
        }
    }

    /// One message from the coordinator: weights taken, an assignment computed and answered, or the session's end.
    private func dispatch(_ envelope: Envelope, to session: WorkerSession, _ dealer: Socket, _ joined: Joined) throws
        -> SessionEnd? {
        let step = envelope.header.step
        let report = { (problem: String) in
            try self.send(dealer, Codec.error(problem, job: joined.jobID, step: step, worker: joined.workerID))
        }
        switch envelope.payload {
        case let weights where weights.carriesWeights:
            if let problem = try session.weights.take(weights, step: step) { try report(problem) }
        case .assignment(let epoch, let batch, let attempt, let ranges, let resultSlot, let inParts, let packsFloats,
                         let traced):
            let request = AssignmentRequest(step: step, epoch: epoch, batch: batch, attempt: attempt, ranges: ranges,
                                            resultSlot: resultSlot, inParts: inParts, packsFloats: packsFloats,
                                            traced: traced, received: SpanRecorder.now())
            if let problem = session.refusal(of: request) { try report(problem) } else { try session.run(request) }
        case .shutdown(let reason, let disposition):
            // Acknowledged, so the coordinator knows it was read before it closes; kept until sent.
            try? dealer.send(Codec.shutdown("received", job: joined.jobID, disposition: disposition), wait: false)
            try? SocketTuning.flushOnClose(dealer, within: .seconds(1))
            switch disposition {
            case .finished: return .finished
            case .rejoin: return .rejoin(reason)
            case .failed: throw CoordinatorStoppedRun(reason: reason)
            }
        case .error(let text):
            throw ClusterError("the coordinator reported: \(text)")
        default:
            break
        }
        return nil
    }
}
