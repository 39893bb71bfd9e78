/// How micro-shard gradients are added up.
public enum Reduction: String, Sendable, CaseIterable {
    /// Fixed-point sums: the same bits for any grouping of micro-shards, so for any number of workers.
    case exact
    /// Float sums of one GEMM per slice: fastest, but the bits depend on how the batch was split.
    case fast
}

/// The running sum of gradients and statistics over the slices of one batch, combined by adding.
///
/// In `.exact` mode each Float is split exactly into two 64-bit integer limbs, `high` in units of 2⁻²⁰ and `low` in
/// units of 2⁻⁷¹, so a value is `high·2⁻²⁰ + low·2⁻⁷¹`. Integer addition is associative (wrapping included), so any
/// grouping of micro-shards over any number of processes gives the same limb sums, the same canonical limbs
/// (`canonical`) and so the same Float mean.
///
/// Why fixed point rather than a canonical reduction tree: a tree only works when every process owns whole
/// subtrees, which fights speed-proportional shard ranges; integer sums let a worker send one buffer for any range.
/// Why two limbs filled by magic-number rounding rather than one Int128: the split is a handful of double-precision
/// adds that vectorise on any x86-64 (≈0.5 ns per parameter on SSE2, against ≈1.6 ns for 128-bit shifts), and the
/// limbs need no carries while adding.
/// Cost: one such pass per micro-shard, and 16 bytes per parameter on the wire instead of 4.
/// Range: magnitudes below 2⁻⁷² (≈2e−22) round to the nearest multiple of 2⁻⁷¹, far below a Float's resolution at any
/// magnitude that moves a weight; a micro-shard value of magnitude 2³¹ (≈2.1e9) or more, or a NaN or ∞, marks the sum
/// `overflowed` (the run has diverged). Each micro-shard adds at most 2⁵¹ to a limb, so up to
/// `maximumMicroShards` micro-shards add without the true sum leaving 64 bits.
public final class GradientSum {
    /// Largest magnitude one added value may have in exact mode.
    static let limit = 0x1p31
    /// The largest magnitude one micro-shard's value adds to either limb: below `limit` in units of 2⁻²⁰ for the
    /// high limb, and the remainder below 2⁻²⁰ in units of 2⁻⁷¹ for the low one.
    public static let limbLimit: Int64 = 1 << 51
    /// Micro-shards one exact sum may hold (job validation keeps batch_size / micro_shard within it).
    public static let maximumMicroShards = 4096
    // x + 1.5·2^(52+k) rounds x to a multiple of 2^k, and the sum's bit pattern minus the constant's is x / 2^k.
    private static let highMagic = 0x1.8p32, lowMagic = 0x1.8p-19
    private static let highMagicBits = Int64(bitPattern: highMagic.bitPattern)
    private static let lowMagicBits = Int64(bitPattern: lowMagic.bitPattern)

    public let reduction: Reduction
    public let count: Int
    /// Exact mode: the limbs, all `high` limbs then all `low` limbs, in the parameter layout (empty in fast mode).
    public let limbs: Buffer<Int64>
    /// Fast mode: Float gradient sums in the parameter layout (empty in exact mode).
    public let floats: Buffer<Float>
    /// Exact mode: the loss sum's limbs.
    public private(set) var lossLimbs: (high: Int64, low: Int64) = (0, 0)
    /// Fast mode: sum of per-sample losses.
    public private(set) var floatLossSum = 0.0
    public private(set) var samples = 0
    public private(set) var correct = 0
    /// True once an added value was non-finite (or, in exact mode, beyond `limit`).
    public private(set) var overflowed = false
    /// Nothing added since `reset`: the next addition overwrites instead of adding, so reset needs no memset.
    public private(set) var isEmpty = true

    public init(count: Int, reduction: Reduction) {
        self.count = count
        self.reduction = reduction
        limbs = Buffer(count: reduction == .exact ? 2 * count : 0)
        floats = Buffer(count: reduction == .fast ? count : 0)
    }

    private var high: UnsafeMutablePointer<Int64> { limbs.pointer }
    private var low: UnsafeMutablePointer<Int64> { limbs.pointer + count }

    /// The sum of per-sample losses.
    public var lossSum: Double {
        guard reduction == .exact else { return floatLossSum }
        let (high, low) = Self.canonical(lossLimbs.high, lossLimbs.low)
        return Self.value(high, low)
    }

    public func reset() {
        isEmpty = true
        lossLimbs = (0, 0)
        floatLossSum = 0
        samples = 0
        correct = 0
        overflowed = false
    }

