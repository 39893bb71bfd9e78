import CExactSum

/// How micro-shard gradients are added up.
public enum Reduction: String, Sendable, CaseIterable {
    /// Fixed-point sums: the same bits for any grouping of micro-shards, so for any number of workers.
    case exact
    /// Float sums of one GEMM per slice: fastest, but the bits depend on how the batch was split.
    case fast
}

/// The running sum of gradients and statistics over the slices of one batch, combined by adding.
///
/// In `.exact` mode every value enters binned fixed-point limbs (the arithmetic and its proof sketch are in
/// Sources/CExactSum): per parameter a window index and two 64-bit integer limbs. Integer addition is associative
/// (wrapping included) and a sum's window is the highest any of its values needs, so any grouping of micro-shards
/// over any number of processes gives the same limbs, the same canonical form and so the same Float mean — for
/// every finite float32 gradient, from subnormals to 3.4e38.
///
/// Why fixed point rather than a canonical reduction tree: a tree only works when every process owns whole
/// subtrees, which fights speed-proportional shard ranges; integer sums let a worker send one buffer for any range.
/// Why two limbs filled by magic-number rounding rather than one Int128: the split is a handful of double-precision
/// adds that vectorise on any x86-64, and the limbs need no carries while adding.
/// Cost: one such pass per micro-shard, and 17 bytes per parameter on the wire instead of 4.
/// Only a NaN or ∞ marks the sum `overflowed` (the run has diverged). Each micro-shard adds at most 2⁵⁰ to a
/// limb, so up to `maximumMicroShards` (2¹²) micro-shards add without the true sum leaving 64 bits.
public final class GradientSum {
    /// The largest magnitude one value's deposit adds to either limb (2⁵⁰: see Sources/CExactSum).
    public static let depositLimit: Int64 = 1 << 50
    /// Micro-shards one exact sum may hold (job validation keeps batch_size / micro_shard within it).
    public static let maximumMicroShards = 4096
    /// Bytes per parameter on the wire: exact, two Int64 limbs and a window byte; fast, one Float32.
    public static func bytesPerParameter(_ reduction: Reduction) -> Int { reduction == .exact ? 17 : 4 }
    /// The windows a gradient and a loss sum may have (anything else is not a real result).
    public static let gradientWindows = CEXACT_LOWEST_WINDOW...CEXACT_HIGHEST_FLOAT_WINDOW
    public static let lossWindows = CEXACT_LOWEST_WINDOW...CEXACT_HIGHEST_WINDOW

    public let reduction: Reduction
    public let count: Int
    /// Exact mode: all `high` limbs, all `low` limbs, then every parameter's window as an Int8, in the parameter
    /// layout, in one allocation so it goes to the wire as it is (empty in fast mode).
    private let storage: Buffer<Int64>
    /// Fast mode: Float gradient sums in the parameter layout (empty in exact mode).
    public let floats: Buffer<Float>
    /// Exact mode: the loss sum's limbs and window.
    private var lossLimbs = cexact_scalar_empty()
    /// Fast mode: sum of per-sample losses.
    public private(set) var floatLossSum = 0.0
    public private(set) var samples = 0
    public private(set) var correct = 0
    /// True once an added value was NaN or infinite.
    public private(set) var overflowed = false
    /// Nothing added since `reset`: the next addition overwrites instead of adding, so reset needs no memset.
    public private(set) var isEmpty = true
    /// In-process sums (the trainer sets it): a sum given a single micro-shard keeps that micro-shard's Floats
    /// rather than limbs. One value is exact in its window, so the mean taken straight from the Floats has the bits
    /// the limbs would give; anything added next turns the Floats into limbs first. Saves both limb passes when a
    /// batch is one micro-shard.
    public var keepsLoneMicroShard = false {
        // Allocated when asked for, so no training step allocates it.
        didSet { if keepsLoneMicroShard && reduction == .exact && loneFloats.count != count { loneFloats = Buffer(count: count) } }
    }
    /// The lone micro-shard's Floats, while `holdsLoneFloats`.
    private var loneFloats = Buffer<Float>(count: 0)
    private var holdsLoneFloats = false

