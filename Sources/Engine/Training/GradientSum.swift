import Dispatch
import CExactSum

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
/// Cost: one such pass per micro-shard, and 17 bytes per parameter on the wire instead of 4 — or a worker's few
/// micro-shards as their Floats (`add(floats:summary:)`), which the mean takes in the same way as the trainer's own.
/// Only a NaN or ∞ marks the sum `overflowed` (the run has diverged). Each micro-shard adds at most 2⁵⁰ to a
/// limb, so up to `maximumMicroShards` (2¹²) micro-shards add without the true sum leaving 64 bits.
package final class GradientSum {
    /// The largest magnitude one value's deposit adds to either limb (2⁵⁰: see Sources/CExactSum).
    package static let depositLimit: Int64 = 1 << 50
    /// Micro-shards one exact sum may hold (job validation keeps batch_size / micro_shard within it).
    package static let maximumMicroShards = 4096
    /// Bytes per parameter of a sum's values: exact, two Int64 limbs and a window byte; fast, one Float32.
    package static func bytesPerParameter(_ reduction: Reduction) -> Int { reduction == .exact ? Int(CEXACT_BYTES_PER_PARAMETER) : 4 }
    /// The windows a gradient and a loss sum may have (anything else is not a real result).
    package static let gradientWindows = CEXACT_LOWEST_WINDOW...CEXACT_HIGHEST_FLOAT_WINDOW
    package static let lossWindows = CEXACT_LOWEST_WINDOW...CEXACT_HIGHEST_WINDOW

    package let reduction: Reduction
    package let count: Int
    /// Exact mode: all `high` limbs, all `low` limbs, then every parameter's window as an Int8, in the parameter
    /// layout, in one allocation so it goes to the wire as it is (empty in fast mode).
    private let storage: UnsafeMutablePointer<Int64>
    /// Fast mode: Float gradient sums in the parameter layout (empty in exact mode).
    package let floats: UnsafeMutablePointer<Float>
    /// What keeps the memory of `storage` or `floats`: this sum's own buffer, or the caller's owner of it.
    private let owned: AnyObject?
    /// Exact mode: the loss sum's limbs and window.
    private var lossLimbs = cexact_scalar_empty()
    /// Fast mode: sum of per-sample losses.
    package private(set) var floatLossSum = 0.0
    package private(set) var samples = 0
    package private(set) var correct = 0
    /// True once an added value was NaN or infinite (held Floats are looked at when they are taken in).
    package var overflowed: Bool {
        settleHeld()
        return sawNonFinite
    }
    private var sawNonFinite = false
    /// Nothing added since `reset`.
    package private(set) var isEmpty = true
    /// Exact mode: the limbs hold nothing yet, so the next pass overwrites them (reset needs no memset).
    private var limbsEmpty = true
    /// In-process and coordinator sums (the trainer sets it): the last micro-shards' Floats and other processes'
    /// sums are held by reference rather than added at once, and a mean takes them in with the limbs in one
    /// blocked pass (`cexact_combine`), so the limbs are neither written nor read again for them: a batch of a few
    /// micro-shards, or the last workers' results, costs one read of each input and one write of the mean. The
    /// caller keeps what it handed over untouched until the sum is next read, added to or reset — as the trainer
    /// does, reading the mean right after a step's sums arrive.
    package var holdsInputs = false
    /// What is held: at most `heldCapacity` Float arrays and as many wire sums.
    private let heldFloats = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: GradientSum.heldCapacity)
    private let heldSums = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: GradientSum.heldCapacity)
    private var heldFloatCount = 0, heldSumCount = 0
    package static let heldCapacity = 8
    /// Threads a mean of held inputs may use (the coordinator sets it: its workers wait idle meanwhile).
    package var meanThreads = 1
    /// Whether each run of a threaded mean was finite.
    private let partResults = UnsafeMutablePointer<Bool>.allocate(capacity: maximumParts)

    package convenience init(count: Int, reduction: Reduction) {
        let owned = Buffer<Int64>(count: (Self.bytesPerParameter(reduction) * count + 7) / 8)
        self.init(count: count, reduction: reduction, memory: UnsafeMutableRawPointer(owned.pointer), owned: owned)
    }

    /// A sum kept in `memory` (8-byte aligned, `bytesPerParameter(reduction) × count` bytes) that `owner` keeps
    /// alive, and the sum keeps `owner`: a worker's result region, so a result is computed where the coordinator
    /// reads it.
    package convenience init(count: Int, reduction: Reduction, in memory: UnsafeMutableRawBufferPointer,
                            keeping owner: AnyObject) {
        precondition(memory.count >= Self.bytesPerParameter(reduction) * count && Int(bitPattern: memory.baseAddress) % 8 == 0,
                     "memory for a gradient sum is too small or misaligned")
        self.init(count: count, reduction: reduction, memory: memory.baseAddress!, owned: owner)
    }

    private init(count: Int, reduction: Reduction, memory: UnsafeMutableRawPointer, owned: AnyObject?) {
        self.count = count
        self.reduction = reduction
        self.owned = owned
        // Each mode reads its memory as one type only (the other pointer is never used).
        if reduction == .exact {
            storage = memory.bindMemory(to: Int64.self, capacity: 2 * count)
            floats = UnsafeMutablePointer(bitPattern: 8)!
        } else {
            floats = memory.bindMemory(to: Float.self, capacity: count)
            storage = UnsafeMutablePointer(bitPattern: 8)!
        }
    }

    deinit {
        heldFloats.deallocate()
        heldSums.deallocate()
        partResults.deallocate()
    }

    private var windows: UnsafeMutablePointer<Int8> {
        (UnsafeMutableRawPointer(storage) + cexact_windows_offset(count)).assumingMemoryBound(to: Int8.self)
    }

    /// The sum of per-sample losses.
    package var lossSum: Double {
        guard reduction == .exact else { return floatLossSum }
        return cexact_scalar_value(lossLimbs)
    }

    package func reset() {
        isEmpty = true
        limbsEmpty = true
        heldFloatCount = 0
        heldSumCount = 0
        lossLimbs = cexact_scalar_empty()
        floatLossSum = 0
        samples = 0
        correct = 0
        sawNonFinite = false
    }

    /// Adds one slice's Float gradient sum and statistics.
    package func add(gradient: UnsafePointer<Float>, statistics: SliceStatistics) {
        switch reduction {
        case .exact:
            var one = gradient, stats = statistics
            withUnsafePointer(to: &one) { g in
                withUnsafePointer(to: &stats) {
                    addExact(.init(start: g, count: 1), .init(start: $0, count: 1), final: false)
                }
            }
        case .fast:
            let target = floats
            if isEmpty {
                if UnsafePointer(target) != gradient { target.update(from: gradient, count: count) }
            } else {
                for i in 0..<count { target[i] += gradient[i] }
            }
            floatLossSum += statistics.lossSum
            addCounts(samples: statistics.samples, correct: statistics.correct, loss: cexact_scalar_empty(),
                      overflowed: !statistics.lossSum.isFinite)
        }
    }

    /// Exact mode: adds up to four micro-shards' Float gradients in one pass. Each parameter's window is raised to
    /// the largest its values need, then each value's deposits are computed on their own (so the bits are those of
    /// adding them one by one) and summed in registers; the stored limbs are read and written once, which quarters
    /// the memory traffic of the accumulators. `final`: the caller hands over no more Floats before the sum is read,
    /// so a sum that `holdsInputs` may keep these by reference.
    package func addExact(_ gradients: UnsafeBufferPointer<UnsafePointer<Float>>,
                         _ statistics: UnsafeBufferPointer<SliceStatistics>, final: Bool) {
        precondition(reduction == .exact && (1...4).contains(gradients.count) && gradients.count == statistics.count,
                     "addExact takes one to four exact micro-shards")
        settleHeld()
        if holdsInputs && final {
            for (i, gradient) in gradients.enumerated() { heldFloats[i] = gradient }
            heldFloatCount = gradients.count
        } else {
            addToLimbs(gradients)
        }
        addCounts(Self.exactSummary(of: statistics))
    }

    /// Adds one to four Float arrays into the limbs in one pass.
    private func addToLimbs(_ gradients: UnsafeBufferPointer<UnsafePointer<Float>>) {
        // An array of pointers is an array of optional pointers to C (the same layout).
        let pointers = UnsafeRawPointer(gradients.baseAddress!).assumingMemoryBound(to: UnsafePointer<Float>?.self)
        let largest = cexact_add(limbPointer(0), limbPointer(count), windows, pointers, Int32(gradients.count),
                                 limbsEmpty ? 1 : 0, count)
        limbsEmpty = false
        sawNonFinite = sawNonFinite || largest >= 0x7F80_0000
    }

    /// Exact mode: adds micro-shards' Float gradients computed elsewhere (a worker's, read in place), with their
    /// counts, loss limbs and divergence as `exactSummary` gives them. A sum that `holdsInputs` keeps them by
    /// reference (the caller keeps them untouched until the sum is next read), up to `heldCapacity` at a time.
    package func add(floats gradients: UnsafeBufferPointer<UnsafePointer<Float>>, summary: ExactSummary) {
        precondition(reduction == .exact && gradients.count <= Self.heldCapacity, "adding more than eight Floats at once, or Floats to a fast sum")
        if holdsInputs {
            if heldFloatCount + gradients.count > Self.heldCapacity { settleHeld() }
            for (i, gradient) in gradients.enumerated() { heldFloats[heldFloatCount + i] = gradient }
            heldFloatCount += gradients.count
        } else {
            settleHeld()
            for start in stride(from: 0, to: gradients.count, by: 4) {
                addToLimbs(UnsafeBufferPointer(rebasing: gradients[start ..< min(start + 4, gradients.count)]))
            }
        }
        addCounts(summary)
    }

    /// Exact mode: what a sum of these micro-shards says of them besides its values — for a worker that sends the
    /// micro-shards' Floats themselves.
    package static func exactSummary(of statistics: UnsafeBufferPointer<SliceStatistics>) -> ExactSummary {
        var loss = cexact_scalar_empty(), summary = ExactSummary()
        for s in statistics {
            if s.lossSum.isFinite { loss = cexact_scalar_add(loss, s.lossSum) }
            summary.samples += s.samples
            summary.correct += s.correct
            summary.overflowed = summary.overflowed || !s.lossSum.isFinite
        }
        summary.loss = LossWords(loss)
        return summary
    }

    /// Takes everything held into the limbs (before anything else is added, or the limbs are read).
    private func settleHeld() {
        guard heldFloatCount + heldSumCount > 0 else { return }
        let largest = takeHeld(0..<count)
        heldTaken(sawNonFinite: largest >= 0x7F80_0000)
    }

    /// Adds what is held into the limbs of `range`; the largest magnitude bits of the held Floats there.
    private func takeHeld(_ range: Range<Int>) -> UInt32 {
        cexact_combine(limbPointer(0), limbPointer(count), windows, limbsEmpty ? 1 : 0, heldSums, Int32(heldSumCount),
                       heldFloats, Int32(heldFloatCount), nil, 1, nil, count, range.lowerBound, range.upperBound)
    }

    /// Every range has taken what is held: nothing is held any more.
    private func heldTaken(sawNonFinite saw: Bool) {
        sawNonFinite = sawNonFinite || saw
        limbsEmpty = false
        heldFloatCount = 0
        heldSumCount = 0
    }

    /// Takes what is held into the limbs one range at a time, handing each range to `body` as soon as its limbs are
    /// final, while they are still in cache: a worker packs each part of its result there, so the limbs are not read
    /// back from memory (which cost as much as the packing). `ranges` must tile the parameters (a `PartSplit`'s
    /// parts, in any order). `body` gets the sum's bytes (`valueBytes`' layout, final in the range), and whether the
    /// range's held values, or anything the sum took in before (its counts, earlier micro-shards), saw a NaN or ∞:
    /// the range that holds one is always told so, others may be. When `body` throws, the ranges left are still
    /// taken in, then the error is thrown: the sum is whole either way.
    package func settle(_ ranges: some Collection<Range<Int>>,
                        _ body: (Range<Int>, _ bytes: UnsafeRawPointer, _ sawNonFinite: Bool) throws -> Void) throws {
        precondition(ranges.reduce(0) { $0 + $1.count } == count, "settling ranges that do not tile the sum")
        guard heldFloatCount + heldSumCount > 0 else {
            for range in ranges { try body(range, storage, sawNonFinite) }
            return
        }
        var failure: (any Error)?, anyNonFinite = false
        for range in ranges {
            let saw = takeHeld(range) >= 0x7F80_0000
            anyNonFinite = anyNonFinite || saw
            guard failure == nil else { continue }
            do { try body(range, storage, sawNonFinite || saw) } catch { failure = error }
        }
        heldTaken(sawNonFinite: anyNonFinite)
        if let failure { throw failure }
    }

    /// The limbs from parameter `offset` of the high limbs on (`count`: the low limbs), as the C loops take them.
    private func limbPointer(_ offset: Int) -> UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(storage + offset).assumingMemoryBound(to: UInt64.self)
    }

    /// Fast mode, empty sum: the buffer a slice may write its gradient into directly, then `add` it in place.
    package var writableFloats: UnsafeMutablePointer<Float>? { reduction == .fast && isEmpty ? floats : nil }

    /// Adds another sum of the same mode and size (another worker's slice of the batch).
    package func add(_ other: GradientSum) {
        precondition(other.count == count && other.reduction == reduction && other !== self,
                     "adding unlike gradient sums, or a sum to itself")
        guard !other.isEmpty else { return }
        // Another thread's sum holding only Floats hands them over: the mean then reads them once, with ours.
        if reduction == .exact && holdsInputs && other.holdsInputs && other.limbsEmpty && other.heldSumCount == 0
            && heldFloatCount + other.heldFloatCount <= Self.heldCapacity {
            for i in 0..<other.heldFloatCount { heldFloats[heldFloatCount + i] = other.heldFloats[i] }
            heldFloatCount += other.heldFloatCount
            addCounts(samples: other.samples, correct: other.correct, loss: other.lossLimbs,
                      overflowed: other.sawNonFinite)
            return
        }
        add(bytes: other.valueBytes, samples: other.samples, correct: other.correct, lossWords: other.lossWords,
            overflowed: other.overflowed)
    }

    /// The loss sum as words for the wire: exact, its limbs and window; fast, the Float64's bits.
    package var lossWords: LossWords {
        reduction == .exact
            ? LossWords(lossLimbs)
            : LossWords(high: Int64(bitPattern: floatLossSum.bitPattern), low: 0, window: 0)
    }

    /// The values as bytes for the wire: exact, all high limbs, all low limbs, then the windows; fast, the Floats.
    package var valueBytes: UnsafeRawBufferPointer {
        settleHeld()
        return UnsafeRawBufferPointer(start: reduction == .exact ? UnsafeRawPointer(storage) : UnsafeRawPointer(floats),
                               count: Self.bytesPerParameter(reduction) * count)
    }

    /// Adds a sum another process computed, read in place from its bytes (`valueBytes`' layout and `lossWords`).
    /// Exact windows must lie in `gradientWindows` and `lossWindows` (a result from the wire is checked first).
    /// A sum that `holdsInputs` keeps exact bytes by reference until it is read.
    package func add(bytes: UnsafeRawBufferPointer, samples: Int, correct: Int, lossWords: LossWords,
                    overflowed: Bool) {
        precondition(bytes.count == Self.bytesPerParameter(reduction) * count, "gradient bytes do not fit the model")
        switch reduction {
        case .exact:
            if holdsInputs && heldSumCount < Self.heldCapacity {
                heldSums[heldSumCount] = bytes.baseAddress!
                heldSumCount += 1
            } else {
                settleHeld()
                if limbsEmpty {
                    UnsafeMutableRawPointer(storage).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                } else {
                    cexact_merge(limbPointer(0), limbPointer(count), windows, bytes.baseAddress!, count)
                }
                limbsEmpty = false
            }
        case .fast:
            let target = floats, first = isEmpty
            forEachRange(count, threads: meanThreads) { range in
                for i in range {
                    let value = bytes.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                    target[i] = first ? value : target[i] + value
                }
            }
            floatLossSum += Double(bitPattern: UInt64(bitPattern: lossWords.high))
        }
        addCounts(samples: samples, correct: correct, loss: lossWords.limbs, overflowed: overflowed)
    }

    /// Adds another process's counts, loss and divergence alone: its values were summed part by part elsewhere (a
    /// step in parts, `StepEvent.update`).
    package func addStatistics(samples: Int, correct: Int, lossWords: LossWords, overflowed: Bool) {
        if reduction == .fast { floatLossSum += Double(bitPattern: UInt64(bitPattern: lossWords.high)) }
        addCounts(samples: samples, correct: correct, loss: lossWords.limbs, overflowed: overflowed)
    }

    private func addCounts(_ summary: ExactSummary) {
        addCounts(samples: summary.samples, correct: summary.correct, loss: summary.loss.limbs,
                  overflowed: summary.overflowed)
    }

    /// Another sum's counts, divergence and (exact mode) loss limbs.
    private func addCounts(samples: Int, correct: Int, loss: cexact_scalar, overflowed: Bool) {
        if reduction == .exact { lossLimbs = isEmpty ? loss : cexact_scalar_merge(lossLimbs, loss) }
        self.samples += samples
        self.correct += correct
        sawNonFinite = sawNonFinite || overflowed
        isEmpty = false
    }

    /// Writes the mean gradient, `sum × (1 / samples)`, as Floats; returns false if the run has diverged (a NaN or ∞
    /// was added, or the mean lies beyond float32).
    @discardableResult
    package func writeMean(into mean: UnsafeMutablePointer<Float>) -> Bool {
        precondition(samples > 0, "mean of an empty gradient sum")
        switch reduction {
        case .exact where heldFloatCount + heldSumCount > 0:
            // One pass over the limbs and everything held (the limbs stay as they were), in disjoint ranges on
            // `meanThreads` threads: each parameter's bits depend on its own values only.
            partResults.initialize(repeating: true, count: maximumParts)
            forEachPart(count, threads: meanThreads, alignment: 1) { part, range in
                var finite: Int32 = 0
                let largest = cexact_combine(limbPointer(0), limbPointer(count), windows, limbsEmpty ? 1 : 0, heldSums,
                                             Int32(heldSumCount), heldFloats, Int32(heldFloatCount), mean,
                                             Double(samples), &finite, count, range.lowerBound, range.upperBound)
                partResults[part] = finite == 1 && largest < 0x7F80_0000
            }
            var finite = !sawNonFinite
            for part in 0..<maximumParts { finite = finite && partResults[part] }
            return finite
        case .exact:
            // Each pair is read in its canonical form (one pass, the stored limbs left as they are).
            return cexact_mean(limbPointer(0), limbPointer(count), windows, mean, count, Double(samples)) == 1
                && !sawNonFinite
        case .fast:
            let divisor = Float(samples), source = floats
            for i in 0..<count { mean[i] = source[i] / divisor }
            return floatsAreFinite
        }
    }

    /// Fast mode: whether every Float sum is finite.
    package var floatsAreFinite: Bool { Self.allFinite(floats, count: count) && !sawNonFinite }

    /// Whether every Float is finite (an integer pass over the exponent bits, which vectorises).
    package static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        let bits = UnsafeRawPointer(values).assumingMemoryBound(to: UInt32.self)
        // An all-ones exponent plus one carries into bit 31; any other exponent does not (no branch: vectorises).
        var special: UInt32 = 0
        for i in 0..<count { special |= (bits[i] & 0x7F80_0000) &+ 0x0080_0000 }
        return special & 0x8000_0000 == 0
    }
}