    /// Adds one slice's Float gradient sum and statistics.
    public func add(gradient: UnsafePointer<Float>, statistics: SliceStatistics) {
        switch reduction {
        case .exact:
            var one = gradient, stats = statistics
            withUnsafePointer(to: &one) { g in
                withUnsafePointer(to: &stats) { addExact(.init(start: g, count: 1), .init(start: $0, count: 1)) }
            }
        case .fast:
            let target = floats.pointer
            if isEmpty {
                if UnsafePointer(target) != gradient { target.update(from: gradient, count: count) }
            } else {
                for i in 0..<count { target[i] += gradient[i] }
            }
            floatLossSum += statistics.lossSum
            record(statistics, bad: !statistics.lossSum.isFinite)
        }
    }

    /// Exact mode: adds up to four micro-shards' Float gradients in one pass. Each value is split into limbs on its
    /// own (so the bits are those of adding them one by one); the limbs are summed in registers and the stored sums
    /// read and written once, which quarters the memory traffic of the accumulators.
    public func addExact(_ gradients: UnsafeBufferPointer<UnsafePointer<Float>>,
                         _ statistics: UnsafeBufferPointer<SliceStatistics>) {
        precondition(reduction == .exact && (1...4).contains(gradients.count) && gradients.count == statistics.count,
                     "addExact takes one to four exact micro-shards")
        let g0 = gradients[0]
        let g1 = gradients.count > 1 ? gradients[1] : g0, g2 = gradients.count > 2 ? gradients[2] : g0
        let g3 = gradients.count > 3 ? gradients[3] : g0
        var outside: Int64
        switch gradients.count {
        case 1: outside = accumulate { Self.limbs(Double(g0[$0])) }
        case 2: outside = accumulate { Self.sum(Self.limbs(Double(g0[$0])), Self.limbs(Double(g1[$0]))) }
        case 3:
            outside = accumulate {
                Self.sum(Self.sum(Self.limbs(Double(g0[$0])), Self.limbs(Double(g1[$0]))), Self.limbs(Double(g2[$0])))
            }
        default:
            outside = accumulate {
                Self.sum(Self.sum(Self.limbs(Double(g0[$0])), Self.limbs(Double(g1[$0]))),
                         Self.sum(Self.limbs(Double(g2[$0])), Self.limbs(Double(g3[$0]))))
            }
        }
        for s in statistics {
            let (h, l, lossOutside) = Self.limbs(s.lossSum)
            lossLimbs.high &+= h
            lossLimbs.low &+= l
            outside |= lossOutside
            record(s, bad: false)
        }
        overflowed = overflowed || outside != 0
    }

    /// Adds `limbs(i)` to (or, when empty, stores it in) every parameter's limbs; returns any `outside` flag.
    @inline(__always)
    private func accumulate(_ limbs: (Int) -> (high: Int64, low: Int64, outside: Int64)) -> Int64 {
        let high = self.high, low = self.low
        var outside: Int64 = 0
        if isEmpty {
            for i in 0..<count {
                let (h, l, o) = limbs(i)
                outside |= o
                high[i] = h
                low[i] = l
            }
        } else {
            for i in 0..<count {
                let (h, l, o) = limbs(i)
                outside |= o
                high[i] &+= h
                low[i] &+= l
            }
        }
        return outside
    }

    @inline(__always)
    private static func sum(_ a: (high: Int64, low: Int64, outside: Int64), _ b: (high: Int64, low: Int64, outside: Int64))
        -> (high: Int64, low: Int64, outside: Int64) {
        (a.high &+ b.high, a.low &+ b.low, a.outside | b.outside)
    }

    private func record(_ statistics: SliceStatistics, bad: Bool) {
        samples += statistics.samples
        correct += statistics.correct
        overflowed = overflowed || bad
        isEmpty = false
    }

    /// Fast mode, empty sum: the buffer a slice may write its gradient into directly, then `add` it in place.
    public var writableFloats: UnsafeMutablePointer<Float>? { reduction == .fast && isEmpty ? floats.pointer : nil }

    /// Adds another sum of the same mode and size (another worker's slice of the batch).
    public func add(_ other: GradientSum) {
        precondition(other.count == count && other.reduction == reduction, "adding unlike gradient sums")
        guard !other.isEmpty else { return }
        switch reduction {
        case .exact:
            let target = limbs.pointer, source = other.limbs.pointer
            if isEmpty {
                target.update(from: source, count: 2 * count)
            } else {
                for i in 0..<2 * count { target[i] &+= source[i] }
            }
            lossLimbs.high &+= other.lossLimbs.high
            lossLimbs.low &+= other.lossLimbs.low
        case .fast:
            let target = floats.pointer, source = other.floats.pointer
            if isEmpty {
                target.update(from: source, count: count)
            } else {
                for i in 0..<count { target[i] += source[i] }
            }
            floatLossSum += other.floatLossSum
        }
        samples += other.samples
        correct += other.correct
        overflowed = overflowed || other.overflowed
        isEmpty = false
    }

