import CDelta
import CExactSum

/// What a receiver accepts: sizes come from the job, so no length field can make it allocate or read more.
public struct Limits: Sendable, Equatable {
    /// Floats in the weights and gradients (nil before a job is known: such messages are then refused).
    public var parameterCount: Int?
    /// The job's id (nil before one is known).
    public var job: UInt64?
    /// Micro-shard ranges one assignment may carry.
    public var maximumRanges = 4096
    /// Bytes of a hello, error or shutdown text.
    public var maximumTextBytes = 4096
    /// Bytes of a job description.
    public var maximumJobBytes = 1 << 20
    /// Bytes of a data message (0: none expected).
    public var maximumDataBytes = 0

    public init(parameterCount: Int? = nil, job: UInt64? = nil) {
        self.parameterCount = parameterCount
        self.job = job
    }

    /// The largest legal frame, for ZMQ_MAXMSGSIZE: the exact gradient, or the job description, plus a margin.
    public var maximumFrameBytes: Int {
        max(GradientFrame.exactBytesPerParameter * (parameterCount ?? 0), maximumJobBytes, maximumTextBytes, maximumDataBytes) + 4096
    }
}

/// Builds and checks protocol messages. Decoding never traps, never reads past a frame and never allocates by a
/// length it was told: every size is compared with the frame's real size and with `Limits` first.
public enum Codec {
    /// Frames in any legal message, the ROUTER's identity frame included.
    public static let maximumFrames = 3
    // MARK: Encoding

    public static func hello(fields: [String: String], cores: Int, pid: Int32, resuming worker: UInt32 = 0)
        throws -> [Message] {
        let text = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        return try frames(Header(type: .hello, frames: 1, fields: [UInt64(cores), UInt64(UInt32(bitPattern: pid)),
                                                                   UInt64(worker)]), Array(text.utf8))
    }

    public static func job(_ description: [UInt8], job: UInt64, worker: UInt32, parameterCount: Int,
                           maximumMicroShards: Int, exact: Bool, heartbeat: Duration,
                           weightsRegion: RegionOffer? = nil) throws -> [Message] {
        let milliseconds = UInt64(max(1, (heartbeat / .milliseconds(1)).rounded()))
        return try frames(Header(type: .job, job: job, worker: worker, frames: 1,
                                 fields: [UInt64(parameterCount), UInt64(maximumMicroShards), exact ? 0 : 1,
                                          milliseconds, weightsRegion?.packed ?? 0, weightsRegion?.token ?? 0]),
                          description)
    }

    /// The weights header; send it followed by a frame over the shared weights (`Message(sharing:)`), by an
    /// empty frame when they are in the coordinator's weights region (`inRegion`), or by their change from step
    /// `changeFrom`'s weights (`cdelta_encode`).
    public static func weightsHeader(job: UInt64, step: UInt64, parameterCount: Int, inRegion: Bool = false,
                                     changeFrom base: UInt64? = nil, fromParts: Bool = false) throws -> Message {
        let form: UInt64 = fromParts ? 3 : inRegion ? 1 : base == nil ? 0 : 2
        return try Message(copying: Header(type: .weights, job: job, step: step, frames: 1,
                                           fields: [UInt64(parameterCount), form, base ?? 0]).encoded())
    }

    public static func assignment(job: UInt64, step: UInt64, worker: UInt32, epoch: UInt64, batch: UInt64,
                                  attempt: UInt64 = 0, ranges: [Range<Int>], resultSlot: Int? = nil,
                                  inParts: Bool = false) throws -> [Message] {
        var bytes: [UInt8] = []
        for range in ranges {
            withUnsafeBytes(of: UInt32(range.lowerBound).littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt32(range.upperBound).littleEndian) { bytes += $0 }
        }
        return try frames(Header(type: .assignment, job: job, step: step, worker: worker, frames: 1,
                                 fields: [epoch, batch, attempt, resultSlot.map { UInt64($0) + 1 } ?? 0,
                                          inParts ? 1 : 0]), bytes)
    }

