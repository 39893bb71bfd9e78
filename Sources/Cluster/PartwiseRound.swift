import CExactSum
import Engine
import Wire

/// One step's results as they arrive in parts (`--overlap`): each attempt's arrays (fast: its sum; exact: each of
/// its micro-shards' Floats), which parts of them are in, and which parts of the step are updated. A part is
/// updated once every micro-shard's values there are in: every outstanding attempt has sent it, and those answered
/// in full have. The sum over a part reads the attempts in micro-shard order, so fast mode gives the bits of the
/// same split summed whole, and exact mode's are those of any split.
final class PartwiseRound {
    /// An attempt's parts so far: each array's part read where its message holds it (copied only when a message's
    /// bytes are off a Float's alignment), and the messages kept until the step ends.
    struct Arrays {
        let arrays: Int
        /// Exact limbs, packed on the wire and unpacked into `copies`, each part in `cexact_merge`'s layout of its
        /// own; otherwise Floats.
        let limbs: Bool
        var values: [UnsafeRawPointer?]
        var messages: [Message] = []
        var copies: Buffer<Float>?
        /// A part of its limbs said the sum saw a NaN or ∞ (the part that holds one does): the run diverged.
        var diverged = false
    }

    let parts: PartSplit
    var parameterCount: Int { parts.parameterCount }
    private(set) var updated: [Bool]
    private(set) var updatedCount = 0
    private var attempts: [UInt64: Arrays] = [:]
    /// Parts that may have become ready: one whose values came in, or all of them after the step's attempts or
    /// waiting micro-shards changed. Looking only at these keeps the work per part message independent of the
    /// part count.
    private var candidates: [Int] = []
    private var lookAtAll = true
    /// The round's revision when every part was last looked at.
    private var seenRevision = -1
    /// Pointers to the arrays of a part's sum, in micro-shard order, and to its limb sums: at most one per
    /// micro-shard, since the live attempts hold disjoint micro-shards and each array is one micro-shard's or more.
    private let pointers: UnsafeMutablePointer<UnsafePointer<Float>?>
    private let sums: UnsafeMutablePointer<UnsafeRawPointer?>
    private let unusedLimbs = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let unusedWindows = UnsafeMutablePointer<Int8>.allocate(capacity: 1)

    init(parts: PartSplit, microShards: Int) {
        pointers = .allocate(capacity: max(1, microShards))
        sums = .allocate(capacity: max(1, microShards))
        self.parts = parts
        updated = Array(repeating: false, count: parts.count)
    }

    deinit {
        pointers.deallocate()
        sums.deallocate()
        unusedLimbs.deallocate()
        unusedWindows.deallocate()
    }

    var isUpdated: Bool { updatedCount == parts.count }

    /// Keeps array `array` of `attempt`'s part starting at `first` (Floats copied into memory from `pool` only when
    /// off a Float's alignment; packed limbs unpacked there and checked as a sum of `microShards` micro-shards).
    /// Returns why it cannot be a real result's part, or nil.
    func take(_ values: PartValues, attempt: UInt64, array: Int, arrays: Int, first: Int, microShards: Int,
              pool: inout [Buffer<Float>]) -> String? {
        let limbs: Bool, message: Message, diverged: Bool
        switch values {
        case .floats(let frame): (limbs, message, diverged) = (false, frame.message, false)
        case .packedLimbs(let packed, let saw): (limbs, message, diverged) = (true, packed, saw)
        }
        if attempts[attempt] == nil {
            attempts[attempt] = Arrays(arrays: arrays, limbs: limbs, values: Array(repeating: nil, count: arrays * parts.count))
        }
        guard attempts[attempt]!.arrays == arrays, attempts[attempt]!.limbs == limbs else {
            return "parts of \(arrays) arrays\(limbs ? " of packed limbs" : ""), after other parts"
        }
        let part = parts.part(startingAt: first), slot = array * parts.count + part, n = parts[part].count
        guard attempts[attempt]!.values[slot] == nil else { return "part \(part) of array \(array) twice" }
        func copies(floats: Int) -> UnsafeMutableRawPointer {
            if attempts[attempt]!.copies == nil {
                let index = pool.firstIndex { $0.count >= floats }
                attempts[attempt]!.copies = index.map { pool.remove(at: $0) } ?? Buffer<Float>(count: floats)
            }
            return UnsafeMutableRawPointer(attempts[attempt]!.copies!.pointer)
        }
        let bytes = message.withUnsafeBytes { $0 }
        if limbs {
            // Each part's limbs at 17 bytes a parameter from its first: 8-byte aligned, as parts start on multiples of 16.
            let target = copies(floats: (GradientFrame.exactBytesPerParameter * parameterCount + 3) / 4)
                + GradientFrame.exactBytesPerParameter * first
            var bounds = cexact_unpacked_bounds()
            guard cexact_unpack_bounded(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, n, target,
                                        &bounds) == 1 else {
                return "packed limbs of \(bytes.count) bytes that are not a sum of part \(part)'s \(n) parameters"
            }
            // A diverged sum's limbs mean nothing (the run stops); any other's must be a possible sum.
            let unpacked = UnsafeRawBufferPointer(start: target, count: GradientFrame.exactBytesPerParameter * n)
            if diverged {
                attempts[attempt]!.diverged = true
            } else if let wrong = ResultCheck.unpackedImplausibility(unpacked, bounds: bounds, microShards: microShards) {
                return wrong + " in part \(part)"
            }
            attempts[attempt]!.values[slot] = UnsafeRawPointer(target)
        } else if Int(bitPattern: bytes.baseAddress) % MemoryLayout<Float>.alignment == 0 {
            attempts[attempt]!.values[slot] = bytes.baseAddress!
            attempts[attempt]!.messages.append(message)
        } else {
            let target = copies(floats: arrays * parameterCount) + 4 * (array * parameterCount + first)
            target.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            attempts[attempt]!.values[slot] = UnsafeRawPointer(target)
        }
        candidates.append(part)
        return nil
    }

