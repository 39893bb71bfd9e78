import CExactSum
import Testing
@testable import Engine

/// `cexact_within`, which decides whether a contribution's limbs and windows can be a real sum, against a plain
/// reference: every limb at, just inside and just beyond the bound, every window at and beyond each end, at any
/// alignment and in any range, on each instruction set this CPU has.
struct LimbBoundsTests {
    /// The reference: the bound and the windows tested one value at a time, in signed arithmetic.
    func reference(_ high: [Int64], _ low: [Int64], _ windows: [Int8], _ range: Range<Int>, limit: Int64,
                   lowest: Int8, highest: Int8) -> Int32 {
        let limbs = range.allSatisfy { high[$0].magnitude <= limit.magnitude && low[$0].magnitude <= limit.magnitude }
        let inRange = range.allSatisfy { (lowest...highest).contains(windows[$0]) }
        return (limbs ? 1 : 0) | (inRange ? 2 : 0)
    }

    /// The sum's bytes in `cexact_merge`'s layout, `shift` bytes into a buffer (so loads are unaligned).
    func layout(_ high: [Int64], _ low: [Int64], _ windows: [Int8], shift: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: shift)
        for limb in high + low { withUnsafeBytes(of: limb.littleEndian) { bytes += $0 } }
        return bytes + windows.map { UInt8(bitPattern: $0) }
    }

    @Test("limbs at ±limit pass and one beyond fails, windows outside the float32 ones fail, in every range and level")
    func boundsAgree() {
        var random = Xoshiro(seed: 53)
        let count = 203, limit = GradientSum.depositLimit * 4
        let (lowest, highest) = (Int8(CEXACT_LOWEST_WINDOW), Int8(CEXACT_HIGHEST_FLOAT_WINDOW))
        let edges: [Int64] = [limit, -limit, limit + 1, -limit - 1, .max, .min, 0]
        let windowEdges: [Int8] = [lowest, highest, lowest - 1, highest + 1, .min, .max]
        let best = cexact_level()
        defer { _ = cexact_use_level(best) }
        var cases = 0, failing = 0
        for trial in 0..<60 {
            var high = (0..<count).map { _ in Int64(bitPattern: random.next()) % (limit + 1) }
            var low = (0..<count).map { _ in Int64(bitPattern: random.next()) % (limit + 1) }
            var windows = (0..<count).map { _ in lowest + Int8(random.nextIndex(below: Int(highest - lowest) + 1)) }
            let at = random.nextIndex(below: count)
            switch trial % 3 {
            case 0: high[at] = edges[random.nextIndex(below: edges.count)]
            case 1: low[at] = edges[random.nextIndex(below: edges.count)]
            default: windows[at] = windowEdges[random.nextIndex(below: windowEdges.count)]
            }
            let shift = trial % 8, bytes = layout(high, low, windows, shift: shift)
            let first = random.nextIndex(below: count), end = first + random.nextIndex(below: count - first + 1)
            for range in [0..<count, first..<end] {
                let expected = reference(high, low, windows, range, limit: limit, lowest: lowest, highest: highest)
                cases += 1
                failing += expected == 3 ? 0 : 1
                for level in 0...best {
                    #expect(cexact_use_level(level) == 1)
                    let verdict = bytes.withUnsafeBytes {
                        cexact_within($0.baseAddress! + shift, count, range.lowerBound, range.upperBound,
                                      UInt64(limit), Int32(lowest), Int32(highest))
                    }
                    #expect(verdict == expected, "level \(level), trial \(trial), range \(range)")
                }
            }
        }
        // Both verdicts were met often enough to mean something.
        #expect(failing > 20 && cases - failing > 20, "\(failing) of \(cases) failing")
    }
}
