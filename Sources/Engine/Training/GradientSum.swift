/// How micro-shard gradients are added up.
public enum Reduction: String, Sendable, CaseIterable {
    /// Fixed-point sums: the same bits for any grouping of micro-shards, so for any number of workers.
    case exact
    /// Float sums of one GEMM per slice: fastest, but the bits depend on how the batch was split.
    case fast
}

/// The running sum of gradients and statistics over the slices of one batch, combined by adding.
///
/// In `.exact` mode every value enters binned fixed-point limbs (`ExactBins`): per parameter a window index and two
/// 64-bit integer limbs. Integer addition is associative (wrapping included) and a sum's window is the highest any
/// of its values needs, so any grouping of micro-shards over any number of processes gives the same limbs, the same
/// canonical form and so the same Float mean — for every finite float32 gradient, from subnormals to 3.4e38.
///
/// Why fixed point rather than a canonical reduction tree: a tree only works when every process owns whole
/// subtrees, which fights speed-proportional shard ranges; integer sums let a worker send one buffer for any range.
/// Why two limbs filled by magic-number rounding rather than one Int128: the split is a handful of double-precision
/// adds that vectorise on any x86-64, and the limbs need no carries while adding.
/// Cost: one such pass per micro-shard, and 17 bytes per parameter on the wire instead of 4.
/// Only a NaN or ∞ marks the sum `overflowed` (the run has diverged). Each micro-shard adds less than 2⁵¹ to a
/// limb, so up to `maximumMicroShards` micro-shards add without the true sum leaving 64 bits.
public final class GradientSum {
    /// The largest magnitude one micro-shard's value adds to either limb (after any raise of its window).
    public static let limbLimit: Int64 = 1 << 51
    /// Micro-shards one exact sum may hold (job validation keeps batch_size / micro_shard within it).
    public static let maximumMicroShards = 4096
    /// Bytes per parameter on the wire: exact, two Int64 limbs and a window byte; fast, one Float32.
    public static func bytesPerParameter(_ reduction: Reduction) -> Int { reduction == .exact ? 17 : 4 }
    /// The windows a gradient and a loss sum may have (anything else is not a real result).
    public static let gradientWindows = Int(ExactBins.lowestWindow)...Int(ExactBins.highestFloatWindow)
    public static let lossWindows = Int(ExactBins.lowestWindow)...Int(ExactBins.highestWindow)

    public let reduction: Reduction
    public let count: Int
    /// Exact mode: all `high` limbs, all `low` limbs, then every parameter's window as an Int8, in the parameter
    /// layout, in one allocation so it goes to the wire as it is (empty in fast mode).
    private let storage: Buffer<Int64>
    /// Fast mode: Float gradient sums in the parameter layout (empty in exact mode).
    public let floats: Buffer<Float>
    /// Exact mode: the loss sum's limbs and window.
    public private(set) var lossLimbs: (high: Int64, low: Int64, window: Int32) = (0, 0, ExactBins.lowestWindow)
    /// Fast mode: sum of per-sample losses.
    public private(set) var floatLossSum = 0.0
    public private(set) var samples = 0
    public private(set) var correct = 0
    /// True once an added value was NaN or infinite.
    public private(set) var overflowed = false
    /// Nothing added since `reset`: the next addition overwrites instead of adding, so reset needs no memset.
    public private(set) var isEmpty = true

    public init(count: Int, reduction: Reduction) {
        self.count = count
        self.reduction = reduction
        storage = Buffer(count: reduction == .exact ? 2 * count + (count + 7) / 8 : 0)
        floats = Buffer(count: reduction == .fast ? count : 0)
    }

    private var high: UnsafeMutablePointer<Int64> { storage.pointer }
    private var low: UnsafeMutablePointer<Int64> { storage.pointer + count }
    private var windows: UnsafeMutablePointer<Int8> {
        UnsafeMutableRawPointer(storage.pointer + 2 * count).assumingMemoryBound(to: Int8.self)
    }

    /// The sum of per-sample losses.
    public var lossSum: Double {
        guard reduction == .exact else { return floatLossSum }
        return ExactBins.value(lossLimbs.high, lossLimbs.low, window: lossLimbs.window)
    }