    /// The gradient header; send it followed by the values frame.
    /// `regionSlot`: the values are in that slot of the worker's result region (send an empty frame after);
    /// `packed`: the frame holds them as `cexact_pack` writes them; `floatShards` (1 to 4): the values are that
    /// many micro-shards' Float gradient sums rather than limbs.
    public static func gradientHeader(job: UInt64, step: UInt64, worker: UInt32, samples: Int, correct: Int,
                                      lossHigh: Int64, lossLow: Int64, lossWindow: Int8 = 0, exact: Bool,
                                      overflowed: Bool, attempt: UInt64, regionSlot: Int? = nil,
                                      packed: Bool = false, floatShards: Int = 0, inParts: Bool = false) throws -> Message {
        precondition((0...7).contains(floatShards), "\(floatShards) Float micro-shards do not fit the flags' three bits")
        return try Message(copying: Header(type: .gradient, job: job, step: step, worker: worker, frames: 1,
                                    fields: [UInt64(samples), UInt64(correct), UInt64(bitPattern: lossHigh),
                                             UInt64(bitPattern: lossLow),
                                             (exact ? 0 : 1) | (overflowed ? 2 : 0)
                                                 | (regionSlot.map { 4 | UInt64($0) << 3 } ?? 0) | (packed ? 16 : 0)
                                                 | UInt64(floatShards) << 5
                                                 | UInt64(UInt8(bitPattern: lossWindow)) << 8
                                                 | (inParts ? 1 << 16 : 0),
                                             attempt]).encoded())
    }

    public static func ready(job: UInt64, worker: UInt32, hasData: Bool, region: RegionOffer? = nil,
                             readsWeightsRegion: Bool = false, products: UInt64 = 0) throws -> [Message] {
        [try Message(copying: Header(type: .ready, job: job, worker: worker,
                                     fields: [hasData ? 1 : 0, region.map { UInt64($0.pid) } ?? 0,
                                              region.map { UInt64($0.descriptor) } ?? 0, region?.token ?? 0,
                                              readsWeightsRegion ? 1 : 0, products]).encoded())]
    }

    /// The data header; send it followed by a frame of features then targets (Float32).
    public static func dataHeader(job: UInt64, samples: Int, featureWidth: Int, targetWidth: Int) throws -> Message {
        try Message(copying: Header(type: .data, job: job, frames: 1,
                                    fields: [UInt64(samples), UInt64(featureWidth), UInt64(targetWidth)]).encoded())
    }

    public static func heartbeat(job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        [try Message(copying: Header(type: .heartbeat, job: job, step: step, worker: worker).encoded())]
    }

    public static func error(_ text: String, job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        try frames(Header(type: .error, job: job, step: step, worker: worker, frames: 1), Array(text.utf8.prefix(4000)))
    }

    public static func shutdown(_ reason: String, job: UInt64, disposition: Disposition = .finished) throws -> [Message] {
        try frames(Header(type: .shutdown, job: job, frames: 1, fields: [disposition.rawValue]),
                   Array(reason.utf8.prefix(4000)))
    }

    private static func frames(_ header: Header, _ payload: [UInt8]) throws -> [Message] {
        [try Message(copying: header.encoded()), try Message(copying: payload)]
    }

    // MARK: Decoding

    /// Checks and decodes `frames` (header first, no identity frame).
    /// The message type its header frame names, without checking the rest (nil if the header itself is bad).
    public static func type(of frames: [Message]) -> MessageType? {
        guard let first = frames.first else { return nil }
        return first.withUnsafeBytes { try? Header.decode($0) }?.type
    }

