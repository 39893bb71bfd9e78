import CExactSum

/// The coordinator's spot check of an owner's mean (docs/scale-out.md): it asks every contributor the order names for
/// its values at a few drawn parameters of the part (`spotCheck`), adds the answers (`spotValues`) as the owner must
/// have, and compares bits. Each checked before use.

/// A `spotCheck` as received: the values of attempt `attempt` at these parameters of part `part`, for the order of
/// revision `revision`.
package struct SpotCheck: Equatable, Sendable {
    package let attempt: UInt64
    package let revision: Int
    package let part: Int
    /// Offsets inside the part, ascending.
    package let offsets: [Int]

    package init(attempt: UInt64, revision: Int, part: Int, offsets: [Int]) {
        (self.attempt, self.revision, self.part, self.offsets) = (attempt, revision, part, offsets)
    }

    /// Parameters one check asks for at most.
    package static let maximumOffsets = 64
}

/// A contributor's answer to a `spotCheck`.
package struct SpotValues: Sendable {
    package enum Values: Sendable {
        /// Each array's Floats at the offsets, array after array (fast: the one sum; exact: each micro-shard's).
        case floats(arrays: Int, [Float])
        /// The exact sum's limbs at the offsets, in `cexact_merge`'s layout of that many parameters.
        case limbs([UInt8])
        /// The worker no longer holds that attempt's result.
        case notHeld
    }

    package let attempt: UInt64
    package let revision: Int
    package let part: Int
    package let count: Int
    package let values: Values

    package init(attempt: UInt64, revision: Int, part: Int, count: Int, values: Values) {
        (self.attempt, self.revision, self.part, self.count, self.values) = (attempt, revision, part, count, values)
    }
}

struct SpotCheckFields: HeaderFields {
    static let type = MessageType.spotCheck
    static let names = ["attempt", "revision", "part", "parameters"]
    var attempt: UInt64, revision: UInt64, part: UInt64, count: UInt64

    var words: [UInt64] { [attempt, revision, part, count] }

    init(attempt: UInt64, revision: Int, part: Int, count: Int) {
        (self.attempt, self.revision, self.part, self.count) = (attempt, UInt64(revision), UInt64(part), UInt64(count))
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[1] < 1 << 20, f[2] < 1 << 16, f[3] >= 1, f[3] <= UInt64(SpotCheck.maximumOffsets) else {
            throw .badField(.spotCheck, "revision \(f[1]), part \(f[2]) or \(f[3]) parameters "
                + "(1…\(SpotCheck.maximumOffsets)) out of range")
        }
        (attempt, revision, part, count) = (f[0], f[1], f[2], f[3])
    }
}

struct SpotValuesFields: HeaderFields {
    enum Form: UInt64 {
        case floats = 0, limbs = 1, notHeld = 2
    }

    static let type = MessageType.spotValues
    static let names = ["attempt", "revision", "part", "parameters", "form", "arrays"]
    var attempt: UInt64, revision: UInt64, part: UInt64, count: UInt64, form: Form, arrays: UInt64

    var words: [UInt64] { [attempt, revision, part, count, form.rawValue, arrays] }

    init(_ answer: SpotValues) {
        (attempt, revision, part, count) = (answer.attempt, UInt64(answer.revision), UInt64(answer.part), UInt64(answer.count))
        switch answer.values {
        case .floats(let arrays, _): (form, self.arrays) = (.floats, UInt64(arrays))
        case .limbs: (form, arrays) = (.limbs, 1)
        case .notHeld: (form, arrays) = (.notHeld, 0)
        }
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[1] < 1 << 20, f[2] < 1 << 16, f[3] >= 1, f[3] <= UInt64(SpotCheck.maximumOffsets),
              let form = Form(rawValue: f[4]),
              form == .floats ? f[5] >= 1 && f[5] <= UInt64(Codec.maximumPartArrays) : f[5] == (form == .limbs ? 1 : 0)
        else {
            throw .badField(.spotValues, "revision \(f[1]), part \(f[2]), \(f[3]) parameters (1…"
                + "\(SpotCheck.maximumOffsets)), form \(f[4]) (0 Floats, 1 limbs, 2 not held) or \(f[5]) arrays "
                + "(Floats 1…\(Codec.maximumPartArrays), limbs 1, not held 0) out of range")
        }
        (attempt, revision, part, count, self.form, arrays) = (f[0], f[1], f[2], f[3], form, f[5])
    }
}