    /// Whether `attempt` has sent every array of every part (those updated already too: one may be updated again).
    func hasEverything(of attempt: UInt64) -> Bool {
        guard let a = attempts[attempt] else { return false }
        return a.values.allSatisfy { $0 != nil }
    }

    private func has(_ attempt: UInt64, part: Int) -> Bool {
        guard let a = attempts[attempt] else { return false }
        return (0..<a.arrays).allSatisfy { a.values[$0 * parts.count + part] != nil }
    }

    /// A part not yet updated that every micro-shard's values have reached, if there is one.
    func nextReadyPart(_ round: StepRound) -> Int? {
        guard round.waitingCount == 0, !isUpdated else { return nil }
        // The step's attempts or waiting micro-shards changed since: any part may now be ready.
        if round.revision != seenRevision {
            seenRevision = round.revision
            lookAtAll = true
        }
        if lookAtAll {
            lookAtAll = false
            candidates.removeAll(keepingCapacity: true)
            candidates.append(contentsOf: parts.indices.reversed())
        }
        // The part found stays a candidate (asking twice finds it again); `reduce` marks it updated.
        while let part = candidates.last {
            if !updated[part] && round.outstanding.keys.allSatisfy({ has($0, part: part) }) { return part }
            candidates.removeLast()
        }
        return nil
    }

    /// The sum (fast) or the mean (exact, into `mean`) over `part`, from the attempts answered or outstanding in
    /// `round`, and whether an exact mean is finite. A fast sum of one array is that array itself; of more, it is
    /// written into `sum`'s Floats. The gradients returned point at the part's first value.
    func reduce(_ part: Int, _ round: StepRound, reduction: Reduction, samples: Int, sum: GradientSum,
                mean: UnsafeMutablePointer<Float>) -> (gradients: UnsafePointer<Float>, finite: Bool) {
        let live = (round.outstanding.map { ($0.key, $0.value.ranges[0].lowerBound) }
            + round.completedAttempts.map { ($0.key, $0.value) }).sorted { $0.1 < $1.1 }.map(\.0)
        var count = 0, sumCount = 0, diverged = false
        for attempt in live {
            guard let a = attempts[attempt] else { continue }
            diverged = diverged || a.diverged
            if a.limbs {
                sums[sumCount] = a.values[part]
                sumCount += 1
                continue
            }
            for array in 0..<a.arrays {
                pointers[count] = a.values[array * parts.count + part]!.assumingMemoryBound(to: Float.self)
                count += 1
            }
        }
        let range = parts[part], n = range.count
        updated[part] = true
        updatedCount += 1
        switch reduction {
        case .fast:
            precondition(count > 0, "part \(part) summed with no values")
            // One sum is read where it lies, unless the part ends off a 16-value block, which optimizers read whole.
            guard count > 1 || !Buffer<Float>.readsWhole(n) else { return (pointers[0]!, true) }
            guard count > 1 else {
                (sum.floats + range.lowerBound).update(from: pointers[0]!, count: n)
                return (UnsafePointer(sum.floats + range.lowerBound), true)
            }
            // In micro-shard order, as a whole sum adds them: the first two in one pass, then each other one.
            let target = sum.floats + range.lowerBound
            let first = pointers[0]!, second = pointers[1]!
            for i in 0..<n { target[i] = first[i] + second[i] }
            for k in 2..<count {
                let values = pointers[k]!
                for i in 0..<n { target[i] += values[i] }
            }
            return (UnsafePointer(target), true)
        case .exact:
            var finite: Int32 = 0
            // The limbs are neither read (`empty`) nor written (a mean is asked for): blocks of its own hold them.
            let largest = cexact_combine(unusedLimbs, unusedLimbs, unusedWindows, 1, sums, Int32(sumCount), pointers, Int32(count),
                                         mean + range.lowerBound, Double(samples), &finite, n, 0, n)
            return (UnsafePointer(mean + range.lowerBound), finite == 1 && largest < 0x7F80_0000 && !diverged)
        }
    }

    /// Forgets `attempt` (taken back from its worker), its memory back to `pool`; returns the updated parts that hold
    /// its values.
    func forget(_ attempt: UInt64, into pool: inout [Buffer<Float>]) -> [Int] {
        guard let a = attempts.removeValue(forKey: attempt) else { return [] }
        if let copies = a.copies { pool.append(copies) }
        return parts.indices.filter { part in updated[part] && (0..<a.arrays).contains { a.values[$0 * parts.count + part] != nil } }
    }

    /// `part` is to be updated again (the update it had is undone).
    func reopen(_ part: Int) {
        guard updated[part] else { return }
        updated[part] = false
        updatedCount -= 1
        candidates.append(part)
    }

    /// Hands every attempt's memory back to `pool`.
    func recycle(into pool: inout [Buffer<Float>]) {
        for a in attempts.values { if let copies = a.copies { pool.append(copies) } }
        attempts.removeAll()
    }
}
