import CExactSum

/// Results and weights in parts (`--overlap`): a job's parts, their messages' headers, and the checks every part
/// meets before use.
extension Codec {
    /// Parameters in a part of the weights or of a result (the last part holds what is left): 256 KiB of Floats,
    /// small enough that the last part's round trip is short, large enough that a part's message costs little.
    package static let partParameters = 65536

    /// Arrays one result may send in parts: a batch's micro-shards at most.
    package static let maximumPartArrays = 4096

    /// The parts of `count` parameters.
    package static func parts(of count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: partParameters).map { $0 ..< min($0 + partParameters, count) }
    }

    /// A part of step `step`'s weights: send it followed by a frame of its Floats.
    package static func weightsPartHeader(job: UInt64, step: UInt64, part: Range<Int>) throws -> Message {
        try Message(copying: header(WeightsPartFields(part: part), job: job, step: step).encoded())
    }

    /// A part of array `array` of `arrays` of a result: send it followed by a frame of its Floats, or (`packed`, the
    /// only array) of its exact limbs as `cexact_pack_range` packs them; `diverged`: those limbs' sum saw a NaN or ∞.
    package static func gradientPartHeader(job: UInt64, step: UInt64, worker: UInt32, attempt: UInt64, array: Int,
                                          arrays: Int, part: Range<Int>, packed: Bool = false,
                                          diverged: Bool = false) throws -> Message {
        let form: GradientPartFields.Form = packed ? (diverged ? .packedLimbsDiverged : .packedLimbs) : .floats
        let fields = GradientPartFields(attempt: attempt, array: array, arrays: arrays, part: part, form: form)
        return try Message(copying: header(fields, job: job, step: step, worker: worker).encoded())
    }

    /// The part a `weightsPart` or `gradientPart` names, checked: it starts on a part's boundary and is that part's
    /// length.
    static func part(first: UInt64, count: UInt64, _ limits: Limits, _ type: MessageType)
        throws(WireError) -> Range<Int> {
        let parameters = try parameterCount(limits, type)
        let size = UInt64(partParameters)
        guard first < UInt64(parameters), first % size == 0, count == min(size, UInt64(parameters) - first) else {
            throw .badField(type, "part of \(count) parameters from \(first) is not one of the \(parameters) parameters' "
                + "parts of \(partParameters)")
        }
        return Int(first) ..< Int(first + count)
    }

    /// A part's frame holds exactly its Floats.
    static func floatsFill(_ frame: Message, _ part: Range<Int>, _ type: MessageType) throws(WireError) {
        guard frame.count == 4 * part.count else {
            throw .payloadSize(type: type, bytes: frame.count, expected: "\(4 * part.count) (\(part.count) Float32)")
        }
    }
}
