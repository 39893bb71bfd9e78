import Engine
import Jobs
import Wire

/// Messages from peers: a hello admits a member, a ready one joins the steps, and everything else refreshes it.
extension CoordinatorCore {
    /// What the shell did with a message before it came here.
    struct Received {
        /// With keys: ", key ABCDEF…" naming the connection's public key, for the join line.
        var key = ""
        /// A ready member's result region is mapped (the shell owns the mapping).
        var mappedResultRegion = false
    }

    /// A decoded, checked message from the peer `identity`.
    mutating func receive(_ envelope: Envelope, from identity: [UInt8], at now: ContinuousClock.Instant,
                          _ received: Received = Received()) -> [CoordinatorAction] {
        self.now = now
        if case .hello(let fields) = envelope.payload {
            hello(identity, fields, key: received.key, at: now)
            return drain()
        }
        guard let index = table.index(of: identity) else {
            // Not a hello and not a member: a worker this coordinator has never seen (it restarted). Ask it in.
            return [.reply(identity: identity, .shutdown("this coordinator does not know this worker; join again",
                                                         .rejoin))]
        }
        table[index].lastHeard = now
        if table[index].state == .lost {
            guard !table[index].toldToRejoin else { return [] }
            table[index].toldToRejoin = true
            return [.reply(identity: identity, .shutdown("\(label(index)) was declared lost; join again", .rejoin))]
        }
        switch envelope.payload {
        case .ready(let hasData, _, let readsWeights, let products):
            ready(index, hasData: hasData, mappedRegion: received.mappedResultRegion, readsWeights: readsWeights,
                  products: products)
        case .gradient(let frame):
            result(index, envelope.header, frame, at: now)
        case .gradientPart(let attempt, let array, let arrays, let first, let values):
            part(index, envelope.header, PartOrder(attempt: attempt, array: array, arrays: arrays, first: first,
                                                   values: values, microShards: 0))
        case .error(let text):
            lose(index, .reportedError(String(text.prefix(300))))
        default:
            break  // heartbeats only refresh lastHeard
        }
        return drain()
    }

    private mutating func hello(_ identity: [UInt8], _ fields: [String: String], key: String,
                                at now: ContinuousClock.Instant) {
        if let old = table.index(of: identity) {
            if table[old].state == .joining {
                // Said again before the job reached it (a worker says hello every 2 s until it has the job, and this
                // coordinator may have been busy): the same member, sent the same job again.
                table[old].lastHeard = now
                emit(.send(member: old, .job))
                return
            }
            if table[old].state != .lost { lose(old, .restarted) }
            rejoinCount += 1
        }
        let refusedForGood = notAdmittedAgain[Self.admissionKey(identity, fields[PeerFields.connectionKey])]
        if tooSlowStreak[identity, default: 0] >= 2 || wrongValuesStreak[identity, default: 0] >= 2 || refusedForGood != nil {
            let why = refusedForGood ?? (tooSlowStreak[identity, default: 0] >= 2
                ? "this worker was lost twice in a row for returning no result within --worker-timeout "
                    + "(\(Seconds(settings.workerTimeout))); it is not admitted again in this run"
                : "this worker was lost twice in a row for values no computation of its micro-shards gives; it is not "
                    + "admitted again in this run")
            emit(.reply(identity: identity, .shutdown(why, .failed)))
            if let line = newcomerLine("refused a hello from \(PeerGuard.name(identity)) (\(Codec.printable(fields["name"] ?? "?"))): \(why)") {
                emit(.log(line))
            }
            return
        }
        let round = self.round
        guard let index = table.admit(identity: identity, fields: fields, now: now,
                                      inUse: { round?.references($0) ?? false }) else {
            emit(.reply(identity: identity, .error("this coordinator already holds \(MemberTable.capacity) workers; "
                + "try again later")))
            return
        }
        let member = table[index]
        let line = "\(member.label) joined with \(member.cores) cores, build \(member.build), \(kernels(of: member))\(key)"
        emit(.send(member: index, .job, then: newcomerLine(line)))
    }

    /// What computes a member's products for this job: "oneDNN avx512_core_bf16" or "BLAS Cooperlake".
    func kernels(of member: Member) -> String {
        admission.library.kernels(oneDNN: member.oneDNN, blas: member.blas)
    }

    /// Why `member`, ready with products fingerprint `products`, cannot compute this job's micro-shards; nil if it
    /// can.
    func refusal(of member: Member, products: UInt64) -> String? {
        let exact = admission.reduction == .exact
        if exact, admission.library == .openBLAS, member.blas.lowercased() != admission.blasKernel.lowercased() {
            return "exact mode needs every worker on the coordinator's BLAS kernel \(admission.blasKernel), and "
                + "\(member.label) runs \(member.blas); start it with OPENBLAS_CORETYPE=\(admission.blasKernel) if "
                + "its CPU can run that kernel, or use --reduction fast"
        }
        if !exact, products != 0 {
            return "\(member.label) sent a products fingerprint in fast mode (\(products)), which no worker of this "
                + "build does"
        }
        if exact, products != admission.productsFingerprint {
            // Names can agree while bits differ (a kernel's blocking may follow the CPU's caches): the bits decide.
            return "exact mode needs every worker's matrix products to match the coordinator's bit for bit, and "
                + "\(member.label)'s differ (it runs \(kernels(of: member)), the coordinator "
                + "\(admission.library.kernels)); run it on a CPU like the coordinator's, or use --reduction fast"
        }
        return nil
    }

    private mutating func ready(_ index: Int, hasData: Bool, mappedRegion: Bool, readsWeights: Bool, products: UInt64) {
        guard table[index].state == .joining else { return }
        let member = table[index]
        if let why = refusal(of: member, products: products) {
            emit(.reply(identity: member.identity, .shutdown(why, .failed)))
            lose(index, .refused(why))
            return
        }
        guard hasData else {
            emit(.log("\(member.label) has no matching copy of the data; sending \(admission.samples) samples"))
            emit(.send(member: index, .data))
            return
        }
        table[index].state = .ready
        // In parts, every result and weight goes as a message, which is what makes the overlap.
        table[index].hasResultRegion = mappedRegion && !settings.overlap
        table[index].readsWeightsRegion = readsWeights && hasWeightsRegion && !settings.overlap
        let shared = [table[index].readsWeightsRegion ? "weights" : nil, table[index].hasResultRegion ? "results" : nil]
            .compactMap { $0 }
        if settings.verbose && !shared.isEmpty {
            emit(.log("\(member.label) shares memory with this coordinator: \(shared.joined(separator: " and "))"))
        }
        if started {
            emit(.log("\(member.label) is ready and takes micro-shards from the next assignment on"))
        } else {
            let count = activeCount
            emit(.log("\(member.label) ready (" + (count <= settings.workers ? "\(count)/\(settings.workers))"
                : "\(count) ready, \(settings.workers) needed to start; all take micro-shards)")))
        }
    }
}
