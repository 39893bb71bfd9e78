import CExactSum

/// How a job's parameters are cut into parts: results, weights and means go part by part (`--overlap`, the sharded
/// layout), and the sharded layout's owners each sum whole parts. One size for the whole job, chosen by the
/// coordinator and announced with the job; any size gives the same bits (every parameter's sum is its own).
package struct PartSplit: RandomAccessCollection, Equatable, Sendable {
    /// The largest part: 256 KiB of Floats, small enough that the last part's round trip is short, large enough that
    /// a part's message costs little (a spot check's offsets are 16-bit).
    package static let largestSize = 65536
    /// Parts are whole cache lines of Floats, so each starts aligned where the whole buffer is.
    package static let granule = 16
    /// The smallest part an even split makes: 16 KiB of Floats take about as long on a 1 Gbit/s link as a message's
    /// own cost, so smaller parts would cost more than the balance gains (a small model stays one part).
    package static let smallestEvenSize = 4096

    package let parameterCount: Int
    /// Parameters in each part but the last (which holds what is left).
    package let size: Int

    /// Parts of `size` parameters (a multiple of `granule`, `smallestEvenSize` to `largestSize`).
    package init(parameterCount: Int, size: Int = largestSize) {
        precondition(parameterCount >= 0 && Self.isSize(size), "a part of \(size) parameters")
        (self.parameterCount, self.size) = (parameterCount, size)
    }

    /// The fewest parts, no larger than `largestSize` nor smaller than `smallestEvenSize`, that divide evenly over
    /// `owners`: whole parts go to owners, so with 29 parts over 9 owners two would carry 4 and the busiest link a
    /// third more than its share; 36 parts of 51,776 give each 4. (The rounding to `granule` can leave the last owner
    /// a little less.)
    package init(parameterCount: Int, evenlyOver owners: Int) {
        let owners = Swift.max(1, owners)
        let perOwner = (parameterCount + owners - 1) / owners
        let partsPerOwner = Swift.max(1, (perOwner + Self.largestSize - 1) / Self.largestSize)
        let parts = owners * partsPerOwner
        let size = ((parameterCount + parts - 1) / parts + Self.granule - 1) / Self.granule * Self.granule
        self.init(parameterCount: parameterCount, size: Swift.min(Self.largestSize, Swift.max(Self.smallestEvenSize, size)))
    }

    /// Whether `size` can be a job's part size: one an even split makes (which keeps a job's parts within what the
    /// messages naming a part can count).
    package static func isSize(_ size: Int) -> Bool {
        size >= smallestEvenSize && size <= largestSize && size % granule == 0
    }

    package var startIndex: Int { 0 }
    package var endIndex: Int { (parameterCount + size - 1) / size }
    package subscript(part: Int) -> Range<Int> { part * size ..< Swift.min(part * size + size, parameterCount) }

    /// The part that starts at parameter `first`.
    package func part(startingAt first: Int) -> Int { first / size }

    /// Room for every part's Floats packed (`cexact_pack_floats`), part `part` at `packedOffset(of:)`: a whole part's
    /// bound each.
    package var packedRoom: Int { count * cexact_pack_floats_bound(size) }
    package func packedOffset(of part: Int) -> Int { part * cexact_pack_floats_bound(size) }
}

/// What a result part's values frame holds.
package enum PartForm: Equatable, Sendable {
    /// Floats as they are.
    case floats
    /// Floats packed (`cexact_pack_floats`): the same bits in about 12 % fewer bytes, where bytes are dear.
    case packedFloats
    /// An exact sum's limbs as `cexact_pack_range` packs them; `diverged`: the sum saw a NaN or ∞.
    case packedLimbs(diverged: Bool)
}

/// Results and weights in parts: their messages' headers, and the checks every part meets before use.
extension Codec {
    /// Arrays one result may send in parts: a batch's micro-shards at most.
    package static let maximumPartArrays = 4096

    /// A part of step `step`'s weights: send it followed by a frame of its Floats.
    package static func weightsPartHeader(job: UInt64, step: UInt64, part: Range<Int>) throws -> Message {
        try Message(copying: header(WeightsPartFields(part: part), job: job, step: step).encoded())
    }

    /// A part of array `array` of `arrays` of a result: send it followed by a frame of its values in `form` (packed
    /// limbs only as the only array).
    package static func gradientPartHeader(job: UInt64, step: UInt64, worker: UInt32, attempt: UInt64, array: Int,
                                          arrays: Int, part: Range<Int>, form: PartForm = .floats) throws -> Message {
        let word: GradientPartFields.Form = switch form {
        case .floats: .floats
        case .packedFloats: .packedFloats
        case .packedLimbs(let diverged): diverged ? .packedLimbsDiverged : .packedLimbs
        }
        let fields = GradientPartFields(attempt: attempt, array: array, arrays: arrays, part: part, form: word)
        return try Message(copying: header(fields, job: job, step: step, worker: worker).encoded())
    }

    /// The part a `weightsPart` or `gradientPart` names, checked: it starts on a part's boundary and is that part's
    /// length.
    static func part(first: UInt64, count: UInt64, _ limits: Limits, _ type: MessageType)
        throws(WireError) -> Range<Int> {
        let parameters = try parameterCount(limits, type)
        let size = UInt64(limits.partSize)
        guard first < UInt64(parameters), first % size == 0, count == min(size, UInt64(parameters) - first) else {
            throw .badField(type, "part of \(count) parameters from \(first) is not one of the \(parameters) parameters' "
                + "parts of \(size)")
        }
        return Int(first) ..< Int(first + count)
    }

    /// A part's frame holds exactly its Floats.
    static func floatsFill(_ frame: Message, _ part: Range<Int>, _ type: MessageType) throws(WireError) {
        guard frame.count == 4 * part.count else {
            throw .payloadSize(type: type, bytes: frame.count, expected: "\(4 * part.count) (\(part.count) Float32)")
        }
    }

    /// A part's values from its frame: its Floats in place, or (`packed`) unpacked into a frame of their own, which
    /// they must fill exactly.
    static func partFloats(_ frame: Message, _ part: Range<Int>, packed: Bool, _ type: MessageType)
        throws(WireError) -> FloatFrame {
        guard packed else {
            try floatsFill(frame, part, type)
            return FloatFrame(message: frame, count: part.count)
        }
        let n = part.count, bound = cexact_pack_floats_bound(n)
        guard frame.count >= 1, frame.count <= bound else {
            throw .payloadSize(type: type, bytes: frame.count, expected: "1…\(bound) (\(n) Float32, packed)")
        }
        let unpacked = frame.withUnsafeBytes { packed in
            Message.filled(byteCount: 4 * n) { floats in
                cexact_unpack_floats(packed.baseAddress!.assumingMemoryBound(to: UInt8.self), packed.count, n,
                                     floats.baseAddress!.assumingMemoryBound(to: Float.self)) == 1
            }
        }
        guard let unpacked else {
            throw .badField(type, "packed values of \(frame.count) bytes are not the \(n) Floats of the part from "
                + "parameter \(part.lowerBound)")
        }
        return FloatFrame(message: unpacked, count: n)
    }
}
