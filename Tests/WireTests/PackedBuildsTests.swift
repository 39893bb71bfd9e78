import CExactSum
import Testing

/// The packed forms' builds (portable, BMI2, AVX-512 with VBMI; `cexact_pack_level`) against the portable one: the
/// same bytes from every sum, the same verdict on every stream — packed ones and ones damaged after packing — and the
/// same sum, and the same bounds on its limbs, from every stream they accept. The sums are made block by block at
/// every width the form has (0–64 bits, each low-limb shift), so each of the vector build's paths (four, two or one
/// limb a put; a width past 56 bits; a block too near the stream's end for a 64-byte read) is taken.
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

    /// What a stream unpacks to: the sum, and the bounds its headers give (widest high and low limb, windows).
    struct Unpacked: Equatable {
        let sum: [UInt8]
        let bounds: [Int32]
    }

    /// The verdict on `stream` and, when accepted, the sum it gives. `cexact_unpack` must give the same verdict and sum.
    static func unpack(_ stream: [UInt8], count: Int) -> Unpacked? {
        var back = [UInt8](repeating: 0, count: Int(CEXACT_BYTES_PER_PARAMETER) * count), plain = back
        var b = cexact_unpacked_bounds()
        let accepted = cexact_unpack_bounded(stream, stream.count, count, &back, &b) == 1
        #expect((cexact_unpack(stream, stream.count, count, &plain) == 1) == accepted && (!accepted || plain == back))
        return accepted ? Unpacked(sum: back, bounds: [b.high_bits, b.low_bits, b.lowest_window, b.highest_window]) : nil
    }

    /// The bounds read off the sum itself: the bits its widest high and low limbs need in two's complement, and its
    /// lowest and highest window.
    static func bounds(of sum: [UInt8], count: Int) -> [Int32] {
        let limbs = sum.withUnsafeBytes { bytes in (0..<2 * count).map { bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) } }
        let needs = { (v: Int64) in v == 0 ? 0 : Int32(65 - (v ^ (v >> 63)).leadingZeroBitCount) }
        let windows = sum[(16 * count)...].map { Int32(Int8(bitPattern: $0)) }
        return [limbs[..<count].map(needs).max()!, limbs[count...].map(needs).max()!, windows.min()!, windows.max()!]
    }

    /// `reference` as packed, then damaged: a bit flipped (six times), cut short, a byte too many.
    static func damaged(_ reference: [UInt8], _ mix: inout Mix) -> [[UInt8]] {
        var streams = [reference]
        for _ in 0..<6 {
            var flipped = reference
            flipped[mix.below(flipped.count)] ^= UInt8(1) << UInt8(mix.below(8))
            streams.append(flipped)
        }
        streams.append(Array(reference.dropLast(1 + mix.below(min(3, reference.count)))))
        streams.append(reference + [0])
        return streams
    }

    /// Every build above the portable one, up to `best`, packs to `reference` and gives the portable build's verdict
    /// (and values) on every one of `streams`; returns how many of the damaged ones (all but the first) were accepted
    /// and refused.
    static func compareBuilds<Value: Equatable>(best: Int32, reference: [UInt8], streams: [[UInt8]], what: String,
                                                pack: () -> [UInt8], unpack: ([UInt8]) -> Value?) -> (Int, Int) {
        #expect(cexact_use_pack_level(0) == 1)
        let verdicts = streams.map(unpack)
        for level in Int32(1)...max(1, best) where level <= best {
            #expect(cexact_use_pack_level(level) == 1)
            #expect(pack() == reference, "\(what), build \(level)")
            for (stream, verdict) in zip(streams, verdicts) {
                #expect(unpack(stream) == verdict, "\(what), build \(level), a stream of \(stream.count) bytes")
            }
        }
        let accepted = verdicts.dropFirst().filter { $0 != nil }.count
        return (accepted, verdicts.count - 1 - accepted)
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
            #expect(Self.unpack(reference, count: count) == Unpacked(sum: sum, bounds: Self.bounds(of: sum, count: count)),
                    "\(count) parameters, portable build")
            // The stream as packed, then damaged, and with a shift too far.
            var streams = Self.damaged(reference, &mix)
            if reference.count > 3 && reference[0] & 1 == 1 {
                // A uniform first block's low-limb shift (bits 20-25) raised to 63: refused unless its limbs are 0.
                var shifted = reference
                shifted[2] |= 0xF0
                shifted[3] |= 0x03
                streams.append(shifted)
            }
            let (yes, no) = Self.compareBuilds(best: best, reference: reference, streams: streams,
                                                what: "\(count) parameters", pack: { Self.pack(sum, count: count) },
                                                unpack: { Self.unpack($0, count: count) })
            (accepted, refused) = (accepted + yes, refused + no)
        }
        // The damaged streams exercise both verdicts (a flipped limb bit is still a sum; a flipped width is not).
        #expect(accepted > 0 && refused > 0, "accepted \(accepted), refused \(refused)")
    }

    /// Floats block by block: gradient-like runs of nearby exponents, every special bit pattern, +0 runs, and
    /// blocks of any exponent spread (width 0 to 8).
    static func floats(count: Int, _ mix: inout Mix) -> [UInt32] {
        let specials: [UInt32] = [0, 0x8000_0000, 1, 0x007F_FFFF, 0x0080_0000, 0x7F7F_FFFF, 0x7F80_0000, 0xFF80_0000,
                                  0x7FC0_0000, 0x7FA0_0001, 0xFFFF_FFFF, 0x3F80_0000]
        var values: [UInt32] = []
        while values.count < count {
            let n = min(8, count - values.count), kind = mix.below(5)
            let low = UInt32(mix.below(256)), spread = UInt32(mix.below(9))
            for _ in 0..<n {
                switch kind {
                case 0: values.append(specials[mix.below(specials.count)])
                case 1: values.append(mix.below(2) == 0 ? 0 : UInt32(truncatingIfNeeded: mix.next()))
                default:
                    // Exponents within `spread` bits of each other from `low` (capped at 255: ∞ and NaNs too).
                    let exponent = min(255, low + UInt32(mix.below(1 << spread)))
                    values.append(UInt32(mix.below(2)) << 31 | exponent << 23 | UInt32(truncatingIfNeeded: mix.next()) & 0x7F_FFFF)
                }
            }
        }
        return values
    }

    static func packFloats(_ values: [UInt32]) -> [UInt8] {
        var packed = [UInt8](repeating: 0, count: cexact_pack_floats_bound(values.count))
        let length = values.withUnsafeBytes {
            cexact_pack_floats($0.baseAddress!.assumingMemoryBound(to: Float.self), values.count, &packed)
        }
        return Array(packed[..<length])
    }

    static func unpackFloats(_ stream: [UInt8], count: Int) -> [UInt32]? {
        var back = [UInt32](repeating: 0xDEAD_BEEF, count: count)
        let ok = back.withUnsafeMutableBytes {
            cexact_unpack_floats(stream, stream.count, count, $0.baseAddress!.assumingMemoryBound(to: Float.self))
        }
        return ok == 1 ? back : nil
    }

    @Test("packed Floats: every bit pattern comes back; every build writes the portable one's bytes and unpacks any stream as it does")
    func floatBuildsAgree() throws {
        let best = cexact_pack_level()
        defer { _ = cexact_use_pack_level(best) }
        var mix = Mix(state: 0xD1B5_4A32_D192_ED03)
        var accepted = 0, refused = 0
        for round in 0..<60 {
            let count = [1, 7, 8, 9, 40, 257, 1000, 4099][round % 8]
            let values = Self.floats(count: count, &mix)
            #expect(cexact_use_pack_level(0) == 1)
            let reference = Self.packFloats(values)
            #expect(reference.count <= cexact_pack_floats_bound(count))
            #expect(Self.unpackFloats(reference, count: count) == values, "\(count) Floats, portable build")
            let (yes, no) = Self.compareBuilds(best: best, reference: reference, streams: Self.damaged(reference, &mix),
                                                what: "\(count) Floats", pack: { Self.packFloats(values) },
                                                unpack: { Self.unpackFloats($0, count: count) })
            (accepted, refused) = (accepted + yes, refused + no)
        }
        #expect(accepted > 0 && refused > 0, "accepted \(accepted), refused \(refused)")
    }

    @Test("packed Floats: one form per array — a block's exponent not its smallest, a width wider than needed, or an unmarked +0 is refused by every build")
    func floatFormIsCanonical() {
        typealias Block = (smallest: UInt64, width: UInt64, fields: [UInt64])
        /// Blocks without +0 (flag 0), each followed by eight blocks of 1.0 so that a vector build reads it whole.
        func stream(_ first: Block) -> [UInt8] {
            var bits: [Bool] = []
            func put(_ v: UInt64, _ n: Int) { for i in 0..<n { bits.append(v >> UInt64(i) & 1 == 1) } }
            let one: Block = (127, 0, Array(repeating: 0, count: 8))
            for block in [first] + Array(repeating: one, count: 8) {
                put(0, 1)
                put(block.smallest | block.width << 8, 12)
                for f in block.fields { put(f, 24 + Int(block.width)) }
            }
            while bits.count % 8 != 0 { bits.append(false) }
            return stride(from: 0, to: bits.count, by: 8).map { i in
                (0..<8).reduce(UInt8(0)) { $0 | (bits[i + $1] ? 1 << UInt8($1) : 0) }
            }
        }
        let ones = [UInt32](repeating: 0x3F80_0000, count: 72)
        let best = cexact_pack_level()
        defer { _ = cexact_use_pack_level(best) }
        for level in Int32(0)...best {
            #expect(cexact_use_pack_level(level) == 1)
            // Nine blocks of 1.0 (exponent 127): as written by hand, so as the packer writes them.
            let written = stream((127, 0, Array(repeating: 0, count: 8)))
            #expect(Self.packFloats(ones) == written && Self.unpackFloats(written, count: 72) == ones, "build \(level)")
            // 1.0s from exponent 126 with differences of 1 (not the smallest); a width of 1 for differences of 0;
            // a +0 as a field rather than marked.
            for bad: Block in [(126, 1, Array(repeating: 1 << 23, count: 8)), (127, 1, Array(repeating: 0, count: 8)),
                               (0, 7, [0] + Array(repeating: 127 << 23, count: 7))] {
                #expect(Self.unpackFloats(stream(bad), count: 72) == nil, "build \(level): \(bad)")
            }
        }
    }
}