    public func reset() {
        isEmpty = true
        lossLimbs = (0, 0, ExactBins.lowestWindow)
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
        let g0 = gradients[0], g1 = gradients.count > 1 ? gradients[1] : g0
        let g2 = gradients.count > 2 ? gradients[2] : g0, g3 = gradients.count > 3 ? gradients[3] : g0
        let group = (g0, g1, g2, g3)
        let largest: UInt32
        // One specialised loop per count (generic over it, so each is compiled with its count a constant).
        switch gradients.count {
        case 1: largest = accumulate(Shards1.self, group)
        case 2: largest = accumulate(Shards2.self, group)
        case 3: largest = accumulate(Shards3.self, group)
        default: largest = accumulate(Shards4.self, group)
        }
        var finite = largest < 0x7F80_0000
        for s in statistics {
            finite = finite && s.lossSum.isFinite
            if s.lossSum.isFinite { addLoss(high: 0, low: 0, window: ExactBins.window(of: s.lossSum), plus: s.lossSum) }
            record(s, bad: false)
        }
        overflowed = overflowed || !finite
    }

    private typealias ShardGroup = (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                    UnsafePointer<Float>)

    @inline(__always)
    private static func bits(_ values: UnsafePointer<Float>) -> UnsafePointer<UInt32> {
        UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
    }

    /// Adds limbs in window `window`, and `value`'s deposits, to the loss sum, raising its window where needed.
    private func addLoss(high: Int64, low: Int64, window: Int32, plus value: Double = 0) {
        let target = max(window, lossLimbs.window)
        let mine = ExactBins.raise(lossLimbs.high, lossLimbs.low, by: target - lossLimbs.window)
        let theirs = ExactBins.raise(high, low, by: target - window)
        let deposit = ExactBins.deposits(value, window: target)
        lossLimbs = (mine.high &+ theirs.high &+ deposit.high, mine.low &+ theirs.low &+ deposit.low, target)
    }

    /// For every parameter: raises its window to the one its largest new value needs and adds the values'
    /// deposits in it (or, when empty, stores them). Returns the largest magnitude bits seen (a Float's bits with
    /// the sign cleared order like its magnitude; NaN and ∞ are 0x7F80_0000 and above).
    @inline(__always)
    private func accumulate<Count: ShardCount>(_: Count.Type, _ group: ShardGroup) -> UInt32 {
        let high = self.high, low = self.low, windows = self.windows
        var largest: UInt32 = 0
        if isEmpty {
            for i in 0..<count {
                let (magnitude, window, deposit) = Self.deposits(Count.self, group, i, floor: ExactBins.lowestWindow)
                largest = max(largest, magnitude)
                high[i] = deposit.high
                low[i] = deposit.low
                windows[i] = Int8(truncatingIfNeeded: window)
            }
        } else {
            for i in 0..<count {
                let old = Int32(windows[i])
                let (magnitude, window, deposit) = Self.deposits(Count.self, group, i, floor: old)
                largest = max(largest, magnitude)
                let kept = ExactBins.raise(high[i], low[i], by: window &- old)
                high[i] = kept.high &+ deposit.high
                low[i] = kept.low &+ deposit.low
                windows[i] = Int8(truncatingIfNeeded: window)
            }
        }
        return largest
    }

