import CExactSum
import Testing

/// The packed form's builds (portable, BMI2, AVX-512 with VBMI; `cexact_pack_level`) against the portable one: the
/// same bytes from every sum, the same verdict on every stream — packed ones and ones damaged after packing — and the
/// same sum from every stream they accept. The sums are made block by block at every width the form has (0–64 bits,
/// each low-limb shift), so each of the vector build's paths (four, two or one limb a put; a width past 56 bits; a
/// block too near the stream's end for a 64-byte read) is taken.
@Suite(.serialized) struct PackedBuildsTests {
    struct Mix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// A value that needs at most `width` bits in two's complement (0: zero).
    static func limb(width: Int, _ mix: inout Mix) -> Int64 {
        guard width > 0 else { return 0 }
        let unused = UInt64(64 - width)
        return Int64(bitPattern: mix.next() << unused) >> Int64(unused)
    }

    /// A sum's bytes (high limbs, low limbs, windows) of `count` parameters, each block of 8 at widths of its own.
    static func sum(count: Int, _ mix: inout Mix) -> [UInt8] {
        var high: [Int64] = [], low: [Int64] = [], windows: [Int8] = []
        while high.count < count {
            let n = min(8, count - high.count)
            // Gradients' widths most often, every width some of the time.
            let highWidth = mix.below(3) == 0 ? mix.below(65) : 8 + mix.below(8)
            let lowWidth = mix.below(3) == 0 ? mix.below(65) : 12 + mix.below(24), shift = mix.below(64)
            let uniform = mix.below(4) > 0, window = Int8(mix.below(6)) - 3
            for _ in 0..<n {
                high.append(limb(width: highWidth, &mix))
                // The shift applies only to what it gives back (the packer takes the trailing zeros it finds).
                low.append(Int64(bitPattern: UInt64(bitPattern: limb(width: max(0, lowWidth - shift), &mix)) << UInt64(shift)))
                windows.append(uniform ? window : Int8(mix.below(6)) - 3)
            }
        }
        return high.withUnsafeBytes(Array.init) + low.withUnsafeBytes(Array.init) + windows.map { UInt8(bitPattern: $0) }
    }

    static func pack(_ sum: [UInt8], count: Int) -> [UInt8] {
        var packed = [UInt8](repeating: 0, count: cexact_pack_bound(count))
        let length = cexact_pack(sum, count, &packed)
        return Array(packed[..<length])
    }

    /// The verdict on `stream` and, when accepted, the sum it gives.
    static func unpack(_ stream: [UInt8], count: Int) -> [UInt8]? {
        var back = [UInt8](repeating: 0, count: Int(CEXACT_BYTES_PER_PARAMETER) * count)
        return cexact_unpack(stream, stream.count, count, &back) == 1 ? back : nil
    }

    @Test("every build packs a sum to the portable build's bytes, and unpacks any stream as it does")
    func buildsAgree() throws {
        let best = cexact_pack_level()
        defer { _ = cexact_use_pack_level(best) }
        #expect(cexact_use_pack_level(best + 1) == 0, "a build beyond what this CPU runs was taken")
        var mix = Mix(state: 0x9E37_79B9_7F4A_7C15)
        var accepted = 0, refused = 0
        for round in 0..<60 {
            let count = [1, 7, 8, 9, 40, 257, 1000, 4099][round % 8]
            let sum = Self.sum(count: count, &mix)
            #expect(cexact_use_pack_level(0) == 1)
            let reference = Self.pack(sum, count: count)
            #expect(Self.unpack(reference, count: count) == sum, "\(count) parameters, portable build")
            // The stream as packed, then damaged: a bit flipped, cut short, a byte too many, a shift too far.
            var streams = [reference]
            for _ in 0..<6 {
                var flipped = reference
                flipped[mix.below(flipped.count)] ^= UInt8(1) << UInt8(mix.below(8))
                streams.append(flipped)
            }
            streams.append(Array(reference.dropLast(1 + mix.below(min(3, reference.count)))))
            streams.append(reference + [0])
            if reference.count > 3 && reference[0] & 1 == 1 {
                // A uniform first block's low-limb shift (bits 20-25) raised to 63: refused unless its limbs are 0.
                var shifted = reference
                shifted[2] |= 0xF0
                shifted[3] |= 0x03
                streams.append(shifted)
            }
            let verdicts = streams.map { Self.unpack($0, count: count) }
            for level in Int32(1)...max(1, best) where level <= best {
                #expect(cexact_use_pack_level(level) == 1)
                #expect(Self.pack(sum, count: count) == reference, "\(count) parameters, build \(level)")
                for (stream, verdict) in zip(streams, verdicts) {
                    #expect(Self.unpack(stream, count: count) == verdict,
                            "\(count) parameters, build \(level), a stream of \(stream.count) bytes")
                }
            }
            for verdict in verdicts.dropFirst() { if verdict == nil { refused += 1 } else { accepted += 1 } }
        }
        // The damaged streams exercise both verdicts (a flipped limb bit is still a sum; a flipped width is not).
        #expect(accepted > 0 && refused > 0, "accepted \(accepted), refused \(refused)")
    }
}
