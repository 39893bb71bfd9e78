/// The project's seeded pseudo-random generator: xoshiro256** seeded through SplitMix64.
///
/// Integer arithmetic only, so a seed gives the same bits on every platform and compiler. Independent streams
/// (initialisation, each epoch's shuffle, data generation) come from `init(seed:stream:)`, so adding a draw in
/// one place never shifts another.
package struct Xoshiro: RandomNumberGenerator, Sendable {
    private var s0, s1, s2, s3: UInt64

    /// A generator for `seed`; `stream` selects an independent sequence for the same seed.
    package init(seed: UInt64, stream: UInt64 = 0) {
        var mixer = SplitMix64(state: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
        _ = mixer.next()  // decorrelates stream 0 from a plain SplitMix64 of the seed
        s0 = mixer.next(); s1 = mixer.next(); s2 = mixer.next(); s3 = mixer.next()
    }

    package mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    /// A Float uniform in [0, 1) from the top 24 bits: every value is exact, so no rounding differs by platform.
    package mutating func nextUnitFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// A Double uniform in [0, 1) from the top 53 bits.
    package mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// An integer uniform in 0..<bound without modulo bias (Lemire's multiply-and-reject).
    package mutating func nextIndex(below bound: Int) -> Int {
        precondition(bound > 0, "nextIndex bound must be positive, got \(bound)")
        let range = UInt64(bound)
        var product = next().multipliedFullWidth(by: range)
        if product.low < range {
            let threshold = (0 &- range) % range
            while product.low < threshold { product = next().multipliedFullWidth(by: range) }
        }
        return Int(product.high)
    }

    /// A standard normal deviate (Box–Muller with the engine's own deterministic log and sincos).
    package mutating func nextGaussian() -> Double {
        let u1 = 1 - nextUnitDouble()  // (0, 1]: log is finite
        let u2 = nextUnitDouble()
        return PortableMath.sqrt(-2 * PortableMath.log(u1)) * PortableMath.cos(2 * Double.pi * u2)
    }

    /// Shuffles `indices` in place (Fisher–Yates).
    package mutating func shuffle(_ indices: UnsafeMutableBufferPointer<Int>) {
        guard indices.count > 1 else { return }
        for i in stride(from: indices.count - 1, to: 0, by: -1) {
            indices.swapAt(i, nextIndex(below: i + 1))
        }
    }

    @inline(__always) private func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

/// SplitMix64: expands one seed into well-mixed state words.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