    public init(count: Int, reduction: Reduction) {
        self.count = count
        self.reduction = reduction
        storage = Buffer(count: reduction == .exact ? 2 * count + (count + 7) / 8 : 0)
        floats = Buffer(count: reduction == .fast ? count : 0)
    }

    private var windows: UnsafeMutablePointer<Int8> {
        UnsafeMutableRawPointer(storage.pointer + 2 * count).assumingMemoryBound(to: Int8.self)
    }

    /// The sum of per-sample losses.
    public var lossSum: Double {
        guard reduction == .exact else { return floatLossSum }
        return cexact_scalar_value(lossLimbs)
    }

    public func reset() {
        isEmpty = true
        holdsLoneFloats = false
        lossLimbs = cexact_scalar_empty()
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

    /// Exact mode: adds up to four micro-shards' Float gradients in one pass. Each parameter's window is raised to
    /// the largest its values need, then each value's deposits are computed on their own (so the bits are those of
    /// adding them one by one) and summed in registers; the stored limbs are read and written once, which quarters
    /// the memory traffic of the accumulators.
    public func addExact(_ gradients: UnsafeBufferPointer<UnsafePointer<Float>>,
                         _ statistics: UnsafeBufferPointer<SliceStatistics>) {
        precondition(reduction == .exact && (1...4).contains(gradients.count) && gradients.count == statistics.count,
                     "addExact takes one to four exact micro-shards")
        var finite: Bool
        if isEmpty && keepsLoneMicroShard && gradients.count == 1 {
            loneFloats.pointer.update(from: gradients[0], count: count)
            holdsLoneFloats = true
            finite = Self.allFinite(loneFloats.pointer, count: count)
        } else {
            convertLoneFloats()
            // An array of pointers is an array of optional pointers to C (the same layout).
            let pointers = UnsafeRawPointer(gradients.baseAddress!).assumingMemoryBound(to: UnsafePointer<Float>?.self)
            let largest = cexact_add(limbPointer(0), limbPointer(count), windows, pointers, Int32(gradients.count),
                                     isEmpty ? 1 : 0, count)
            finite = largest < 0x7F80_0000
        }
        for s in statistics {
            finite = finite && s.lossSum.isFinite
            if s.lossSum.isFinite { lossLimbs = cexact_scalar_add(lossLimbs, s.lossSum) }
            record(s, bad: false)
        }
        overflowed = overflowed || !finite
    }

    /// Turns a lone micro-shard's Floats into limbs (before anything else is added, or the limbs are read).
    private func convertLoneFloats() {
        guard holdsLoneFloats else { return }
        holdsLoneFloats = false
        var lone: UnsafePointer<Float>? = UnsafePointer(loneFloats.pointer)
        _ = cexact_add(limbPointer(0), limbPointer(count), windows, &lone, 1, 1, count)
    }

    /// The limbs from parameter `offset` of the high limbs on (`count`: the low limbs), as the C loops take them.
    private func limbPointer(_ offset: Int) -> UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(storage.pointer + offset).assumingMemoryBound(to: UInt64.self)
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
        precondition(other.count == count && other.reduction == reduction && other !== self,
                     "adding unlike gradient sums, or a sum to itself")
        guard !other.isEmpty else { return }
        add(bytes: other.valueBytes, samples: other.samples, correct: other.correct, lossWords: other.lossWords,
            overflowed: other.overflowed)
    }

    /// The loss sum as words for the wire: exact, its limbs and window; fast, the Float64's bits.
    public var lossWords: LossWords {
        reduction == .exact
            ? LossWords(high: Int64(bitPattern: lossLimbs.high), low: Int64(bitPattern: lossLimbs.low),
                        window: Int8(truncatingIfNeeded: lossLimbs.window))
            : LossWords(high: Int64(bitPattern: floatLossSum.bitPattern), low: 0, window: 0)
    }

