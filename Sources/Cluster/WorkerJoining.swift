import Engine
import Foundation
import Jobs
import Platform
import Wire

/// Joining: saying hello until a coordinator answers with a job this worker can run, following its GEMM kernels, and
/// holding the training samples (its own copy when the fingerprint matches, else the coordinator's).
extension WorkerNode {
    /// The coordinator's weights region, when it offered one and this worker shares its machine (an ipc endpoint) and
    /// the region checks out; otherwise the weights come as messages.
    private func mapWeights(_ offer: RegionOffer?, parameterCount: Int) -> SharedRegion? {
        guard let offer, EndpointReach.sharesMemory(settings.endpoint) else { return nil }
        do {
            return try SharedRegion(mapping: offer, slots: 1, slotBytes: 4 * parameterCount)
        } catch {
            log("\(settings.name): the coordinator's weights region cannot be used (\(error)); weights come as messages")
            return nil
        }
    }

    /// The hello: who this worker is, what it runs, and the member id it had (0 for none).
    private func hello(resuming previousID: UInt32) throws -> [Message] {
        var fields = ["build": "shardtrain protocol \(Header.protocolVersion)",
                      "host": ProcessInfo.processInfo.hostName, "name": settings.name,
                      "blas": BLASKernel.loaded, "onednn": OneDNN.isa]
        // Where the other workers reach this one in a sharded layout (the coordinator checks the address).
        if let peers { fields[PeerFields.offered] = peers.endpoint }
        return try Codec.hello(fields: fields,
                        cores: ProcessInfo.processInfo.activeProcessorCount, pid: getpid(), resuming: previousID)
    }

