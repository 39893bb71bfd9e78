import Testing
@testable import Engine

/// `GradientSum.settle`: a worker's held micro-shards taken into the limbs part by part, each part handed on as soon
/// as it is final. The bytes must be those of taking them in at once (which `valueBytes` does), whatever the order of
/// the parts; the part that holds a NaN must say so; and a body that throws must still leave the sum whole.
struct SettleTests {
    /// A sum of `arrays` (four micro-shards) held by reference, as a worker's last group is; the caller keeps the
    /// buffers alive until the sum is read.
    func heldSum(_ arrays: [Buffer<Float>]) -> GradientSum {
        let sum = GradientSum(count: arrays[0].count, reduction: .exact)
        sum.holdsInputs = true
        let pointers = arrays.map { UnsafePointer($0.pointer) }
        let statistics = arrays.map { _ in SliceStatistics(samples: 16, lossSum: 0.5, correct: 3) }
        pointers.withUnsafeBufferPointer { p in
            statistics.withUnsafeBufferPointer { sum.addExact(p, $0, final: true) }
        }
        return sum
    }

    /// The sum's bytes, read while it is alive (a pointer into a sum does not keep it).
    func bytes(of sum: GradientSum) -> [UInt8] { Array(sum.valueBytes) }

    @Test("part by part gives the bytes of settling at once; the part with a NaN says so; a throwing body leaves it whole")
    func partByPart() throws {
        var random = Xoshiro(seed: 83)
        let count = 1000, ranges = [0..<208, 208..<512, 512..<1000]
        let arrays = (0..<4).map { _ in Buffer<Float>((0..<count).map { _ in Float(random.nextGaussian()) * 1e-3 }) }
        let whole = bytes(of: heldSum(arrays))

        // Every order of the parts, and the bytes each body saw in its range.
        for order in [ranges, ranges.reversed(), [ranges[1], ranges[0], ranges[2]]] {
            let sum = heldSum(arrays)
            var told: [Range<Int>: Bool] = [:]
            try sum.settle(order) { range, bytes, sawNonFinite in
                told[range] = sawNonFinite
                // The range's high limbs are final when the body sees them.
                let high = bytes.assumingMemoryBound(to: Int64.self)
                let expected = whole.withUnsafeBytes { $0.assumingMemoryBound(to: Int64.self) }
                #expect(range.allSatisfy { high[$0] == expected[$0] }, "range \(range)")
            }
            #expect(bytes(of: sum) == whole && told.count == 3 && !told.values.contains(true))
            #expect(!sum.overflowed)
        }

        // A NaN in the middle part: that part says so, the ones before it in order do not; the sum is overflowed.
        arrays[2].pointer[300] = .nan
        let poisoned = heldSum(arrays)
        var told: [Range<Int>: Bool] = [:]
        try poisoned.settle(ranges) { range, _, sawNonFinite in told[range] = sawNonFinite }
        #expect(told[ranges[1]] == true && told[ranges[0]] == false && poisoned.overflowed)

        // A body that throws on the first part: the error comes out, and the sum is whole.
        arrays[2].pointer[300] = 0.25
        let reference = bytes(of: heldSum(arrays))
        struct Refused: Error {}
        let interrupted = heldSum(arrays)
        var calls = 0
        #expect(throws: Refused.self) {
            try interrupted.settle(ranges) { _, _, _ in
                calls += 1
                throw Refused()
            }
        }
        #expect(calls == 1 && bytes(of: interrupted) == reference)
    }
}
