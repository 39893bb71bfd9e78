import CExactSum
import Testing
@testable import Wire

/// Results and weights in parts (`--overlap`): what goes out comes back, and every part that is not one of the
/// job's parts is refused by name.
@Suite struct PartsTests {
    /// 150,000 parameters: two whole parts of 65,536 and a last one of 18,928.
    static let limits = Limits(parameterCount: 150_000, job: 77)

    static func floats(_ count: Int, _ start: Float = 0) throws -> Message {
        let values = (0..<count).map { start + Float($0) }
        return try values.withUnsafeBytes { try Message(copying: $0) }
    }

    @Test("a job's parameters split into parts of 65,536, the last holding the rest")
    func partsOfAJob() {
        #expect(Array(PartSplit(parameterCount: 150_000)) == [0..<65_536, 65_536..<131_072, 131_072..<150_000])
        #expect(Array(PartSplit(parameterCount: 5)) == [0..<5])
        #expect(Array(PartSplit(parameterCount: 65_536)) == [0..<65_536])
        #expect(PartSplit(parameterCount: 150_000).part(startingAt: 131_072) == 2)
    }

    @Test("weights and result parts, the weights header's parts form and the assignment's parts flag round-trip")
    func roundTrips() throws {
        let part = 131_072..<150_000
        let weights = try Codec.decode([Codec.weightsPartHeader(job: 77, step: 4, part: part),
                                        Self.floats(part.count, 7)], limits: Self.limits)
        guard case .weightsPart(131_072, let frame) = weights.payload else { Issue.record("not a weights part"); return }
        var copy = [Float](repeating: 0, count: part.count)
        copy.withUnsafeMutableBufferPointer { frame.copy(into: $0.baseAddress!) }
        #expect(weights.header.step == 4 && copy.first == 7 && copy.last == Float(7 + part.count - 1))

        let result = try Codec.decode([Codec.gradientPartHeader(job: 77, step: 4, worker: 2, attempt: 9, array: 2,
                                                                arrays: 3, part: 65_536..<131_072),
                                       Self.floats(65_536)], limits: Self.limits)
        guard case .gradientPart(9, 2, 3, 65_536, .floats(let values)) = result.payload else {
            Issue.record("not a result part"); return
        }
        #expect(values.count == 65_536 && result.header.worker == 2)

        // Packed Floats come back bit for bit, whatever the bits (NaN payloads, −0, subnormals, zeros, ∞).
        let specials: [UInt32] = [0, 0x8000_0000, 1, 0x7FC0_1234, 0xFF80_0000, 0x0080_0000, 0x3F80_0000]
        var mix: UInt32 = 12_345
        let bits = (0..<18_928).map { i -> UInt32 in
            mix = mix &* 1_664_525 &+ 1_013_904_223
            return i % 97 == 0 ? specials[(i / 97) % specials.count] : 0x3A00_0000 &+ (mix >> 6)
        }
        var packed = [UInt8](repeating: 0, count: cexact_pack_floats_bound(bits.count))
        let length = bits.withUnsafeBytes {
            cexact_pack_floats($0.baseAddress!.assumingMemoryBound(to: Float.self), bits.count, &packed)
        }
        #expect(length < 4 * bits.count)
        let header = try Codec.gradientPartHeader(job: 77, step: 4, worker: 2, attempt: 9, array: 1, arrays: 2,
                                                  part: 131_072..<150_000, form: .packedFloats)
        let unpacked = try Codec.decode([header, Message(copying: Array(packed[..<length]))], limits: Self.limits)
        guard case .gradientPart(9, 1, 2, 131_072, .floats(let floats)) = unpacked.payload else {
            Issue.record("not packed Floats"); return
        }
        var back = [UInt32](repeating: 1, count: bits.count)
        back.withUnsafeMutableBytes { floats.copy(into: $0.baseAddress!.assumingMemoryBound(to: Float.self)) }
        #expect(back == bits)
        // A byte short, or one too many: not the part's Floats, named. (A changed bit may well be other Floats: the
        // form checks its own shape, as a Float frame does, not the values.)
        for bad in [Array(packed[..<(length - 1)]), Array(packed[..<length]) + [0]] {
            #expect {
                _ = try Codec.decode([header, Message(copying: bad)], limits: Self.limits)
            } throws: { ($0 as? WireError)?.description.contains("are not the 18928 Floats of the part from parameter 131072") ?? false }
        }