    /// Says hello until a coordinator answers with the job, backing off while none is there; nil when the
    /// coordinator says its run has finished.
    func join(_ dealer: Socket, previousID: UInt32) throws -> Joined? {
        var backoff = Duration.milliseconds(100)
        var said = false
        let deadline = clock.now + settings.idleTimeout
        // Said once, as soon as the first tries have gone unanswered, then the tries go on until --idle-timeout.
        func sayWaiting() {
            // A local worker's coordinator is the process that started it, which may still be preparing its run (a large
            // model takes seconds): nothing to say.
            guard !said, settings.parentPID == nil else { return }
            said = true
            // Say why when it can be told: a name that does not resolve (yet: DNS may lag a new pod).
            let why = EndpointReach.resolutionProblem(settings.endpoint).map { ": \($0)" } ?? ""
            log("\(settings.name): nothing answers at \(settings.endpoint) yet\(why); retrying until --idle-timeout "
                + "(\(Seconds(settings.idleTimeout)))")
        }
        while clock.now < deadline {
            try checkParent()
            try checkHandshake()
            do {
                // Built anew for every try: sending a message empties it, so a hello resent after a lost answer (a
                // network blip, a restarted coordinator) would otherwise go out as empty frames.
                try dealer.send(try hello(resuming: previousID), wait: false)
            } catch let error as ZMQError where error.wouldBlock {
                // A connection takes a moment to come up; say so only when it is really waiting.
                if backoff >= .milliseconds(800) { sayWaiting() }
                Thread.sleep(forTimeInterval: backoff / .seconds(1))
                backoff = min(backoff * 2, .seconds(2))
                continue
            }
            // Sent; wait for the job a while, then say hello again (the coordinator may have restarted).
            let waitUntil = min(deadline, clock.now + .seconds(2))
            defer { if clock.now >= waitUntil { sayWaiting() } }
            while clock.now < waitUntil {
                guard try Socket.poll([dealer], timeout: waitUntil - clock.now)[0],
                      case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) else { continue }
                guard let envelope = try joiningMessage(frames) else { continue }
                switch envelope.payload {
                case .job(let description, let parameterCount, _, _, let heartbeat, let weightsOffer):
                    let header = envelope.header
                    return try accept(description, parameterCount: parameterCount, job: header.job, worker: header.worker,
                                      heartbeat: heartbeat, weightsOffer: weightsOffer, dealer)
                case .peers(let list) where list.peers.isEmpty:
                    // The keys a sharded layout's peers may come with, before the job.
                    try peers?.follow(list, me: 0)
                case .error(let text):
                    throw ClusterError("the coordinator refused this worker: \(text)")
                case .shutdown(_, .finished):
                    return nil
                case .shutdown(let reason, let disposition) where disposition != .rejoin:
                    throw ClusterError("the coordinator stopped this worker before it joined: \(reason)")
                default:
                    continue
                }
            }
        }
        throw ClusterError("no coordinator answered at \(settings.endpoint) within --idle-timeout "
            + "(\(Seconds(settings.idleTimeout))); check the address and that the coordinator is running")
    }

    /// A message while joining, decoded; nil for a leftover of an earlier session (weights, assignments), which does
    /// not decode without a job. A job this worker cannot read is the end of it.
    private func joiningMessage(_ frames: [Message]) throws -> Envelope? {
        // A job description may be large (a deep model's text): up to the announcement's own bound.
        var joining = Limits()
        joining.maximumJobBytes = JobAnnouncement.maximumBytes
        do {
            return try Codec.decode(frames, limits: joining)
        } catch {
            guard Codec.type(of: frames) != .job else {
                throw ClusterError("the coordinator's job message is malformed: \(error)")
            }
            return nil
        }
    }

    /// The job a coordinator sent, checked as a job file from disk is, and against this machine's memory, before any
    /// use: a job this worker cannot run is refused here and the coordinator told why.
    private func accept(_ description: [UInt8], parameterCount: Int, job: UInt64, worker: UInt32, heartbeat: Duration,
                        weightsOffer: RegionOffer?, _ dealer: Socket) throws -> Joined {
        let announcement: JobAnnouncement
        do {
            announcement = try JobAnnouncement(bytes: description)
            var sized = announcement.job
            sized.options.threads = settings.threads  // this worker's threads, not the job's
            try ResourceCheck.check(sized, samples: announcement.samples)
            guard announcement.samples >= 1 else { throw ClusterError("the job announces no samples") }
            guard announcement.job.model.layout.parameterCount == parameterCount else {
                throw ClusterError("the job's model has \(announcement.job.model.layout.parameterCount) "
                    + "parameters but the coordinator announced \(parameterCount)")
            }
        } catch {
            let why = "\(settings.name) cannot run the coordinator's job: \(error)"
            try? dealer.send(Codec.error(why, job: job, step: 0, worker: worker), wait: false)
            try? SocketTuning.flushOnClose(dealer, within: .seconds(1))
            throw ClusterError(why)
        }
        var limits = Limits(parameterCount: parameterCount, job: job, partSize: announcement.partSize)
        // The coordinator answers a hello said twice with the job again, possibly after this worker's connection
        // changed to the job's bound: the job must fit it.
        limits.maximumJobBytes = max(limits.maximumJobBytes, description.count)
        let width = announcement.job.model.inputs + max(1, announcement.job.model.outputs)
        let (bytes, overflow) = announcement.samples.multipliedReportingOverflow(by: width * 4)
        limits.maximumDataBytes = overflow ? Int.max : bytes
        return Joined(jobID: job, workerID: worker, announcement: announcement, heartbeat: heartbeat, limits: limits,
                      weightsRegion: mapWeights(weightsOffer, parameterCount: parameterCount))
    }

    /// Exact mode needs the coordinator's kernels: re-executes this worker with its OpenBLAS kernel or oneDNN
    /// instruction set (whichever the job's products use), or says why it cannot. `tell` reaches the coordinator,
    /// whose log then says why this worker left.
    func followKernel(_ announcement: JobAnnouncement, tell: (String) -> Void) throws {
        do {
            try followKernels(announcement, tell: tell)
        } catch let error as ClusterError {
            tell(error.message)
            throw error
        }
    }

    private func followKernels(_ announcement: JobAnnouncement, tell: (String) -> Void) throws {
        guard announcement.job.options.reduction == .exact else { return }
        if announcement.job.options.library == .oneDNN {
            try followInstructionSet(announcement.oneDNN, tell: tell)
            return
        }
        let theirs = announcement.blas, mine = BLASKernel.loaded
        guard theirs.lowercased() != mine.lowercased() else { return }
        if BLASKernel.origin == .explicit {
            throw ClusterError("exact mode needs the coordinator's BLAS kernel \(theirs), but OPENBLAS_CORETYPE pins "
                + "this worker to \(mine); unset it or set it to \(theirs)")
        }
        log("\(settings.name): switching from the \(mine) BLAS kernel to the coordinator's \(theirs) (exact mode)")
        tell("switching from the \(mine) BLAS kernel to the coordinator's \(theirs) (exact mode); joining again")
        if let why = BLASKernel.follow(theirs) {
            throw ClusterError("exact mode needs the coordinator's BLAS kernel \(theirs), and this worker runs \(mine): "
                + "\(theirs) \(why); run the coordinator with OPENBLAS_CORETYPE=\(mine), or use --reduction fast")
        }
    }

    private func followInstructionSet(_ theirs: String, tell: (String) -> Void) throws {
        let mine = OneDNN.isa
        guard theirs != mine else { return }
        if OneDNN.pinnedByUser {
            throw ClusterError("exact mode needs the coordinator's oneDNN instruction set \(theirs), but "
                + "\(OneDNN.variable) pins this worker to \(mine); unset it or set it to \(theirs.uppercased())")
        }
        log("\(settings.name): switching oneDNN from \(mine) to the coordinator's \(theirs) (exact mode)")
        tell("switching oneDNN from \(mine) to the coordinator's \(theirs) (exact mode); joining again")
        let why = OneDNN.follow(theirs)
        throw ClusterError("exact mode needs the coordinator's oneDNN instruction set \(theirs), and this worker "
            + "runs \(mine): \(why); run the coordinator with \(OneDNN.variable)=\(mine.uppercased()), "
            + "or use --reduction fast")
    }

    /// The samples: kept from the last session when the fingerprint matches, else this machine's own copy when it
    /// matches, else the coordinator's.
    func prepareData(_ dealer: Socket, _ session: Joined, held: (fingerprint: String, job: Job, data: Dataset)?)
        throws -> (Job, Dataset) {
        let announcement = session.announcement
        if let held, held.fingerprint == announcement.fingerprint, held.job == announcement.job {
            return (held.job, held.data)
        }
        do {
            // Paths come from the coordinator: only regular files that fit in memory are opened.
            if let why = announcement.job.data.unreadableFiles(limit: ResourceCheck.availableBytes()) {
                throw ClusterError(why)
            }
            let local = try announcement.job.trainingSamples()
            if local.training.fingerprint == announcement.fingerprint { return (local.job, local.training) }
            log("\(settings.name): my copy of the data differs from the coordinator's; receiving it")
        } catch {
            log("\(settings.name): no local copy of the data (\(error)); receiving it")
        }
        try send(dealer, Codec.ready(job: session.jobID, worker: session.workerID, hasData: false,
                                     products: session.products))
        let deadline = clock.now + settings.idleTimeout
        while clock.now < deadline {
            guard try Socket.poll([dealer], timeout: .seconds(1))[0],
                  case .frames(let frames)? = try dealer.receive(maximumFrames: Codec.maximumFrames) else { continue }
            guard case .data(let samples, let featureWidth, let targetWidth, let frame) =
                    try decode(frames, session.limits).payload else { continue }
            guard samples == announcement.samples, featureWidth >= 1, targetWidth >= 1,
                  frame.count == samples * (featureWidth + targetWidth) else {
                throw ClusterError("the data received (\(samples) samples of \(featureWidth) features and "
                    + "\(targetWidth) targets in \(frame.count) values) is not the \(announcement.samples) samples announced")
            }
            var values = [Float](repeating: 0, count: frame.count)
            values.withUnsafeMutableBufferPointer { frame.copy(into: $0.baseAddress!) }
            let data = try Dataset(name: "coordinator's samples", features: Array(values[..<(samples * featureWidth)]),
                                   featureWidth: featureWidth, targets: Array(values[(samples * featureWidth)...]),
                                   targetWidth: targetWidth)
            guard data.fingerprint == announcement.fingerprint else {
                throw ClusterError("the data received does not match its announced fingerprint")
            }
            // Widths, class indices and target ranges, as for data from disk: nothing out of range reaches a loss.
            do {
                return (try announcement.job.checked(against: data), data)
            } catch let error as InputError {
                throw ClusterError("the coordinator's data does not fit its job: \(error.message)")
            }
        }
        throw ClusterError("the coordinator did not send the data within --idle-timeout")
    }
}
