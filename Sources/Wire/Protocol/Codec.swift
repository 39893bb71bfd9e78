import CExactSum

/// What a receiver accepts: sizes come from the job, so no length field can make it allocate or read more.
package struct Limits: Sendable, Equatable {
    /// Floats in the weights and gradients (nil before a job is known: such messages are then refused).
    package var parameterCount: Int?
    /// The job's id (nil before one is known).
    package var job: UInt64?
    /// Micro-shard ranges one assignment may carry.
    package var maximumRanges = 4096
    /// Bytes of a hello, error or shutdown text.
    package var maximumTextBytes = 4096
    /// Bytes of a job description.
    package var maximumJobBytes = 1 << 20
    /// Bytes of a data message (0: none expected).
    package var maximumDataBytes = 0
    /// Parameters in a part of the weights or a result (the job's `PartSplit`).
    package var partSize = PartSplit.largestSize

    package init(parameterCount: Int? = nil, job: UInt64? = nil, partSize: Int = PartSplit.largestSize) {
        self.parameterCount = parameterCount
        self.job = job
        self.partSize = partSize
    }

    /// The job's parts (none before a job is known).
    package var parts: PartSplit { PartSplit(parameterCount: parameterCount ?? 0, size: partSize) }

    /// The largest legal frame, for ZMQ_MAXMSGSIZE: the exact gradient, or the job description, plus a margin.
    package var maximumFrameBytes: Int { withMargin(GradientFrame.exactBytesPerParameter * (parameterCount ?? 0)) }

    /// The largest legal frame a coordinator sends a worker: the weights with the most optimizer state, the data, a
    /// job or a text, plus a margin.
    package var maximumFrameBytesFromCoordinator: Int {
        withMargin(4 * (1 + Int(WeightsFields.maximumStateBuffers)) * (parameterCount ?? 0))
    }

    /// The larger of `parameterFrame` and the job, text and data frames, plus a margin (at most Int.max).
    private func withMargin(_ parameterFrame: Int) -> Int {
        let largest = max(parameterFrame, maximumJobBytes, maximumTextBytes, maximumDataBytes)
        return largest > Int.max - 4096 ? Int.max : largest + 4096
    }
}

