import CExactSum
import Foundation
import Testing
@testable import Engine

/// Exact sums over the whole float32 range: each value enters exactly, the result does not depend on order or
/// grouping, and it agrees with an independent exact reference (a 320-bit integer in units of 2⁻¹⁴⁹).
struct ExactSumTests {
    /// Per parameter, adds `values[p][v]` as micro-shard `v`'s gradient, split into `groups` sums added in `order`.
    func mean(_ values: [[Float]], groups: [Range<Int>], order: [Int]) -> (mean: [Float], finite: Bool) {
        let count = values.count, shards = values[0].count
        let total = GradientSum(count: count, reduction: .exact)
        var parts: [GradientSum] = []
        for group in groups {
            let part = GradientSum(count: count, reduction: .exact)
            // Added in ones, twos and fours, as SliceComputer does.
            var shard = group.lowerBound
            while shard < group.upperBound {
                let take = min(1 + shard % 4, group.upperBound - shard)
                let buffers = (shard ..< shard + take).map { s in Buffer<Float>(values.map { $0[s] }) }
                let pointers = buffers.map { UnsafePointer($0.pointer) }
                let statistics = [SliceStatistics](repeating: SliceStatistics(samples: 1), count: take)
                pointers.withUnsafeBufferPointer { p in statistics.withUnsafeBufferPointer { part.addExact(p, $0, final: false) } }
                shard += take
            }
            parts.append(part)
        }
        for index in order { total.add(parts[index]) }
        #expect(total.samples == shards)
        var out = [Float](repeating: 0, count: count)
        let finite = out.withUnsafeMutableBufferPointer { total.writeMean(into: $0.baseAddress!) }
        return (out, finite)
    }

    /// A Float from anywhere in the finite range: subnormals, tiny, ordinary and near float32's maximum.
    func anyFloat(_ random: inout Xoshiro) -> Float {
        let bits = UInt32(truncatingIfNeeded: random.next()) & 0x7F7F_FFFF  // exponent ≤ 254: finite
        return Float(bitPattern: bits | (random.next() & 1 == 0 ? 0 : 0x8000_0000))
    }