    /// The values as bytes for the wire: exact, all high limbs, all low limbs, then the windows; fast, the Floats.
    public var valueBytes: UnsafeRawBufferPointer {
        convertLoneFloats()
        return UnsafeRawBufferPointer(start: reduction == .exact ? UnsafeRawPointer(storage.pointer) : UnsafeRawPointer(floats.pointer),
                               count: Self.bytesPerParameter(reduction) * count)
    }

    /// Adds a sum another process computed, read in place from its bytes (`valueBytes`' layout and `lossWords`).
    /// Exact windows must lie in `gradientWindows` and `lossWindows` (a result from the wire is checked first).
    public func add(bytes: UnsafeRawBufferPointer, samples: Int, correct: Int, lossWords: LossWords,
                    overflowed: Bool) {
        precondition(bytes.count == Self.bytesPerParameter(reduction) * count, "gradient bytes do not fit the model")
        switch reduction {
        case .exact:
            convertLoneFloats()
            let theirs = cexact_scalar(high: UInt64(bitPattern: lossWords.high), low: UInt64(bitPattern: lossWords.low),
                                       window: Int32(lossWords.window))
            if isEmpty {
                UnsafeMutableRawPointer(storage.pointer).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                lossLimbs = theirs
            } else {
                cexact_merge(limbPointer(0), limbPointer(count), windows, bytes.baseAddress!, count)
                lossLimbs = cexact_scalar_merge(lossLimbs, theirs)
            }
        case .fast:
            let target = floats.pointer
            for i in 0..<count {
                let value = bytes.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                target[i] = isEmpty ? value : target[i] + value
            }
            floatLossSum += Double(bitPattern: UInt64(bitPattern: lossWords.high))
        }
        self.samples += samples
        self.correct += correct
        self.overflowed = self.overflowed || overflowed
        isEmpty = false
    }

    /// Writes the mean gradient, `sum × (1 / samples)`, as Floats; returns false if the run has diverged (a NaN or ∞
    /// was added, or the mean lies beyond float32).
    @discardableResult
    public func writeMean(into mean: UnsafeMutablePointer<Float>) -> Bool {
        precondition(samples > 0, "mean of an empty gradient sum")
        switch reduction {
        case .exact where holdsLoneFloats:
            // As cexact_mean computes it: one value's limbs are the value, so the bits are the same.
            let lone = loneFloats.pointer, reciprocal = 1 / Double(samples)
            // + 0 turns −0 into +0, as the limbs do (they hold no sign for zero); every other value is unchanged.
            for i in 0..<count { mean[i] = Float(Double(lone[i]) * reciprocal) + 0 }
            return Self.allFinite(mean, count: count) && !overflowed
        case .exact:
            // Each pair is read in its canonical form (one pass, the stored limbs left as they are).
            return cexact_mean(limbPointer(0), limbPointer(count), windows, mean, count, Double(samples)) == 1
                && !overflowed
        case .fast:
            let divisor = Float(samples), source = floats.pointer
            for i in 0..<count { mean[i] = source[i] / divisor }
            return floatsAreFinite
        }
    }

    /// Fast mode: whether every Float sum is finite.
    public var floatsAreFinite: Bool { Self.allFinite(floats.pointer, count: count) && !overflowed }

    /// Whether every Float is finite (an integer pass over the exponent bits, which vectorises).
    private static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        let bits = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
        // An all-ones exponent plus one carries into bit 31; any other exponent does not (no branch: vectorises).
        var special: UInt32 = 0
        for i in 0..<count { special |= (bits[i] & 0x7F80_0000) &+ 0x0080_0000 }
        return special & 0x8000_0000 == 0
    }
}

/// A loss sum as it travels: exact, its limbs and window; fast, the Float64's bits in `high`.
public struct LossWords: Equatable, Sendable {
    public var high: Int64
    public var low: Int64
    public var window: Int8

    public init(high: Int64, low: Int64, window: Int8) {
        self.high = high
        self.low = low
        self.window = window
    }
}
