/// How micro-shard gradients are added up.
public enum Reduction: String, Sendable, CaseIterable {
    /// Fixed-point sums: the same bits for any grouping of micro-shards, so for any number of workers.
    case exact
    /// Float sums of one GEMM per slice: fastest, but the bits depend on how the batch was split.
    case fast
}

/// The running sum of gradients and statistics over the slices of one batch, combined by adding.
///
/// In `.exact` mode each Float is converted to a 128-bit fixed-point integer with 64 fractional bits; integers add
/// associatively, so any grouping of micro-shards over any number of processes gives the same bits.
/// Why fixed point rather than a canonical reduction tree: a tree only works when every process owns whole
/// subtrees, which fights speed-proportional shard ranges; integer sums let a worker send one buffer for any range.
/// Cost: one conversion pass per micro-shard and 16 bytes per parameter on the wire instead of 4.
/// Range: magnitudes below 2⁻⁶⁴ (≈5e−20) are truncated toward zero, far below a Float's resolution at any
/// magnitude that moves a weight; a micro-shard value of magnitude 2⁴⁰ (≈1.1e12) or more, or a NaN or ∞, marks the
/// sum `overflowed` (the run has diverged) instead of wrapping silently. The 2²³ headroom above that bound lets
/// eight million micro-shards add without overflow.
public final class GradientSum {
    /// 2⁶⁴ as a Double: the fixed-point scale.
    static let scale = 0x1p64
    /// Largest magnitude one added value may have in exact mode.
    static let limit = 0x1p40

    public let reduction: Reduction
    public let count: Int
    /// Exact mode: fixed-point gradient sums in the parameter layout (empty in fast mode).
    public let fixed: Buffer<Int128>
    /// Fast mode: Float gradient sums in the parameter layout (empty in exact mode).
    public let floats: Buffer<Float>
    /// Exact mode: fixed-point sum of per-sample losses.
    public private(set) var fixedLossSum: Int128 = 0
    /// Fast mode: sum of per-sample losses.
    public private(set) var floatLossSum = 0.0
    public private(set) var samples = 0
    public private(set) var correct = 0
    /// True once an added value was non-finite (or, in exact mode, beyond `limit`).
    public private(set) var overflowed = false

    public init(count: Int, reduction: Reduction) {
        self.count = count
        self.reduction = reduction
        fixed = Buffer(count: reduction == .exact ? count : 0)
        floats = Buffer(count: reduction == .fast ? count : 0)
    }

    /// The sum of per-sample losses.
    public var lossSum: Double { reduction == .exact ? Double(fixedLossSum) / Self.scale : floatLossSum }

    public func reset() {
        fixed.zero()
        floats.zero()
        fixedLossSum = 0
        floatLossSum = 0
        samples = 0
        correct = 0
        overflowed = false
    }

    /// Adds one slice's Float gradient sum and statistics.
    public func add(gradient: UnsafePointer<Float>, statistics: SliceStatistics) {
        var bad = false
        switch reduction {
        case .exact:
            let target = fixed.pointer
            for i in 0..<count {
                let (value, ok) = Self.fixedPoint(Double(gradient[i]))
                target[i] &+= value
                bad = bad || !ok
            }
            let (loss, ok) = Self.fixedPoint(statistics.lossSum)
            fixedLossSum &+= loss
            bad = bad || !ok
        case .fast:
            let target = floats.pointer
            for i in 0..<count { target[i] += gradient[i] }
            floatLossSum += statistics.lossSum
            bad = !statistics.lossSum.isFinite
        }
        samples += statistics.samples
        correct += statistics.correct
        overflowed = overflowed || bad
    }

    /// Adds another sum of the same mode and size (another worker's slice of the batch).
    public func add(_ other: GradientSum) {
        precondition(other.count == count && other.reduction == reduction, "adding unlike gradient sums")
        switch reduction {
        case .exact:
            let target = fixed.pointer, source = other.fixed.pointer
            for i in 0..<count { target[i] &+= source[i] }
            fixedLossSum &+= other.fixedLossSum
        case .fast:
            let target = floats.pointer, source = other.floats.pointer
            for i in 0..<count { target[i] += source[i] }
            floatLossSum += other.floatLossSum
        }
        samples += other.samples
        correct += other.correct
        overflowed = overflowed || other.overflowed
    }

    /// Writes `sum / samples`, the mean gradient, as Floats; returns false if any element is not finite.
    @discardableResult
    public func writeMean(into mean: UnsafeMutablePointer<Float>) -> Bool {
        precondition(samples > 0, "mean of an empty gradient sum")
        var finite = true
        switch reduction {
        case .exact:
            let divisor = Self.scale * Double(samples), source = fixed.pointer
            for i in 0..<count { mean[i] = Float(Double(source[i]) / divisor) }
        case .fast:
            let divisor = Float(samples), source = floats.pointer
            for i in 0..<count {
                mean[i] = source[i] / divisor
                finite = finite && mean[i].isFinite
            }
        }
        return finite && !overflowed
    }

    /// `value · 2⁶⁴` truncated toward zero, and whether `value` was finite and within `limit`.
    @inline(__always)
    static func fixedPoint(_ value: Double) -> (Int128, Bool) {
        let magnitude = abs(value)
        guard magnitude < limit else { return (0, false) }  // NaN fails this comparison too
        let whole = magnitude.rounded(.towardZero)
        let fraction = (magnitude - whole) * scale  // exact: a power-of-two scale of an exact difference
        let bits = UInt128(UInt64(whole)) << 64 | UInt128(UInt64(fraction))
        let fixed = Int128(bitPattern: bits)
        return (value < 0 ? 0 &- fixed : fixed, true)
    }
}