    /// The loss sum as two words for the wire: exact, its limbs; fast, the Float64's bits and 0.
    public var lossWords: (Int64, Int64) {
        reduction == .exact ? lossLimbs : (Int64(bitPattern: floatLossSum.bitPattern), 0)
    }

    /// The values as bytes for the wire: exact, all high limbs then all low limbs; fast, the Floats.
    public var valueBytes: UnsafeRawBufferPointer {
        reduction == .exact ? UnsafeRawBufferPointer(start: limbs.pointer, count: 16 * count)
            : UnsafeRawBufferPointer(start: floats.pointer, count: 4 * count)
    }

    /// Adds a sum another process computed, read in place from its bytes (`valueBytes`' layout and `lossWords`).
    public func add(bytes: UnsafeRawBufferPointer, samples: Int, correct: Int, lossWords: (Int64, Int64),
                    overflowed: Bool) {
        precondition(bytes.count == (reduction == .exact ? 16 : 4) * count, "gradient bytes do not fit the model")
        switch reduction {
        case .exact:
            let target = limbs.pointer
            if Int(bitPattern: bytes.baseAddress) % 8 == 0 {
                let source = bytes.baseAddress!.assumingMemoryBound(to: Int64.self)
                if isEmpty { target.update(from: source, count: 2 * count) } else { for i in 0..<2 * count { target[i] &+= source[i] } }
            } else {
                for i in 0..<2 * count {
                    let value = bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)
                    target[i] = isEmpty ? value : target[i] &+ value
                }
            }
            lossLimbs.high &+= lossWords.0
            lossLimbs.low &+= lossWords.1
        case .fast:
            let target = floats.pointer
            for i in 0..<count {
                let value = bytes.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                target[i] = isEmpty ? value : target[i] + value
            }
            floatLossSum += Double(bitPattern: UInt64(bitPattern: lossWords.0))
        }
        self.samples += samples
        self.correct += correct
        self.overflowed = self.overflowed || overflowed
        isEmpty = false
    }

    /// Writes `sum / samples`, the mean gradient, as Floats; returns false if the run has diverged.
    @discardableResult
    public func writeMean(into mean: UnsafeMutablePointer<Float>) -> Bool {
        precondition(samples > 0, "mean of an empty gradient sum")
        var finite = true
        switch reduction {
        case .exact:
            // Each pair is read in its canonical form (one pass, the stored limbs left as they are).
            let high = self.high, low = self.low, divisor = Double(samples)
            for i in 0..<count {
                let (h, l) = Self.canonical(high[i], low[i])
                mean[i] = Float(Self.value(h, l) / divisor)
            }
        case .fast:
            let divisor = Float(samples), source = floats.pointer
            for i in 0..<count { mean[i] = source[i] / divisor }
            finite = floatsAreFinite
        }
        return finite && !overflowed
    }

    /// Fast mode: whether every Float sum is finite (an integer pass over the exponent bits, which vectorises).
    public var floatsAreFinite: Bool {
        let bits = UnsafeRawPointer(floats.pointer).assumingMemoryBound(to: UInt32.self)
        // An all-ones exponent plus one carries into bit 31; any other exponent does not (no branch: vectorises).
        var special: UInt32 = 0
        for i in 0..<count { special |= (bits[i] & 0x7F80_0000) &+ 0x0080_0000 }
        return special & 0x8000_0000 == 0 && !overflowed
    }

    /// The exact limbs of `value` (rounded at 2⁻⁷¹) and 1 if `value` is not finite or beyond `limit`.
    @inline(__always)
    static func limbs(_ value: Double) -> (high: Int64, low: Int64, outside: Int64) {
        let shifted = value + highMagic
        let rest = value - (shifted - highMagic)  // exact: |rest| ≤ 2⁻²¹
        return (Int64(bitPattern: shifted.bitPattern) &- highMagicBits,
                Int64(bitPattern: (rest + lowMagic).bitPattern) &- lowMagicBits,
                abs(value) < limit ? 0 : 1)
    }

    /// The unique limbs of the same value with `low` in [0, 2⁵¹).
    @inline(__always)
    static func canonical(_ high: Int64, _ low: Int64) -> (Int64, Int64) {
        let carry = low >> 51
        return (high &+ carry, low &- (carry << 51))
    }

    /// A canonical pair's value, as a Double.
    @inline(__always)
    static func value(_ high: Int64, _ low: Int64) -> Double { Double(high) * 0x1p-20 + Double(low) * 0x1p-71 }
}