    @Test("one value of any magnitude comes back exactly, subnormals and 3.4e38 included")
    func everyFloatExactly() {
        var random = Xoshiro(seed: 17)
        var values: [Float] = [0x1p-149, -0x1p-149, Float.leastNormalMagnitude, Float.greatestFiniteMagnitude,
                               -Float.greatestFiniteMagnitude, 1e30, 1e-30, 2.1e9, 1e6, 0]
        for _ in 0..<4000 { values.append(anyFloat(&random)) }
        let result = mean(values.map { [$0] }, groups: [0..<1], order: [0])
        #expect(result.finite)
        for (index, value) in values.enumerated() {
            #expect(result.mean[index].bitPattern == value.bitPattern || (value == 0 && result.mean[index] == 0),
                    "\(value) came back as \(result.mean[index])")
        }
    }

    @Test("wide-range sums: the same bits in any grouping and order, and the exact sum to float rounding")
    func groupingAndReference() {
        var random = Xoshiro(seed: 29)
        let parameters = 300, shards = 24
        // Each parameter's values share a scale drawn from the whole range, spread over 2⁴⁰ around it.
        let values: [[Float]] = (0..<parameters).map { _ in
            let scale = Double(random.nextIndex(below: 250)) - 140
            return (0..<shards).map { _ in
                let exponent = scale + Double(random.nextIndex(below: 40)) - 20
                return Float((random.nextUnitDouble() * 2 - 1) * Foundation.pow(2, min(127, exponent)))
            }
        }
        let reference = mean(values, groups: [0..<shards], order: [0])
        #expect(reference.finite)
        let splits: [[Range<Int>]] = [[0..<5, 5..<11, 11..<24], [0..<1, 1..<23, 23..<24],
                                      (0..<shards).map { $0 ..< $0 + 1 }]
        for split in splits {
            for order in [Array(split.indices), Array(split.indices.reversed())] {
                let other = mean(values, groups: split, order: order)
                let differing = other.mean.indices.first { other.mean[$0].bitPattern != reference.mean[$0].bitPattern }
                #expect(differing == nil, "split \(split), order \(order): parameter \(differing ?? 0) differs")
            }
        }
        for p in 0..<parameters {
            let exact = WideInteger.sum(values[p]) / Double(shards)
            let magnitude = values[p].map { Double(abs($0)) }.max()!
            // Float rounding of the mean, plus 2⁻⁴⁸ of the largest value for the rounded small ones.
            let tolerance = 0x1p-23 * abs(exact) + 0x1p-48 * magnitude + Double(0x1p-149 as Float)
            #expect(abs(Double(reference.mean[p]) - exact) <= tolerance,
                    "parameter \(p): \(reference.mean[p]) vs exact \(exact)")
        }
    }

    @Test("held Floats and wire sums give the bits of adding them at once, whatever else the sum holds")
    func heldInputs() {
        var random = Xoshiro(seed: 53)
        let count = 1500  // several blocks of the combined pass, the last one partial
        let shards = (0..<6).map { s in
            Buffer<Float>((s == 0 ? [-0.0, 0] : [0, 1]) + (2..<count).map { _ in anyFloat(&random) / Float(1 << s) })
        }
        let others = (0..<3).map { o -> GradientSum in
            let other = GradientSum(count: count, reduction: .exact)
            let values = Buffer<Float>((0..<count).map { _ in anyFloat(&random) / 4 })
            other.add(gradient: values.pointer, statistics: SliceStatistics(samples: 1 + o, lossSum: 1.5))
            return other
        }
        // (Float groups added before the final one, final Float group, wire sums) for each case.
        let cases: [(before: [Int], final: [Int], wires: [Int])] = [
            ([], [0], []), ([], [0, 1, 2], []), ([], [], [0, 1, 2]), ([0, 1], [2, 3, 4, 5], [1]),
            ([3], [], [2, 0]), ([], [5], [0, 1, 2]),
        ]
        for (index, c) in cases.enumerated() {
            let held = GradientSum(count: count, reduction: .exact), plain = GradientSum(count: count, reduction: .exact)
            held.holdsInputs = true
            for sum in [held, plain] {
                for group in [c.before, c.final] where !group.isEmpty {
                    let pointers = group.map { UnsafePointer(shards[$0].pointer) }
                    let statistics = group.map { SliceStatistics(samples: $0 + 1, lossSum: Double($0)) }
                    pointers.withUnsafeBufferPointer { p in
                        statistics.withUnsafeBufferPointer { sum.addExact(p, $0, final: group == c.final) }
                    }
                }
                for w in c.wires { sum.add(others[w]) }
            }
            let a = Buffer<Float>(count: count), b = Buffer<Float>(count: count)
            #expect(held.writeMean(into: a.pointer) && plain.writeMean(into: b.pointer))
            #expect(a.array.map(\.bitPattern) == b.array.map(\.bitPattern), "case \(index)")
            #expect(held.lossSum.bitPattern == plain.lossSum.bitPattern && held.samples == plain.samples)
            // Reading the bytes takes in what was held: the same limbs as adding at once.
            #expect(Array(held.valueBytes) == Array(plain.valueBytes), "case \(index)")
            // The limbs are canonical-free integers: their mean is the held pass's mean.
            #expect(held.writeMean(into: b.pointer))
            #expect(a.array.map(\.bitPattern) == b.array.map(\.bitPattern), "case \(index), after settling")
            #expect(a.pointer[0].bitPattern == 0 || !c.final.contains(0) || c.before.count + c.wires.count > 0,
                    "−0 alone becomes +0, as limbs hold it")
        }
        // A NaN held is seen when the mean is taken.
        let bad = GradientSum(count: count, reduction: .exact)
        bad.holdsInputs = true
        let nan = Buffer<Float>((0..<count).map { $0 == count - 1 ? .nan : 1 })
        var pointer = UnsafePointer(nan.pointer), statistics = SliceStatistics(samples: 1, lossSum: 0)
        withUnsafePointer(to: &pointer) { p in
            withUnsafePointer(to: &statistics) { bad.addExact(.init(start: p, count: 1), .init(start: $0, count: 1), final: true) }
        }
        let out = Buffer<Float>(count: count)
        #expect(!bad.writeMean(into: out.pointer))
        #expect(bad.overflowed)
    }

    @Test("a mean of held sums split over threads gives the single pass's bits")
    func threadedMean() {
        var random = Xoshiro(seed: 89)
        let count = 300_001  // four ranges, uneven
        let others = (0..<3).map { o -> GradientSum in
            let other = GradientSum(count: count, reduction: .exact)
            let values = Buffer<Float>((0..<count).map { _ in anyFloat(&random) / 4 })
            other.add(gradient: values.pointer, statistics: SliceStatistics(samples: 2 + o, lossSum: 1))
            return other
        }
        let floats = Buffer<Float>((0..<count).map { _ in anyFloat(&random) / 4 })
        var means: [[UInt32]] = []
        for threads in [1, 4] {
            for withFloats in [false, true] {
                let sum = GradientSum(count: count, reduction: .exact)
                sum.holdsInputs = true
                sum.meanThreads = threads
                if withFloats {
                    var pointer = UnsafePointer(floats.pointer), statistics = SliceStatistics(samples: 1, lossSum: 0)
                    withUnsafePointer(to: &pointer) { p in
                        withUnsafePointer(to: &statistics) { sum.addExact(.init(start: p, count: 1), .init(start: $0, count: 1), final: true) }
                    }
                }
                for other in others { sum.add(other) }
                let out = Buffer<Float>(count: count)
                #expect(sum.writeMean(into: out.pointer))
                means.append(out.array.map(\.bitPattern))
            }
        }
        #expect(means[0] == means[2] && means[1] == means[3])
        #expect(means[0] != means[1])
    }

    @Test("Floats alone take a Double shortcut only where it gives the limbs' bits: spreads up to 2^26, zeros, subnormals")
    func floatShortcut() {
        var random = Xoshiro(seed: 71)
        let count = 6 * 512 + 100  // blocks of the combined pass: six whole, one partial
        func value(exponent: Int) -> Float {
            let mantissa = UInt32(truncatingIfNeeded: random.next()) & 0x007F_FFFF
            let sign: UInt32 = random.next() & 1 == 0 ? 0 : 0x8000_0000
            return Float(bitPattern: sign | UInt32(exponent) << 23 | mantissa)
        }
        let best = cexact_level()
        defer { _ = cexact_use_level(best) }
        for shards in 1...8 {
            var columns = [[Float]](repeating: [], count: shards)
            for i in 0..<count {
                let block = i / 512, top = 60 + Int(random.next() % 190)
                for s in 0..<shards {
                    // Block 0: spreads up to 26; block 1: zeros, −0, subnormals; block 2: spread 27 somewhere (the
                    // block goes through the limbs); block 3: spreads of exactly 26; block 4: spreads of 27 to 59
                    // (where Double sums round: only the limbs are right); block 5, eight shards: a spread of 27
                    // whose Double sum rounds twice, to a float tie the exact sum lies just below (32 samples: the
                    // reciprocal is exact); the rest: anything.
                    let v: Float
                    switch block {
                    case 0: v = value(exponent: top - Int(random.next() % 27))
                    // (−2⁻¹⁴⁹ alone: a nonzero sum whose mean underflows to −0, as the limbs give it.)
                    case 1: v = [Float(0), -0.0, value(exponent: 0), value(exponent: 27), -0x1p-149][Int(random.next() % 5)]
                    case 2: v = value(exponent: i == 1100 && s == 0 ? top - 27 : top)
                    case 3: v = value(exponent: s == 0 ? top : top - 26)
                    case 4: v = value(exponent: s == 0 ? top : top - 27 - Int(random.next() % 33))
                    case 5 where shards == 8:
                        v = Float(bitPattern: [0x3200_0003, 0x3FFF_FFFF, 0x3FFF_FFFF, 0x3FFF_FFFF, 0x3FFF_FFFF,
                                               0x3FFF_FFFF, 0x3D80_000D, 0x327F_FFFB][s])
                    default: v = value(exponent: 1 + Int(random.next() % 253))
                    }
                    columns[s].append(v)
                }
            }
            let buffers = columns.map { Buffer<Float>($0) }
            let pointers = buffers.map { UnsafePointer($0.pointer) }
            let statistics = (0..<shards).map { SliceStatistics(samples: 4, lossSum: 1 + Double($0)) }
            let summary = statistics.withUnsafeBufferPointer { GradientSum.exactSummary(of: $0) }
            for level in 0...best {
                #expect(cexact_use_level(level) == 1)
                // The reference: the limbs, four micro-shards at a time. Then the same Floats held (the shortcut
                // where it applies), handed over as a worker's, held and not.
                let plain = GradientSum(count: count, reduction: .exact)
                for start in stride(from: 0, to: shards, by: 4) {
                    let end = min(start + 4, shards)
                    pointers[start..<end].withUnsafeBufferPointer { p in
                        statistics[start..<end].withUnsafeBufferPointer { plain.addExact(p, $0, final: end == shards) }
                    }
                }
                var others: [GradientSum] = []
                if shards <= 4 {
                    let held = GradientSum(count: count, reduction: .exact)
                    held.holdsInputs = true
                    pointers.withUnsafeBufferPointer { p in
                        statistics.withUnsafeBufferPointer { held.addExact(p, $0, final: true) }
                    }
                    others.append(held)
                }
                for holds in [true, false] {
                    let handed = GradientSum(count: count, reduction: .exact)
                    handed.holdsInputs = holds
                    pointers.withUnsafeBufferPointer { handed.add(floats: $0, summary: summary) }
                    #expect(handed.samples == plain.samples && handed.lossWords == plain.lossWords)
                    others.append(handed)
                }
                let b = Buffer<Float>(count: count)
                let finite = plain.writeMean(into: b.pointer)
                for (i, other) in others.enumerated() {
                    let a = Buffer<Float>(count: count)
                    #expect(other.writeMean(into: a.pointer) == finite)
                    let differing = (0..<count).filter { a.pointer[$0].bitPattern != b.pointer[$0].bitPattern }
                    #expect(differing.isEmpty, "\(shards) shards, level \(level), sum \(i): parameters \(differing.prefix(5))")
                }
            }
        }
    }

    @Test("workers' Floats beyond what a sum holds are taken into the limbs first, with the same bits")
    func handedFloatsSettle() {
        var random = Xoshiro(seed: 5)
        let count = 1500, groups = 3
        let buffers = (0..<4 * groups).map { _ in Buffer<Float>((0..<count).map { _ in anyFloat(&random) / 16 }) }
        let pointers = buffers.map { UnsafePointer($0.pointer) }
        let statistics = (0..<4).map { SliceStatistics(samples: 2, lossSum: Double($0) + 0.25) }
        let summary = statistics.withUnsafeBufferPointer { GradientSum.exactSummary(of: $0) }
        let handed = GradientSum(count: count, reduction: .exact), plain = GradientSum(count: count, reduction: .exact)
        handed.holdsInputs = true
        for g in 0..<groups {
            pointers[4 * g ..< 4 * g + 4].withUnsafeBufferPointer { handed.add(floats: $0, summary: summary) }
            pointers[4 * g ..< 4 * g + 4].withUnsafeBufferPointer { p in
                statistics.withUnsafeBufferPointer { plain.addExact(p, $0, final: false) }
            }
        }
        let a = Buffer<Float>(count: count), b = Buffer<Float>(count: count)
        #expect(handed.writeMean(into: a.pointer) == plain.writeMean(into: b.pointer))
        #expect((0..<count).allSatisfy { a.pointer[$0].bitPattern == b.pointer[$0].bitPattern })
        #expect(handed.samples == 24 && handed.lossWords == plain.lossWords && handed.lossSum == 3 * 7.0)
    }

    @Test("the SSE2, AVX2 and AVX-512 loops give the same bits (each this CPU has)")
    func instructionSetsAgree() {
        var random = Xoshiro(seed: 41)
        let parameters = 1000, shards = 7
        let values: [[Float]] = (0..<parameters).map { _ in (0..<shards).map { _ in anyFloat(&random) / 4 } }
        let best = cexact_level()
        defer { _ = cexact_use_level(best) }
        var results: [[UInt32]] = []
        for level in 0...best {
            #expect(cexact_use_level(level) == 1)
            let result = mean(values, groups: [0..<3, 3..<shards], order: [1, 0])
            #expect(result.finite)
            results.append(result.mean.map(\.bitPattern))
        }
        #expect(results.allSatisfy { $0 == results[0] }, "levels 0...\(best) differ")
        #expect(cexact_use_level(3) == 0)
    }

    @Test("1e30 and 1e-30 in one sum, tiny-only and huge sums, and sums beyond float32 whose mean is not")
    func extremes() {
        let result = mean([[1e30, 1e-30], [1e-30, 3e-30], [0x1p-149, 0x1p-149],
                           [Float.greatestFiniteMagnitude, Float.greatestFiniteMagnitude], [-1e30, 1e30]],
                          groups: [0..<1, 1..<2], order: [1, 0])
        #expect(result.finite)
        #expect(result.mean[0] == Float((1e30 + 1e-30) / 2.0))
        #expect(result.mean[1] == Float(2e-30 as Double), "tiny values keep their precision: \(result.mean[1])")
        #expect(result.mean[2] == 0x1p-149)
        #expect(result.mean[3] == Float.greatestFiniteMagnitude, "a float sum would be ∞")
        #expect(result.mean[4] == 0)
    }

    @Test("only NaN and ∞ mark a sum diverged")
    func nonFinite() {
        for bad in [Float.nan, Float.infinity, -Float.infinity] {
            let result = mean([[1, bad]], groups: [0..<2], order: [0])
            #expect(!result.finite, "\(bad)")
        }
    }

    @Test("loss sums keep Doubles far beyond float32 and any order gives the same bits")
    func lossSums() {
        let losses: [Double] = [1e300, 2.5, 1e-200, 3e299, 7e12, 0]
        func total(_ order: [Int]) -> Double {
            let sum = GradientSum(count: 1, reduction: .exact)
            var zero: Float = 0
            for index in order {
                sum.add(gradient: &zero, statistics: SliceStatistics(samples: 1, lossSum: losses[index]))
            }
            return sum.lossSum
        }
        let forward = total(Array(losses.indices))
        #expect(abs(forward - 1.3e300) <= 1e-15 * 1.3e300)
        #expect(total(Array(losses.indices.reversed())).bitPattern == forward.bitPattern)
        #expect(total([1, 3, 0, 5, 2, 4]).bitPattern == forward.bitPattern)
        let small: [Double] = [7e12, 2.5, 1e-200]
        let sum = GradientSum(count: 1, reduction: .exact)
        var zero: Float = 0
        for loss in small { sum.add(gradient: &zero, statistics: SliceStatistics(samples: 1, lossSum: loss)) }
        #expect(sum.lossSum == 7e12 + 2.5)
    }

    @Test("a sum read from unaligned wire bytes adds as the sum itself")
    func unalignedBytes() {
        var random = Xoshiro(seed: 3)
        let count = 37
        let a = GradientSum(count: count, reduction: .exact), b = GradientSum(count: count, reduction: .exact)
        for sum in [a, b] {
            let values = Buffer<Float>((0..<count).map { _ in anyFloat(&random) / 4 })
            sum.add(gradient: values.pointer, statistics: SliceStatistics(samples: 1, lossSum: 3))
        }
        let direct = GradientSum(count: count, reduction: .exact)
        direct.add(a)
        direct.add(b)
        let viaBytes = GradientSum(count: count, reduction: .exact)
        viaBytes.add(a)
        let bytes = b.valueBytes
        let shifted = UnsafeMutableRawPointer.allocate(byteCount: bytes.count + 1, alignment: 8)
        defer { shifted.deallocate() }
        (shifted + 1).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        viaBytes.add(bytes: UnsafeRawBufferPointer(start: shifted + 1, count: bytes.count), samples: b.samples,
                     correct: 0, lossWords: b.lossWords, overflowed: false)
        #expect(Array(viaBytes.valueBytes) == Array(direct.valueBytes))
        #expect(viaBytes.lossSum.bitPattern == direct.lossSum.bitPattern)
    }
}