/// Builds and checks protocol messages. Decoding never traps, never reads past a frame and never allocates by a
/// length it was told: every size is compared with the frame's real size and with `Limits` first.
package enum Codec {
    /// Frames in any legal message, the ROUTER's identity frame included.
    package static let maximumFrames = 3
    // MARK: Encoding (each message type's fields are written by its `HeaderFields`)

    package static func hello(fields: [String: String], cores: Int, pid: Int32, resuming worker: UInt32 = 0)
        throws -> [Message] {
        let text = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        return try frames(header(HelloFields(cores: cores, pid: pid, previousWorker: worker)), Array(text.utf8))
    }

    package static func job(_ description: [UInt8], job: UInt64, worker: UInt32, parameterCount: Int,
                           maximumMicroShards: Int, exact: Bool, heartbeat: Duration,
                           weightsRegion: RegionOffer? = nil) throws -> [Message] {
        let fields = JobFields(parameterCount: parameterCount, maximumMicroShards: maximumMicroShards, exact: exact,
                               heartbeat: heartbeat, weightsRegion: weightsRegion)
        return try frames(header(fields, job: job, worker: worker), description)
    }

    /// The weights header; send it followed by a frame over the shared weights (`Message(sharing:)`), or by an
    /// empty frame when they are in the coordinator's weights region (`inRegion`) or came in parts (`fromParts`).
    package static func weightsHeader(job: UInt64, step: UInt64, parameterCount: Int, inRegion: Bool = false,
                                     fromParts: Bool = false) throws -> Message {
        let form: WeightsFields.Form = fromParts ? .fromParts : inRegion ? .inRegion : .floats
        return try Message(copying: header(WeightsFields(parameterCount: parameterCount, form: form), job: job,
                                           step: step).encoded())
    }

    /// Sharded layout: the weights header saying the worker's own weights, updated from the last step's means, are
    /// the step's (`stateBuffers` nil; send an empty frame after), or that the frame after holds the weights then
    /// `stateBuffers` optimizer state buffers, with the optimizer's step count.
    /// `replicaKey` (not 0) seeds the key the worker digests the step's weights with (`ReplicaDigests`).
    package static func shardedWeightsHeader(job: UInt64, step: UInt64, parameterCount: Int, stateBuffers: Int?,
                                            optimizerSteps: Int = 0, replicaKey: UInt64) throws -> Message {
        precondition(replicaKey != 0, "a replica key of 0 is no key")
        let fields = WeightsFields(parameterCount: parameterCount, form: stateBuffers == nil ? .fromMeans : .withState,
                                   stateBuffers: stateBuffers ?? 0, optimizerSteps: optimizerSteps,
                                   replicaKey: replicaKey)
        return try Message(copying: header(fields, job: job, step: step).encoded())
    }

    package static func assignment(job: UInt64, step: UInt64, worker: UInt32, epoch: UInt64, batch: UInt64,
                                  attempt: UInt64 = 0, ranges: [Range<Int>], resultSlot: Int? = nil,
                                  inParts: Bool = false, packsFloats: Bool = false,
                                  traced: Bool = false) throws -> [Message] {
        var bytes: [UInt8] = []
        for range in ranges {
            withUnsafeBytes(of: UInt32(range.lowerBound).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt32(range.upperBound).littleEndian) { bytes += $0 }
        }
        let fields = AssignmentFields(epoch: epoch, batch: batch, attempt: attempt, resultSlot: resultSlot, inParts: inParts,
                                      packsFloats: packsFloats, traced: traced)
        return try frames(header(fields, job: job, step: step, worker: worker), bytes)
    }

    /// The gradient header; send it followed by the values frame.
    /// `regionSlot`: the values are in that slot of the worker's result region (send an empty frame after);
    /// `packed`: the frame holds them as `cexact_pack` writes them; `floatShards` (1 to 4): the values are that
    /// many micro-shards' Float gradient sums rather than limbs.
    package static func gradientHeader(job: UInt64, step: UInt64, worker: UInt32, samples: Int, correct: Int,
                                      lossHigh: Int64, lossLow: Int64, lossWindow: Int8 = 0, exact: Bool,
                                      overflowed: Bool, attempt: UInt64, regionSlot: Int? = nil,
                                      packed: Bool = false, floatShards: Int = 0, inParts: Bool = false,
                                      computing: Duration = .zero) throws -> Message {
        let fields = GradientFields(samples: samples, correct: correct, lossHigh: lossHigh, lossLow: lossLow,
                                    lossWindow: lossWindow, exact: exact, overflowed: overflowed, attempt: attempt,
                                    regionSlot: regionSlot, packed: packed, floatShards: floatShards, inParts: inParts,
                                    computeMicroseconds: UInt64(max(0, computing / .microseconds(1))))
        return try Message(copying: header(fields, job: job, step: step, worker: worker).encoded())
    }

    package static func ready(job: UInt64, worker: UInt32, hasData: Bool, region: RegionOffer? = nil,
                             readsWeightsRegion: Bool = false, products: UInt64 = 0) throws -> [Message] {
        let fields = ReadyFields(hasData: hasData, region: region, readsWeightsRegion: readsWeightsRegion,
                                 products: products)
        return [try Message(copying: header(fields, job: job, worker: worker, frames: 0).encoded())]
    }

    /// The data header; send it followed by a frame of features then targets (Float32).
    package static func dataHeader(job: UInt64, samples: Int, featureWidth: Int, targetWidth: Int) throws -> Message {
        try Message(copying: header(DataFields(samples: samples, featureWidth: featureWidth, targetWidth: targetWidth),
                                    job: job).encoded())
    }

    package static func heartbeat(job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        [try Message(copying: Header(type: .heartbeat, job: job, step: step, worker: worker).encoded())]
    }

    package static func error(_ text: String, job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        try frames(Header(type: .error, job: job, step: step, worker: worker, frames: 1), Array(text.utf8.prefix(4000)))
    }

    package static func shutdown(_ reason: String, job: UInt64, disposition: Disposition = .finished) throws -> [Message] {
        try frames(header(ShutdownFields(disposition: disposition), job: job), Array(reason.utf8.prefix(4000)))
    }

    /// The header of a message whose fields are `fields` (and, unless told otherwise, one payload frame).
    static func header(_ fields: some HeaderFields, job: UInt64 = 0, step: UInt64 = 0, worker: UInt32 = 0,
                       frames: UInt32 = 1) -> Header {
        Header(type: Swift.type(of: fields).type, job: job, step: step, worker: worker, frames: frames, fields: fields.words)
    }

    private static func frames(_ header: Header, _ payload: [UInt8]) throws -> [Message] {
        [try Message(copying: header.encoded()), try Message(copying: payload)]
    }

    // MARK: Decoding

    /// The message type its header frame names, without checking the rest (nil if the header itself is bad).
    package static func type(of frames: [Message]) -> MessageType? {
        guard let first = frames.first else { return nil }
        return first.withUnsafeBytes { try? Header.decode($0) }?.type
    }

    /// Checks and decodes `frames` (header first, no identity frame).
    package static func decode(_ frames: [Message], limits: Limits) throws(WireError) -> Envelope {
        guard let first = frames.first else { throw .noFrames }
        guard frames.count <= maximumFrames else { throw .tooManyFrames(frames.count) }
        let header = try read(first) { bytes throws(WireError) in try Header.decode(bytes) }
        let payloadFrames = frames.count - 1, expected = header.type.payloadFrames
        guard Int(header.frames) == payloadFrames, payloadFrames == expected else {
            throw .frameCount(type: header.type, declared: header.frames, actual: payloadFrames, expected: expected)
        }
        if header.type != .hello, let job = limits.job, header.job != job { throw .wrongJob(got: header.job, expected: job) }
        let payload = frames.count > 1 ? frames[1] : nil
        return Envelope(header: header, payload: try decodePayload(header, payload, limits))
    }

    /// The payload of a message whose header and frame count are checked: its fields checked by its `HeaderFields`,
    /// then its frame against them and `limits`.
    private static func decodePayload(_ header: Header, _ frame: Message?, _ limits: Limits) throws(WireError) -> Payload {
        let f = header.fields
        switch header.type {
        case .heartbeat: return .heartbeat
        case .hello: return try hello(HelloFields(checking: f), frame!, limits)
        case .job: return try job(JobFields(checking: f), frame!, limits)
        case .weights: return try weights(WeightsFields(checking: f), step: header.step, frame!, limits)
        case .assignment: return try assignment(AssignmentFields(checking: f), frame!, limits)
        case .weightsPart: return try weightsPart(WeightsPartFields(checking: f), frame!, limits)
        case .gradientPart: return try gradientPart(GradientPartFields(checking: f), frame!, limits)
        case .gradient: return try gradient(GradientFields(checking: f), frame!, limits)
        case .ready:
            let ready = try ReadyFields(checking: f)
            return .ready(hasData: ready.hasData, region: ready.region, readsWeightsRegion: ready.readsWeightsRegion,
                          products: ready.products)
        case .data: return try data(DataFields(checking: f), frame!, limits)
        case .error: return .error(printable(try text(frame!, .error, limit: limits.maximumTextBytes)))
        case .peers: return try peers(PeersFields(checking: f), frame!, limits)
        case .sumOrder: return try sumOrder(SumOrderFields(checking: f), frame!, limits)
        case .meanPart: return try meanPart(MeanPartFields(checking: f), frame!, limits)
        case .refuted:
            let fields = try RefutedFields(checking: f)
            return .refuted(worker: fields.worker, attempt: fields.attempt, part: Int(fields.part),
                            reason: printable(try text(frame!, .refuted, limit: limits.maximumTextBytes)))
        case .spans: return try spans(SpansFields(checking: f), frame!)
        case .spotCheck: return try spotCheck(SpotCheckFields(checking: f), frame!, limits)
        case .spotValues: return try spotValues(SpotValuesFields(checking: f), frame!, limits)
        case .shutdown:
            let fields = try ShutdownFields(checking: f)
            return .shutdown(printable(try text(frame!, .shutdown, limit: limits.maximumTextBytes)), fields.disposition)
        }
    }

    /// Reads a frame in place with a closure that throws only `WireError`.
    static func read<R>(_ frame: Message, _ body: (UnsafeRawBufferPointer) throws(WireError) -> R)
        throws(WireError) -> R {
        try frame.withUnsafeBytes { bytes in Result { () throws(WireError) in try body(bytes) } }.get()
    }

    static func parameterCount(_ limits: Limits, _ type: MessageType) throws(WireError) -> Int {
        guard let count = limits.parameterCount else { throw .unexpected(type, "no job has been agreed yet") }
        return count
    }

    /// The agreed job's parts, for a message of `type` that names one.
    static func parts(_ limits: Limits, _ type: MessageType) throws(WireError) -> PartSplit {
        PartSplit(parameterCount: try parameterCount(limits, type), size: limits.partSize)
    }

    /// A peer's text as it may be printed: control characters (a newline that would forge a log line, escape codes
    /// that would clear the screen) shown as `\u{1B}`, the rest as sent.
    package static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func text(_ frame: Message, _ type: MessageType, limit: Int) throws(WireError) -> String {
        guard frame.count <= limit else { throw .payloadSize(type: type, bytes: frame.count, expected: "at most \(limit)") }
        guard let text = String(validating: frame.bytes, as: UTF8.self) else { throw .badText(type, "not UTF-8") }
        return text
    }
}