    /// Parameter `i` of the group's first `Count` micro-shards: their largest magnitude bits, the window they
    /// need (at least `floor`), and the sum of their deposits in it.
    @inline(__always)
    private static func deposits<Count: ShardCount>(_: Count.Type, _ group: ShardGroup, _ i: Int, floor: Int32)
        -> (UInt32, Int32, (high: Int64, low: Int64)) {
        func magnitude(_ values: UnsafePointer<Float>) -> UInt32 {
            UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)[i] & 0x7FFF_FFFF
        }
        var largest = magnitude(group.0)
        if Count.value > 1 { largest = max(largest, magnitude(group.1)) }
        if Count.value > 2 { largest = max(largest, magnitude(group.2)) }
        if Count.value > 3 { largest = max(largest, magnitude(group.3)) }
        let window = max(floor, ExactBins.window(ofMagnitude: largest)), scale = ExactBins.scale(window)
        var total = ExactBins.deposits(Double(group.0[i]) * scale)
        if Count.value > 1 { total = sum(total, ExactBins.deposits(Double(group.1[i]) * scale)) }
        if Count.value > 2 { total = sum(total, ExactBins.deposits(Double(group.2[i]) * scale)) }
        if Count.value > 3 { total = sum(total, ExactBins.deposits(Double(group.3[i]) * scale)) }
        return (largest, window, total)
    }

    @inline(__always)
    private static func sum(_ a: (high: Int64, low: Int64), _ b: (high: Int64, low: Int64)) -> (high: Int64, low: Int64) {
        (a.high &+ b.high, a.low &+ b.low)
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
        add(bytes: other.valueBytes, samples: other.samples, correct: other.correct, lossWords: other.lossWords,
            overflowed: other.overflowed)
    }

    /// The loss sum as words for the wire: exact, its limbs and window; fast, the Float64's bits.
    public var lossWords: LossWords {
        reduction == .exact
            ? LossWords(high: lossLimbs.high, low: lossLimbs.low, window: Int8(truncatingIfNeeded: lossLimbs.window))
            : LossWords(high: Int64(bitPattern: floatLossSum.bitPattern), low: 0, window: 0)
    }

    /// The values as bytes for the wire: exact, all high limbs, all low limbs, then the windows; fast, the Floats.
    public var valueBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: reduction == .exact ? UnsafeRawPointer(storage.pointer) : UnsafeRawPointer(floats.pointer),
                               count: Self.bytesPerParameter(reduction) * count)
    }

    /// Adds a sum another process computed, read in place from its bytes (`valueBytes`' layout and `lossWords`).
    /// Exact windows must lie in `gradientWindows` and `lossWindows` (a result from the wire is checked first).
    public func add(bytes: UnsafeRawBufferPointer, samples: Int, correct: Int, lossWords: LossWords,
                    overflowed: Bool) {
        precondition(bytes.count == Self.bytesPerParameter(reduction) * count, "gradient bytes do not fit the model")
        switch reduction {
        case .exact:
            let high = self.high, low = self.low, windows = self.windows
            let theirWindows = (bytes.baseAddress! + 16 * count).assumingMemoryBound(to: Int8.self)
            if isEmpty {
                UnsafeMutableRawPointer(storage.pointer).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                lossLimbs = (lossWords.high, lossWords.low, Int32(lossWords.window))
            } else {
                if Int(bitPattern: bytes.baseAddress) % 8 == 0 {
                    let theirs = bytes.baseAddress!.assumingMemoryBound(to: Int64.self)
                    for i in 0..<count {
                        (high[i], low[i], windows[i]) = Self.merge(high[i], low[i], windows[i],
                                                                   theirs[i], theirs[count + i], theirWindows[i])
                    }
                } else {
                    for i in 0..<count {
                        (high[i], low[i], windows[i]) = Self.merge(
                            high[i], low[i], windows[i], bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self),
                            bytes.loadUnaligned(fromByteOffset: 8 * (count + i), as: Int64.self), theirWindows[i])
                    }
                }
                addLoss(high: lossWords.high, low: lossWords.low, window: Int32(lossWords.window))
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

    /// Two parameters' limbs brought to the higher of their windows and added.
    @inline(__always)
    private static func merge(_ high: Int64, _ low: Int64, _ window: Int8, _ theirHigh: Int64, _ theirLow: Int64,
                              _ theirWindow: Int8) -> (Int64, Int64, Int8) {
        let target = max(window, theirWindow)
        let mine = ExactBins.raise(high, low, by: Int32(target &- window))
        let theirs = ExactBins.raise(theirHigh, theirLow, by: Int32(target &- theirWindow))
        return (mine.high &+ theirs.high, mine.low &+ theirs.low, target)
    }

    /// Writes `sum / samples`, the mean gradient, as Floats; returns false if the run has diverged (a NaN or ∞
    /// was added, or the mean lies beyond float32).
    @discardableResult
    public func writeMean(into mean: UnsafeMutablePointer<Float>) -> Bool {
        precondition(samples > 0, "mean of an empty gradient sum")
        switch reduction {
        case .exact:
            // Each pair is read in its canonical form (one pass, the stored limbs left as they are).
            let high = self.high, low = self.low, windows = self.windows, divisor = Double(samples)
            for i in 0..<count {
                mean[i] = Float(ExactBins.value(high[i], low[i], window: Int32(windows[i])) / divisor)
            }
            return Self.allFinite(mean, count: count) && !overflowed
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
        let bits = Self.bits(values)
        // An all-ones exponent plus one carries into bit 31; any other exponent does not (no branch: vectorises).
        var special: UInt32 = 0
        for i in 0..<count { special |= (bits[i] & 0x7F80_0000) &+ 0x0080_0000 }
        return special & 0x8000_0000 == 0
    }
}

/// How many micro-shards one pass of `GradientSum.addExact` adds, as a type, so each count gets its own loop.
private protocol ShardCount { static var value: Int { get } }
private enum Shards1: ShardCount { static var value: Int { 1 } }
private enum Shards2: ShardCount { static var value: Int { 2 } }
private enum Shards3: ShardCount { static var value: Int { 3 } }
private enum Shards4: ShardCount { static var value: Int { 4 } }

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