/// An exact sum of Floats: a 320-bit two's complement integer in units of 2⁻¹⁴⁹ (every finite Float is a whole
/// number of those, and 320 bits hold 2¹²⁸ · 2¹⁴⁹ · 2⁴⁰).
enum WideInteger {
    static func sum(_ values: [Float]) -> Double {
        var words = [UInt64](repeating: 0, count: 5)
        for value in values where value != 0 {
            let biased = Int((value.bitPattern >> 23) & 0xFF)
            let significand = UInt64(value.bitPattern & 0x7F_FFFF) | (biased == 0 ? 0 : 0x80_0000)
            let shift = max(biased, 1) - 1  // the significand's units are 2^(max(biased, 1) − 150)
            var addend = [UInt64](repeating: 0, count: 5)
            addend[shift / 64] = significand << UInt64(shift % 64)
            if shift % 64 > 40, shift / 64 + 1 < 5 { addend[shift / 64 + 1] = significand >> UInt64(64 - shift % 64) }
            if value < 0 {  // two's complement negation
                var carry: UInt64 = 1
                for i in 0..<5 {
                    let (v, o) = (~addend[i]).addingReportingOverflow(carry)
                    addend[i] = v
                    carry = o ? 1 : 0
                }
            }
            var carry: UInt64 = 0
            for i in 0..<5 {
                let (a, o1) = words[i].addingReportingOverflow(addend[i])
                let (b, o2) = a.addingReportingOverflow(carry)
                words[i] = b
                carry = (o1 || o2) ? 1 : 0
            }
        }
        let negative = words[4] >> 63 == 1
        if negative {
            var carry: UInt64 = 1
            for i in 0..<5 {
                let (v, o) = (~words[i]).addingReportingOverflow(carry)
                words[i] = v
                carry = o ? 1 : 0
            }
        }
        var magnitude = 0.0
        for i in (0..<5).reversed() { magnitude = magnitude * 0x1p64 + Double(words[i]) }
        return (negative ? -magnitude : magnitude) * 0x1p-149
    }
}
