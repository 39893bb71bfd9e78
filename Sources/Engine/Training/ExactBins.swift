/// The fixed-point arithmetic of exact sums: every finite value, from float32's smallest subnormal to a Double near
/// its maximum, enters a sum whose bits do not depend on the order or grouping of the additions.
///
/// Bins lie on one grid: bin `j` counts units of 2^(51j − 20). A sum holds two adjacent bins, the *window* `k`:
/// a high limb in units of 2^(51k − 20) and a low limb in units of 2^(51k − 71). A value `x` with |x| < 2^(51k + 30)
/// enters window `k` as its deposits `high = round(x / 2^(51k−20))` and `low = round((x − high·2^(51k−20)) /
/// 2^(51k−71))`, each below 2⁵⁰ in magnitude. The window of a sum is the highest window any of its values needs
/// (`window(ofMagnitude:)`), and a value's deposits in a bin depend only on the value and the bin — a value that
/// needs a lower window deposits nothing in the bin above it. So when a sum moves up by one window its high limb
/// becomes its low limb, exactly, and its old low limb (the bin now below the window) is dropped: the result is
/// Σ (each value's deposits in the final window's two bins) whatever the order. This is the binned summation of
/// reproducible-summation work such as ReproBLAS, with two 51-bit bins and integer limbs.
///
/// Resolution: a value 2⁵⁰ or more times smaller than the sum's largest is rounded to the low bin's unit; values
/// within that range of it enter exactly. Window −3 (|x| < 2⁻¹²³) holds every float32 subnormal exactly; window 2
/// holds every finite float32; a Double loss sum may need up to window 20.
enum ExactBins {
    static let lowestWindow: Int32 = -3
    /// The highest window a finite float32 needs.
    static let highestFloatWindow: Int32 = 2
    /// The highest window a finite Double needs.
    static let highestWindow: Int32 = 20
    /// Largest magnitude one value's deposit adds to either limb.
    static let depositLimit: Int64 = 1 << 50

    // x + 1.5·2^(52+k) rounds x to a multiple of 2^k, and the sum's bit pattern minus the constant's is x / 2^k.
    private static let highMagic = 0x1.8p32, lowMagic = 0x1.8p-19
    private static let highMagicBits = Int64(bitPattern: highMagic.bitPattern)
    private static let lowMagicBits = Int64(bitPattern: lowMagic.bitPattern)

    /// The window a float32 of magnitude bits `magnitude` (its bits with the sign cleared) needs: the smallest `k`
    /// with |x| < 2^(51k + 30). Zero and subnormals need the lowest window; NaN and ∞ give window 2 (the caller
    /// flags them by their magnitude bits, ≥ 0x7F80_0000). Integer arithmetic only, so loops over it vectorise.
    @inline(__always)
    static func window(ofMagnitude magnitude: UInt32) -> Int32 {
        // A normal float with biased exponent b has |x| < 2^(b−126), so k = ⌈(b − 156) / 51⌉ = ⌊(b + 47) / 51⌋ − 3,
        // which steps up at b = 4, 55, 106, 157 and 208. Compares, not a division: they vectorise on plain SSE2.
        let bits = Int32(bitPattern: magnitude)
        return -3 &+ (bits >= 4 << 23 ? 1 : 0) &+ (bits >= 55 << 23 ? 1 : 0) &+ (bits >= 106 << 23 ? 1 : 0)
            &+ (bits >= 157 << 23 ? 1 : 0) &+ (bits >= 208 << 23 ? 1 : 0)
    }

    /// The window a Double needs (a loss sum), at least the lowest: Doubles below 2⁻¹²³ round in window −3.
    static func window(of value: Double) -> Int32 {
        let biased = Int32(truncatingIfNeeded: (value.bitPattern >> 52) & 0x7FF)
        // |x| < 2^(e − 1022) for biased exponent e, so k = ⌈(e − 1052) / 51⌉ = ⌊(e + 18) / 51⌋ − 20.
        return max(lowestWindow, (biased + 18) / 51 - 20)
    }

    /// 2^(−51k): multiplying by it moves a value into window `k`'s units exactly (a power of two, and every window's
    /// values stay normal Doubles).
    @inline(__always)
    static func scale(_ window: Int32) -> Double {
        Double(bitPattern: UInt64(truncatingIfNeeded: 1023 &- times51(Int64(window))) << 52)
    }

    /// 51·k in shifts and adds (plain SSE2 has no 64-bit vector multiply).
    @inline(__always)
    private static func times51(_ k: Int64) -> Int64 { (k << 5) &+ (k << 4) &+ (k << 1) &+ k }

    /// The deposits of `scaled`, a value already multiplied by its window's `scale`, with |scaled| < 2³⁰.
    @inline(__always)
    static func deposits(_ scaled: Double) -> (high: Int64, low: Int64) {
        let shifted = scaled + highMagic
        let rest = scaled - (shifted - highMagic)  // exact: |rest| ≤ 2⁻²¹
        return (Int64(bitPattern: shifted.bitPattern) &- highMagicBits,
                Int64(bitPattern: (rest + lowMagic).bitPattern) &- lowMagicBits)
    }

    /// The deposits of `value` in window `window` (which must be at least `value`'s own).
    @inline(__always)
    static func deposits(_ value: Double, window: Int32) -> (high: Int64, low: Int64) {
        deposits(value * scale(window))
    }

    /// Limbs of a window moved `steps` (≥ 0) windows up: the high limb becomes the low one at one step; nothing
    /// is left at two or more. Selects only, so loops over it vectorise.
    @inline(__always)
    static func raise(_ high: Int64, _ low: Int64, by steps: Int32) -> (high: Int64, low: Int64) {
        (steps == 0 ? high : 0, steps == 0 ? low : (steps == 1 ? high : 0))
    }

    /// The unique limbs of the same value with `low` in [0, 2⁵¹).
    @inline(__always)
    static func canonical(_ high: Int64, _ low: Int64) -> (Int64, Int64) {
        let carry = low >> 51
        return (high &+ carry, low &- (carry << 51))
    }

    /// The value of limbs in window `window`, as a Double (canonical limbs first, so equal sums give equal bits).
    @inline(__always)
    static func value(_ high: Int64, _ low: Int64, window: Int32) -> Double {
        let (h, l) = canonical(high, low)
        // In two steps, so neither product leaves the Double range when the true value does not.
        let up = Double(bitPattern: UInt64(truncatingIfNeeded: 1023 &+ times51(Int64(window))) << 52)
        return (double(h) * 0x1p-20 + double(nonNegative: l) * 0x1p-71) * up
    }

    /// `Double(value)`, correctly rounded, in operations plain SSE2 vectorises (it has no 64-bit integer
    /// conversion): the high half converts from Int32 exactly, the low half by the 2⁵² magic number, and the one
    /// addition rounds.
    @inline(__always)
    static func double(_ value: Int64) -> Double {
        let upper = Double(Int32(truncatingIfNeeded: value >> 32)) * 0x1p32
        return upper + double(nonNegative: value & 0xFFFF_FFFF)
    }

    /// `Double(value)` for 0 ≤ value < 2⁵², exactly.
    @inline(__always)
    static func double(nonNegative value: Int64) -> Double {
        Double(bitPattern: 0x4330_0000_0000_0000 | UInt64(bitPattern: value)) - 0x1p52
    }
}