    public static func decode(_ frames: [Message], limits: Limits) throws(WireError) -> Envelope {
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

    private static func decodePayload(_ header: Header, _ frame: Message?, _ limits: Limits) throws(WireError) -> Payload {
        let f = header.fields
        switch header.type {
        case .heartbeat:
            return .heartbeat
        case .hello:
            let text = try self.text(frame!, header.type, limit: limits.maximumTextBytes)
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { throw .badText(.hello, "line without '=': \(line.prefix(40))") }
                fields[printable(String(line[..<equals]))] = printable(String(line[line.index(after: equals)...]))
            }
            guard f[0] >= 1, f[0] <= 4096 else { throw .badField(.hello, "cores \(f[0]) is not 1…4096") }
            fields["cores"] = String(f[0])
            fields["pid"] = String(f[1])
            fields["resuming"] = String(f[2])
            return .hello(fields: fields)
        case .job:
            let bytes = frame!.count
            guard bytes <= limits.maximumJobBytes else {
                throw .payloadSize(type: .job, bytes: bytes, expected: "at most \(limits.maximumJobBytes)")
            }
            guard f[0] >= 1, f[0] <= 1 << 31, f[1] >= 1, f[1] <= 1 << 20, f[2] <= 1, f[3] >= 1, f[3] <= 3_600_000 else {
                throw .badField(.job, "parameter count \(f[0]), micro-shards \(f[1]), reduction \(f[2]), heartbeat "
                    + "\(f[3]) ms out of range")
            }
            guard f[4] == 0 || RegionOffer(packed: f[4], token: f[5]) != nil else {
                throw .badField(.job, "weights region \(f[4] >> 32)/\(f[4] & 0xFFFF_FFFF) out of range")
            }
            return .job(description: frame!.bytes, parameterCount: Int(f[0]), maximumMicroShards: Int(f[1]),
                        exact: f[2] == 0, heartbeat: .milliseconds(Int(f[3])),
                        weightsRegion: RegionOffer(packed: f[4], token: f[5]))
        case .weights:
            let count = try parameterCount(limits, .weights)
            guard f[1] <= 3 else {
                throw .badField(.weights, "form \(f[1]) is not 0 (Floats), 1 (region), 2 (change) or 3 (parts)")
            }
            if f[1] == 3 {
                guard f[0] == UInt64(count), frame!.count == 0 else {
                    throw .payloadSize(type: .weights, bytes: frame!.count, expected: "0 (the weights came in parts)")
                }
                return .weightsFromParts
            }
            if f[1] == 2 {
                // At least a control byte (a model has a parameter); the change itself is checked as it is applied.
                guard f[0] == UInt64(count), frame!.count >= 1, frame!.count <= cdelta_bound(count) else {
                    throw .payloadSize(type: .weights, bytes: frame!.count,
                                       expected: "1…\(cdelta_bound(count)) (a change of \(count) Float32)")
                }
                guard f[2] < header.step else {
                    throw .badField(.weights, "step \(header.step)'s weights as a change from step \(f[2])'s")
                }
                return .weightsChange(base: f[2], frame!)
            }
            if f[1] == 1 {
                guard f[0] == UInt64(count), frame!.count == 0 else {
                    throw .payloadSize(type: .weights, bytes: frame!.count, expected: "0 (the weights are in the "
                        + "coordinator's weights region)")
                }
                return .weightsInRegion
            }
            guard f[0] == UInt64(count), frame!.count == 4 * count else {
                throw .payloadSize(type: .weights, bytes: frame!.count, expected: "\(4 * count) (\(count) Float32)")
            }
            return .weights(FloatFrame(message: frame!, count: count))
        case .assignment:
            let bytes = frame!.count
            guard bytes % 8 == 0, bytes > 0, bytes / 8 <= limits.maximumRanges else {
                throw .payloadSize(type: .assignment, bytes: bytes,
                                   expected: "a multiple of 8, 1…\(limits.maximumRanges) ranges")
            }
            var ranges: [Range<Int>] = []
            try read(frame!) { raw throws(WireError) in
                var previousEnd = 0
                for i in 0..<(bytes / 8) {
                    let start = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt32.self)))
                    let end = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i + 4, as: UInt32.self)))
                    guard start < end, start >= previousEnd, end <= limits.maximumRanges * 1024 else {
                        throw .badRanges("range \(i) is [\(start), \(end)) after \(previousEnd); ranges must be "
                            + "non-empty, ascending and disjoint")
                    }
                    ranges.append(start ..< end)
                    previousEnd = end
                }
            }
            guard f[3] <= UInt64(SharedRegion.resultSlots), f[4] <= 1, f[3] == 0 || f[4] == 0 else {
                throw .badField(.assignment, "result slot \(f[3]) beyond the region's \(SharedRegion.resultSlots), "
                    + "or parts flag \(f[4]) not 0 or 1, or both")
            }
            return .assignment(epoch: f[0], batch: f[1], attempt: f[2], ranges: ranges,
                               resultSlot: f[3] == 0 ? nil : Int(f[3]) - 1, inParts: f[4] == 1)
        case .weightsPart:
            let part = try self.part(first: f[0], count: f[1], limits, .weightsPart)
            try floatsFill(frame!, part, .weightsPart)
            return .weightsPart(first: part.lowerBound, FloatFrame(message: frame!, count: part.count))
        case .gradientPart:
            guard f[2] >= 1, f[2] <= UInt64(maximumPartArrays), f[1] < f[2], f[5] <= 2, f[5] == 0 || f[2] == 1 else {
                throw .badField(.gradientPart, "array \(f[1]) of \(f[2]) (at most \(maximumPartArrays)), form \(f[5]) "
                    + "(0 Floats, 1 packed limbs, 2 those of a diverged sum; limbs the only array)")
            }
            let part = try self.part(first: f[3], count: f[4], limits, .gradientPart)
            let values: PartValues
            if f[5] >= 1 {
                // Not empty and within the bound; whether they are one sum is checked as they are unpacked.
                guard frame!.count >= 1, frame!.count <= cexact_pack_bound(part.count) else {
                    throw .payloadSize(type: .gradientPart, bytes: frame!.count,
                                       expected: "1…\(cexact_pack_bound(part.count)) (\(part.count) parameters' limbs, packed)")
                }
                values = .packedLimbs(frame!, diverged: f[5] == 2)
            } else {
                try floatsFill(frame!, part, .gradientPart)
                values = .floats(FloatFrame(message: frame!, count: part.count))
            }
            return .gradientPart(attempt: f[0], array: Int(f[1]), arrays: Int(f[2]), first: part.lowerBound, values)
        case .gradient:
            let count = try parameterCount(limits, .gradient)
            guard f[4] & ~0x1_FFFF == 0 else {
                throw .badField(.gradient, "flags \(f[4]) beyond bits 0 (fast), 1 (overflowed), 2-3 (in the result "
                    + "region, its slot), 4 (packed), 5-7 (micro-shard Floats), 8-15 (loss window) and 16 (in parts)")
            }
            let regionSlot = f[4] & 4 != 0 ? Int(f[4] >> 3 & 1) : nil
            let exact = f[4] & 1 == 0, packed = f[4] & 16 != 0, floatShards = Int(f[4] >> 5 & 7)
            let inParts = f[4] & 0x1_0000 != 0
            if inParts {
                guard regionSlot == nil, !packed, floatShards == 0, frame!.count == 0 else {
                    throw .badField(.gradient, "values in parts and also in the frame, packed, as Floats or in the region")
                }
            }
            if packed {
                guard exact, regionSlot == nil, floatShards == 0 else {
                    throw .badField(.gradient, "packed values of a fast sum, in the result region or as Floats")
                }
            }
            guard floatShards <= GradientFrame.maximumFloatShards, floatShards == 0 || exact else {
                let limit = exact ? "(at most \(GradientFrame.maximumFloatShards))" : "in a fast sum"
                throw .badField(.gradient, "\(floatShards) micro-shards' Floats \(limit)")
            }
            guard f[0] >= 1, f[0] <= 1 << 40, f[1] <= f[0] else {
                throw .badField(.gradient, "samples \(f[0]) and correct \(f[1]) are inconsistent")
            }
            var copy: UnpackedSum?
            if packed {
                // A model has at least one parameter, so an empty frame is never a packed sum.
                let sum = UnpackedSum(count: count)
                let fits = frame!.withUnsafeBytes { raw in
                    raw.count > 0 && raw.count <= cexact_pack_bound(count)
                        && cexact_unpack(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count, count,
                                         sum.bytes.baseAddress!) == 1
                }
                guard fits else {
                    throw .badField(.gradient, "packed values of \(frame!.count) bytes are not a sum of \(count) parameters")
                }
                copy = sum
            } else {
                let width = floatShards > 0 ? 4 * floatShards : exact ? GradientFrame.exactBytesPerParameter : 4
                let form = floatShards > 0 ? "\(floatShards) micro-shards' Floats" : exact ? "exact" : "fast"
                guard frame!.count == (regionSlot == nil && !inParts ? width * count : 0) else {
                    throw .payloadSize(type: .gradient, bytes: frame!.count, expected: regionSlot == nil
                        ? "\(width * count) (\(count) parameters, \(form))"
                        : "0 (the values are in the worker's result region)")
                }
                // Floats are read as Floats where they lie: a frame off a Float's alignment is copied (rare).
                if floatShards > 0, regionSlot == nil, frame!.withUnsafeBytes({ Int(bitPattern: $0.baseAddress) % 4 != 0 }) {
                    let aligned = UnpackedSum(count: count)
                    frame!.withUnsafeBytes { aligned.bytes.copyMemory(from: $0) }
                    copy = aligned
                }
            }
            // A fast loss sum that is not finite comes with the overflowed flag (the run diverged); values that are
            // not finite are the update's to find, which stops the run as diverged, as an exact sum's Floats do.
            if !exact && f[4] & 2 == 0 {
                let lossBits = f[2]
                guard Double(bitPattern: lossBits).isFinite else {
                    throw .badField(.gradient, "loss sum \(Double(bitPattern: lossBits)) is not finite and the "
                        + "overflowed flag is not set")
                }
            }
            return .gradient(GradientFrame(samples: Int(f[0]), correct: Int(f[1]), lossHigh: Int64(bitPattern: f[2]),
                                           lossLow: Int64(bitPattern: f[3]),
                                           lossWindow: Int8(truncatingIfNeeded: f[4] >> 8), exact: exact,
                                           overflowed: f[4] & 2 != 0,
                                           attempt: f[5], message: frame!, regionSlot: regionSlot, packed: packed,
                                           floatShards: floatShards, inParts: inParts, copy: copy))
        case .ready:
            guard f[0] <= 1 else { throw .badField(.ready, "has-data flag \(f[0]) is not 0 or 1") }
            guard f[1] <= UInt64(Int32.max), f[2] <= UInt64(Int32.max), f[4] <= 1 else {
                throw .badField(.ready, "result region pid \(f[1]) or descriptor \(f[2]), or weights flag \(f[4]), "
                    + "out of range")
            }
            let region = f[1] == 0 ? nil : RegionOffer(pid: Int32(f[1]), descriptor: Int32(f[2]), token: f[3])
            return .ready(hasData: f[0] == 1, region: region, readsWeightsRegion: f[4] == 1, products: f[5])
        case .data:
            guard f[0] >= 1, f[1] >= 1, f[2] >= 1, f[0] < 1 << 40, f[1] < 1 << 24, f[2] < 1 << 24 else {
                throw .badField(.data, "samples \(f[0]), widths \(f[1]) and \(f[2]) out of range")
            }
            let (perSample, overflow1) = Int(f[1] + f[2]).multipliedReportingOverflow(by: 4)
            let (expected, overflow2) = Int(f[0]).multipliedReportingOverflow(by: perSample)
            guard !overflow1, !overflow2, expected <= limits.maximumDataBytes, frame!.count == expected else {
                throw .payloadSize(type: .data, bytes: frame!.count,
                                   expected: "\(expected) for the announced shape, at most \(limits.maximumDataBytes)")
            }
            return .data(samples: Int(f[0]), featureWidth: Int(f[1]), targetWidth: Int(f[2]),
                         FloatFrame(message: frame!, count: expected / 4))
        case .error:
            return .error(printable(try text(frame!, .error, limit: limits.maximumTextBytes)))
        case .shutdown:
            guard let disposition = Disposition(rawValue: f[0]) else {
                throw .badField(.shutdown, "disposition \(f[0]) is not 0, 1 or 2")
            }
            return .shutdown(printable(try text(frame!, .shutdown, limit: limits.maximumTextBytes)), disposition)
        }
    }

    /// Reads a frame in place with a closure that throws only `WireError`.
    private static func read<R>(_ frame: Message, _ body: (UnsafeRawBufferPointer) throws(WireError) -> R)
        throws(WireError) -> R {
        try frame.withUnsafeBytes { bytes in Result { () throws(WireError) in try body(bytes) } }.get()
    }

    static func parameterCount(_ limits: Limits, _ type: MessageType) throws(WireError) -> Int {
        guard let count = limits.parameterCount else { throw .unexpected(type, "no job has been agreed yet") }
        return count
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

    private static func text(_ frame: Message, _ type: MessageType, limit: Int) throws(WireError) -> String {
        guard frame.count <= limit else { throw .payloadSize(type: type, bytes: frame.count, expected: "at most \(limit)") }
        guard let text = String(validating: frame.bytes, as: UTF8.self) else { throw .badText(type, "not UTF-8") }
        return text
    }
}