        for diverged in [false, true] {
            let packed = try Codec.decode([Codec.gradientPartHeader(job: 77, step: 4, worker: 2, attempt: 9, array: 0,
                                                                    arrays: 1, part: 131_072..<150_000,
                                                                    form: .packedLimbs(diverged: diverged)),
                                           Message(copying: [UInt8](repeating: 0, count: 100))], limits: Self.limits)
            guard case .gradientPart(9, 0, 1, 131_072, .packedLimbs(let bytes, diverged)) = packed.payload else {
                Issue.record("not packed limbs"); return
            }
            #expect(bytes.count == 100)
        }

        let fromParts = try Codec.decode([Codec.weightsHeader(job: 77, step: 4, parameterCount: 150_000, fromParts: true),
                                          Message(copying: [UInt8]())], limits: Self.limits)
        guard case .weightsFromParts = fromParts.payload else { Issue.record("not weights from parts"); return }

        let assignment = try Codec.decode(Codec.assignment(job: 77, step: 4, worker: 2, epoch: 0, batch: 1, attempt: 3,
                                                           ranges: [0..<2], inParts: true), limits: Self.limits)
        guard case .assignment(0, 1, 3, [0..<2], nil, true, false, false) = assignment.payload else { Issue.record("no parts flag"); return }
        let packing = try Codec.decode(Codec.assignment(job: 77, step: 4, worker: 2, epoch: 0, batch: 1, attempt: 3,
                                                        ranges: [0..<2], inParts: true, packsFloats: true), limits: Self.limits)
        guard case .assignment(0, 1, 3, [0..<2], nil, true, true, false) = packing.payload else {
            Issue.record("no packed Floats flag"); return
        }