extension Codec {
    package static func spotCheck(_ check: SpotCheck, job: UInt64, step: UInt64) throws -> [Message] {
        var bytes: [UInt8] = []
        for offset in check.offsets { withUnsafeBytes(of: UInt16(offset).littleEndian) { bytes += $0 } }
        let fields = SpotCheckFields(attempt: check.attempt, revision: check.revision, part: check.part,
                                     count: check.offsets.count)
        return [try Message(copying: header(fields, job: job, step: step).encoded()), try Message(copying: bytes)]
    }

    package static func spotValues(_ answer: SpotValues, job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        var bytes: [UInt8] = []
        switch answer.values {
        case .floats(_, let floats):
            for value in floats { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 } }
        case .limbs(let limbs): bytes = limbs
        case .notHeld: break
        }
        return [try Message(copying: header(SpotValuesFields(answer), job: job, step: step, worker: worker).encoded()),
                try Message(copying: bytes)]
    }

    /// Offsets, ascending, inside a part of the job's parameters.
    static func spotCheck(_ f: SpotCheckFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let parts = try self.parts(limits, .spotCheck)
        guard Int(f.part) < parts.count else {
            throw .badField(.spotCheck, "part \(f.part); the job has \(parts.count)")
        }
        guard frame.count == 2 * Int(f.count) else {
            throw .payloadSize(type: .spotCheck, bytes: frame.count, expected: "\(2 * f.count) (2 a parameter)")
        }
        let size = parts[Int(f.part)].count
        let offsets = frame.withUnsafeBytes { raw in
            (0..<Int(f.count)).map { Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        }
        guard zip(offsets, offsets.dropFirst()).allSatisfy({ $0 < $1 }), offsets.last! < size else {
            throw .badField(.spotCheck, "offsets not ascending or beyond part \(f.part)'s \(size) parameters")
        }
        return .spotCheck(SpotCheck(attempt: f.attempt, revision: Int(f.revision), part: Int(f.part), offsets: offsets))
    }

    /// Values sized as the fields say; limbs' windows those a sum of Floats can have.
    static func spotValues(_ f: SpotValuesFields, _ frame: Message, _ limits: Limits) throws(WireError) -> Payload {
        let parts = try self.parts(limits, .spotValues), count = Int(f.count)
        guard Int(f.part) < parts.count else {
            throw .badField(.spotValues, "part \(f.part); the job has \(parts.count)")
        }
        let expected = switch f.form {
        case .floats: 4 * count * Int(f.arrays)
        case .limbs: Int(CEXACT_BYTES_PER_PARAMETER) * count
        case .notHeld: 0
        }
        guard frame.count == expected else {
            throw .payloadSize(type: .spotValues, bytes: frame.count, expected: "\(expected)")
        }
        let values: SpotValues.Values
        switch f.form {
        case .floats:
            values = .floats(arrays: Int(f.arrays), frame.withUnsafeBytes { raw in
                (0..<count * Int(f.arrays)).map {
                    Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
                }
            })
        case .limbs:
            let bytes = frame.bytes
            let windows = bytes[cexact_windows_offset(count)...].map { Int8(bitPattern: $0) }
            guard windows.allSatisfy({ (Int8(CEXACT_LOWEST_WINDOW)...Int8(CEXACT_HIGHEST_FLOAT_WINDOW)).contains($0) }) else {
                throw .badField(.spotValues, "a limb window outside \(CEXACT_LOWEST_WINDOW)…\(CEXACT_HIGHEST_FLOAT_WINDOW)")
            }
            values = .limbs(bytes)
        case .notHeld:
            values = .notHeld
        }
        return .spotValues(SpotValues(attempt: f.attempt, revision: Int(f.revision), part: Int(f.part), count: count,
                                      values: values))
    }
}
