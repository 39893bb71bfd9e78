import CExactSum

/// Each message type's frame, checked against its header's fields (already checked by its `HeaderFields`) and the
/// receiver's `Limits` before anything of it is used.
extension Codec {
    static func hello(_ f: HelloFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let text = try self.text(frame, .hello, limit: limits.maximumTextBytes)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { throw .badText(.hello, "line without '=': \(line.prefix(40))") }
            fields[printable(String(line[..<equals]))] = printable(String(line[line.index(after: equals)...]))
        }
        fields["cores"] = String(f.cores)
        fields["pid"] = String(f.pid)
        fields["resuming"] = String(f.previousWorker)
        return .hello(fields: fields)
    }

    static func job(_ f: JobFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        guard frame.count <= limits.maximumJobBytes else {
            throw .payloadSize(type: .job, bytes: frame.count, expected: "at most \(limits.maximumJobBytes)")
        }
        return .job(description: frame.bytes, parameterCount: f.parameterCount, maximumMicroShards: f.maximumMicroShards,
                    exact: f.exact, heartbeat: .milliseconds(Int(f.heartbeatMilliseconds)), weightsRegion: f.weightsRegion)
    }

    static func weights(_ f: WeightsFields, step: UInt64, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let count = try parameterCount(limits, .weights)
        let bytes = frame.count
        switch f.form {
        case .fromParts:
            guard f.parameterCount == UInt64(count), bytes == 0 else {
                throw .payloadSize(type: .weights, bytes: bytes, expected: "0 (the weights came in parts)")
            }
            return .weightsFromParts
        case .inRegion:
            guard f.parameterCount == UInt64(count), bytes == 0 else {
                throw .payloadSize(type: .weights, bytes: bytes, expected: "0 (the weights are in the coordinator's "
                    + "weights region)")
            }
            return .weightsInRegion
        case .floats:
            guard f.parameterCount == UInt64(count), bytes == 4 * count else {
                throw .payloadSize(type: .weights, bytes: bytes, expected: "\(4 * count) (\(count) Float32)")
            }
            return .weights(FloatFrame(message: frame, count: count))
        case .fromMeans:
            guard f.parameterCount == UInt64(count), bytes == 0 else {
                throw .payloadSize(type: .weights, bytes: bytes, expected: "0 (the weights follow from the means)")
            }
            return .weightsFromMeans(replicaKey: f.replicaKey)
        case .withState:
            let floats = (1 + Int(f.stateBuffers)) * count
            guard f.parameterCount == UInt64(count), bytes == 4 * floats else {
                throw .payloadSize(type: .weights, bytes: bytes, expected: "\(4 * floats) (the weights and "
                    + "\(f.stateBuffers) state buffers of \(count) Float32)")
            }
            return .weightsWithState(FloatFrame(message: frame, count: floats), stateBuffers: Int(f.stateBuffers),
                                     optimizerSteps: Int(f.optimizerSteps), replicaKey: f.replicaKey)
        }
    }

    static func assignment(_ f: AssignmentFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let bytes = frame.count
        guard bytes % 8 == 0, bytes > 0, bytes / 8 <= limits.maximumRanges else {
            throw .payloadSize(type: .assignment, bytes: bytes, expected: "a multiple of 8, 1…\(limits.maximumRanges) ranges")
        }
        var ranges: [Range<Int>] = []
        try read(frame) { raw throws(WireError) in
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
        return .assignment(epoch: f.epoch, batch: f.batch, attempt: f.attempt, ranges: ranges, resultSlot: f.resultSlot,
                           inParts: f.inParts, packsFloats: f.packsFloats, traced: f.traced)
    }

    static func weightsPart(_ f: WeightsPartFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let part = try self.part(first: f.first, count: f.count, limits, .weightsPart)
        try floatsFill(frame, part, .weightsPart)
        return .weightsPart(first: part.lowerBound, FloatFrame(message: frame, count: part.count))
    }

    static func gradientPart(_ f: GradientPartFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let part = try self.part(first: f.first, count: f.count, limits, .gradientPart)
        let values: PartValues
        if f.form == .floats || f.form == .packedFloats {
            values = .floats(try partFloats(frame, part, packed: f.form == .packedFloats, .gradientPart))
        } else {
            // Not empty and within the bound; whether they are one sum is checked as they are unpacked.
            guard frame.count >= 1, frame.count <= cexact_pack_bound(part.count) else {
                throw .payloadSize(type: .gradientPart, bytes: frame.count,
                                   expected: "1…\(cexact_pack_bound(part.count)) (\(part.count) parameters' limbs, packed)")
            }
            values = .packedLimbs(frame, diverged: f.form == .packedLimbsDiverged)
        }
        return .gradientPart(attempt: f.attempt, array: Int(f.array), arrays: Int(f.arrays), first: part.lowerBound, values)
    }

    static func gradient(_ f: GradientFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let count = try parameterCount(limits, .gradient)
        let packed = f.flags.contains(.packed), inParts = f.flags.contains(.inParts)
        // In parts, the frame holds nothing, or (sharded layout) the digest of each part of the weights and of each
        // optimizer state buffer the result was computed from.
        let parts = limits.parts.count, arrays = 1 + Int(WeightsFields.maximumStateBuffers)
        guard !inParts || frame.count == 0 || (frame.count % (8 * parts) == 0 && frame.count <= 8 * parts * arrays) else {
            throw .payloadSize(type: .gradient, bytes: frame.count,
                               expected: "0, or 8 × \(parts) parts × 1…\(arrays) arrays (the values came in parts; a "
                                   + "digest of each part of the weights and each state buffer)")
        }
        var replicaDigests: [UInt64] = []
        if inParts && frame.count > 0 {
            replicaDigests = frame.withUnsafeBytes { raw in
                (0..<frame.count / 8).map { UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)) }
            }
        }
        var copy: UnpackedSum?
        if packed {
            // A model has at least one parameter, so an empty frame is never a packed sum.
            let sum = UnpackedSum(count: count)
            let fits = frame.withUnsafeBytes { raw in
                raw.count > 0 && raw.count <= cexact_pack_bound(count)
                    && cexact_unpack(raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count, count,
                                     sum.bytes.baseAddress!) == 1
            }
            guard fits else {
                throw .badField(.gradient, "packed values of \(frame.count) bytes are not a sum of \(count) parameters")
            }
            copy = sum
        } else {
            let width = f.floatShards > 0 ? 4 * f.floatShards : f.exact ? GradientFrame.exactBytesPerParameter : 4
            let form = f.floatShards > 0 ? "\(f.floatShards) micro-shards' Floats" : f.exact ? "exact" : "fast"
            guard inParts || frame.count == (f.regionSlot == nil ? width * count : 0) else {
                throw .payloadSize(type: .gradient, bytes: frame.count, expected: f.regionSlot == nil
                    ? "\(width * count) (\(count) parameters, \(form))"
                    : "0 (the values are in the worker's result region)")
            }
            // Floats are read as Floats where they lie: a frame off a Float's alignment is copied (rare).
            if f.floatShards > 0, f.regionSlot == nil, frame.withUnsafeBytes({ Int(bitPattern: $0.baseAddress) % 4 != 0 }) {
                let aligned = UnpackedSum(count: count)
                frame.withUnsafeBytes { aligned.bytes.copyMemory(from: $0) }
                copy = aligned
            }
        }
        return .gradient(GradientFrame(samples: Int(f.samples), correct: Int(f.correct), lossHigh: f.lossHigh,
                                       lossLow: f.lossLow, lossWindow: f.lossWindow, exact: f.exact,
                                       overflowed: f.flags.contains(.overflowed), attempt: f.attempt, message: frame,
                                       regionSlot: f.regionSlot, packed: packed, floatShards: f.floatShards,
                                       inParts: inParts, copy: copy, replicaDigests: replicaDigests,
                                       computing: .microseconds(Int64(f.computeMicroseconds))))
    }

    static func data(_ f: DataFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let (perSample, overflow1) = Int(f.featureWidth + f.targetWidth).multipliedReportingOverflow(by: 4)
        let (expected, overflow2) = Int(f.samples).multipliedReportingOverflow(by: perSample)
        guard !overflow1, !overflow2, expected <= limits.maximumDataBytes, frame.count == expected else {
            throw .payloadSize(type: .data, bytes: frame.count,
                               expected: "\(expected) for the announced shape, at most \(limits.maximumDataBytes)")
        }
        return .data(samples: Int(f.samples), featureWidth: Int(f.featureWidth), targetWidth: Int(f.targetWidth),
                     FloatFrame(message: frame, count: expected / 4))
    }
}