        let counts = try Codec.decode([Codec.gradientHeader(job: 77, step: 4, worker: 2, samples: 10, correct: 3,
                                                            lossHigh: 0, lossLow: 0, exact: true, overflowed: false,
                                                            attempt: 3, inParts: true),
                                       Message(copying: [UInt8]())], limits: Self.limits)
        guard case .gradient(let frame) = counts.payload else { Issue.record("not a gradient"); return }
        #expect(frame.inParts && frame.samples == 10 && frame.message.count == 0)
    }

    @Test("a job with smaller parts takes its own parts and refuses the default size's")
    func jobPartSize() throws {
        let limits = Limits(parameterCount: 150_000, job: 77, partSize: 51_776)
        #expect(limits.parts.count == 3 && limits.parts[2] == 103_552..<150_000)
        let own = try Codec.decode([Codec.weightsPartHeader(job: 77, step: 4, part: 51_776..<103_552),
                                    Self.floats(51_776)], limits: limits)
        guard case .weightsPart(51_776, _) = own.payload else { Issue.record("not a weights part"); return }
        do {
            _ = try Codec.decode([Codec.weightsPartHeader(job: 77, step: 4, part: 65_536..<131_072),
                                  Self.floats(65_536)], limits: limits)
            Issue.record("a part of the default size was accepted")
        } catch {
            #expect("\(error)".contains("parts of 51776"), "\(error)")
        }
    }

    static func refusal(_ frames: [Message]) -> String {
        do {
            _ = try Codec.decode(frames, limits: limits)
            return "accepted"
        } catch {
            return error.description
        }
    }

    @Test("a part off the job's boundaries, of the wrong length or size, or of an array beyond its count is refused")
    func refusesBadParts() throws {
        func weightsPart(first: UInt64, count: UInt64, floats: Int) throws -> [Message] {
            [try Message(copying: Header(type: .weightsPart, job: 77, step: 1, frames: 1, fields: [first, count]).encoded()),
             try Self.floats(floats)]
        }
        func resultPart(array: UInt64, arrays: UInt64, first: UInt64 = 0, count: UInt64 = 65_536) throws -> [Message] {
            [try Message(copying: Header(type: .gradientPart, job: 77, step: 1, frames: 1,
                                         fields: [1, array, arrays, first, count]).encoded()),
             try Self.floats(Int(count))]
        }
        let cases: [([Message], String)] = [
            (try weightsPart(first: 1, count: 65_536, floats: 65_536), "part of 65536 parameters from 1 is not one of"),
            (try weightsPart(first: 131_072, count: 65_536, floats: 65_536), "part of 65536 parameters from 131072"),
            (try weightsPart(first: 150_000, count: 0, floats: 0), "from 150000 is not one of"),
            (try weightsPart(first: 0, count: 65_536, floats: 65_535), "weightsPart payload of 262140 bytes"),
            (try resultPart(array: 3, arrays: 3), "array 3 of 3"),
            (try resultPart(array: 0, arrays: 0), "array 0 of 0"),
            (try resultPart(array: 0, arrays: 5000), "array 0 of 5000 (at most 4096)"),
            (try resultPart(array: 0, arrays: 1, first: 65_536, count: 18_928), "part of 18928 parameters from 65536"),
            ([try Message(copying: Header(type: .gradientPart, job: 77, step: 1, frames: 1,
                                          fields: [1, 0, 2, 0, 65_536, 1]).encoded()), try Self.floats(10)],
             "form 1 (0 Floats, 1 packed limbs, 2 those of a diverged sum, 3 packed Floats; limbs the only array)"),
            ([try Message(copying: Header(type: .gradientPart, job: 77, step: 1, frames: 1,
                                          fields: [1, 0, 1, 0, 65_536, 4]).encoded()), try Self.floats(10)], "form 4"),
            ([try Codec.gradientPartHeader(job: 77, step: 1, worker: 1, attempt: 1, array: 0, arrays: 1,
                                           part: 131_072..<150_000, form: .packedLimbs(diverged: false)),
              try Message(copying: [UInt8](repeating: 0, count: 17 * 18_928 + 4 * 2366 + 9))],
             "(18928 parameters' limbs, packed)"),
            ([try Codec.gradientPartHeader(job: 77, step: 1, worker: 1, attempt: 1, array: 0, arrays: 1,
                                           part: 131_072..<150_000, form: .packedLimbs(diverged: false)),
              try Message(copying: [UInt8]())], "gradientPart payload of 0 bytes"),
            ([try Codec.gradientHeader(job: 77, step: 1, worker: 1, samples: 1, correct: 0, lossHigh: 0, lossLow: 0,
                                       exact: false, overflowed: false, attempt: 1, inParts: true),
              try Self.floats(150_000)], "expected 0, or 8 × 3 parts × 1…5 arrays"),
            ([try Codec.gradientHeader(job: 77, step: 1, worker: 1, samples: 1, correct: 0, lossHigh: 0, lossLow: 0,
                                       exact: false, overflowed: false, attempt: 1, inParts: true),
              try Message(copying: [UInt8](repeating: 0, count: 16))], "gradient payload of 16 bytes; expected 0, or 8 × 3"),
            ([try Codec.gradientHeader(job: 77, step: 1, worker: 1, samples: 1, correct: 0, lossHigh: 0, lossLow: 0,
                                       exact: false, overflowed: false, attempt: 1, inParts: true),
              try Message(copying: [UInt8](repeating: 0, count: 8 * 3 * 6))], "gradient payload of 144 bytes"),
            ([try Message(copying: Header(type: .weights, job: 77, step: 1, frames: 1,
                                          fields: [150_000, 4, 0, 0, 0, 0]).encoded()), try Message(copying: [UInt8]())],
             "replica key 0 with form 4"),
            ([try Message(copying: Header(type: .weights, job: 77, step: 1, frames: 1,
                                          fields: [150_000, 3, 0, 0, 9, 0]).encoded()), try Message(copying: [UInt8]())],
             "replica key 9 with form 3"),
            ([try Codec.weightsHeader(job: 77, step: 1, parameterCount: 150_000, fromParts: true), try Self.floats(3)],
             "weights payload of 12 bytes; expected 0 (the weights came in parts)"),
            (Array(try Codec.assignment(job: 77, step: 1, worker: 1, epoch: 0, batch: 0, ranges: [0..<1], resultSlot: 0,
                                        inParts: true)), "or both a slot and parts"),
        ]
        for (frames, reason) in cases {
            let text = Self.refusal(frames)
            #expect(text.contains(reason) && !text.contains("\n"), "\(reason): \(text)")
        }
    }
}
