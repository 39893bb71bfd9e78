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
        var values: [UnsafePointer<Float>?]
        var messages: [Message] = []
        var copies: Buffer<Float>?
    }

    let parameterCount: Int
    let parts: [Range<Int>]
    private(set) var updated: [Bool]
    private(set) var updatedCount = 0
    private var attempts: [UInt64: Arrays] = [:]
    /// Pointers to the arrays of a part's sum, in micro-shard order.
    private let pointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: Codec.maximumPartArrays)
    private let unusedLimbs = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private let unusedWindows = UnsafeMutablePointer<Int8>.allocate(capacity: 1)

    init(parameterCount: Int) {
        self.parameterCount = parameterCount
        parts = Codec.parts(of: parameterCount)
        updated = Array(repeating: false, count: parts.count)
    }

    deinit {
        pointers.deallocate()
        unusedLimbs.deallocate()
        unusedWindows.deallocate()
    }

    var isUpdated: Bool { updatedCount == parts.count }

    /// Keeps array `array` of `attempt`'s part starting at `first` (copied into memory from `pool` only when off a
    /// Float's alignment). Returns why it cannot be a real result's part, or nil.
    func take(_ frame: FloatFrame, attempt: UInt64, array: Int, arrays: Int, first: Int,
              pool: inout [Buffer<Float>]) -> String? {
        if attempts[attempt] == nil {
            attempts[attempt] = Arrays(arrays: arrays, values: Array(repeating: nil, count: arrays * parts.count))
        }
        guard attempts[attempt]!.arrays == arrays else {
            return "parts of \(arrays) arrays, after parts of \(attempts[attempt]!.arrays)"
        }
        let part = first / Codec.partParameters, slot = array * parts.count + part
        guard attempts[attempt]!.values[slot] == nil else { return "part \(part) of array \(array) twice" }
        let bytes = frame.message.withUnsafeBytes { $0.baseAddress! }
        if Int(bitPattern: bytes) % MemoryLayout<Float>.alignment == 0 {
            attempts[attempt]!.values[slot] = bytes.assumingMemoryBound(to: Float.self)
        } else {
            if attempts[attempt]!.copies == nil {
                let needed = arrays * parameterCount
                let index = pool.firstIndex { $0.count >= needed }
                attempts[attempt]!.copies = index.map { pool.remove(at: $0) } ?? Buffer<Float>(count: needed)
            }
            let target = attempts[attempt]!.copies!.pointer + array * parameterCount + first
            frame.copy(into: target)
            attempts[attempt]!.values[slot] = UnsafePointer(target)
        }
        attempts[attempt]!.messages.append(frame.message)
        return nil
    }

    /// The Floats `attempt` sent for part `part` of array `array`.
    func values(of attempt: UInt64, array: Int, part: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: attempts[attempt]!.values[array * parts.count + part], count: parts[part].count)
    }

    /// Whether `attempt` has sent every array of every part not yet updated.
    func hasEverything(of attempt: UInt64) -> Bool {
        guard let a = attempts[attempt] else { return isUpdated }
        return parts.indices.allSatisfy { part in updated[part] || (0..<a.arrays).allSatisfy { a.values[$0 * parts.count + part] != nil } }
    }

    private func has(_ attempt: UInt64, part: Int) -> Bool {
        guard let a = attempts[attempt] else { return false }
        return (0..<a.arrays).allSatisfy { a.values[$0 * parts.count + part] != nil }
    }

    /// The parts not yet updated that every micro-shard's values have reached.
    func readyParts(_ round: StepRound) -> [Int] {
        guard round.waitingCount == 0, !isUpdated else { return [] }
        return parts.indices.filter { part in
            !updated[part] && round.outstanding.keys.allSatisfy { has($0, part: part) }
        }
    }

    /// The sum (fast) or the mean (exact, into `mean`) over `part`, from the attempts answered or outstanding in
    /// `round`, and whether an exact mean is finite. A fast sum of one array is that array itself; of more, it is
    /// written into `sum`'s Floats. The gradients returned point at the part's first value.
    func reduce(_ part: Int, _ round: StepRound, reduction: Reduction, samples: Int, sum: GradientSum,
                mean: UnsafeMutablePointer<Float>) -> (gradients: UnsafePointer<Float>, finite: Bool) {
        let live = (round.outstanding.map { ($0.key, $0.value.ranges[0].lowerBound) }
            + round.completedAttempts.map { ($0.key, $0.value) }).sorted { $0.1 < $1.1 }.map(\.0)
        var count = 0
        for attempt in live {
            guard let a = attempts[attempt] else { continue }
            for array in 0..<a.arrays {
                pointers[count] = a.values[array * parts.count + part]
                count += 1
            }
        }
        let range = parts[part], n = range.count
        updated[part] = true
        updatedCount += 1
        switch reduction {
        case .fast:
            guard count > 1 else { return (pointers[0]!, true) }
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
            let largest = cexact_combine(unusedLimbs, unusedLimbs, unusedWindows, 1, nil, 0, pointers, Int32(count),
                                         mean + range.lowerBound, Double(samples), &finite, n, 0, n)
            return (UnsafePointer(mean + range.lowerBound), finite == 1 && largest < 0x7F80_0000)
        }
    }

    /// Hands every attempt's memory back to `pool`.
    func recycle(into pool: inout [Buffer<Float>]) {
        for a in attempts.values { if let copies = a.copies { pool.append(copies) } }
        attempts.removeAll()
    }
}
