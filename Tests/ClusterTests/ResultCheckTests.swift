import CExactSum
@testable import Cluster
import Engine
import Testing

/// An owner's check of a contribution it just unpacked decides from the packed widths when they lie inside the bounds,
/// and reads the limbs otherwise: it must say what the full check says of the same limbs, at the bound and just
/// beyond it, for every number of micro-shards.
struct ResultCheckTests {
    @Test("the check from packed widths says what reading every limb says: at, inside and beyond the bound")
    func widthsDecideAsTheLimbs() {
        var random = Xoshiro(seed: 71)
        let count = 100
        var verdicts: Set<Bool> = [], decidedByWidths = 0
        for trial in 0..<200 {
            let microShards = [1, 2, 3, 4, 16, 4096, 9999][trial % 7]
            let limit = ResultCheck.limbLimit(microShards: microShards)
            // Most limbs ordinary; one at, just inside or just beyond the bound, or a window just outside.
            var high = (0..<count).map { _ in Int64(bitPattern: random.next()) >> 20 }
            var low = (0..<count).map { _ in (Int64(bitPattern: random.next()) >> 24) << 8 }
            var windows = (0..<count).map { _ in Int8(random.nextIndex(below: 6)) - 3 }
            let at = random.nextIndex(below: count)
            let edge = [limit, -limit, limit - 1, limit + 1, -limit - 1, limit / 2 + 1, limit + limit / 2][random.nextIndex(below: 7)]
            switch random.nextIndex(below: 3) {
            case 0: high[at] = edge
            case 1: low[at] = edge & ~0xFF
            default: windows[at] = [-4, 3, -3, 2][random.nextIndex(below: 4)]
            }
            let sum = high.withUnsafeBytes(Array.init) + low.withUnsafeBytes(Array.init) + windows.map { UInt8(bitPattern: $0) }
            var packed = [UInt8](repeating: 0, count: cexact_pack_bound(count))
            let length = cexact_pack(sum, count, &packed)
            var unpacked = [UInt8](repeating: 0, count: sum.count), bounds = cexact_unpacked_bounds()
            #expect(cexact_unpack_bounded(packed, length, count, &unpacked, &bounds) == 1 && unpacked == sum)
            unpacked.withUnsafeBytes { bytes in
                let full = ResultCheck.limbsImplausibility(bytes, microShards: microShards, threads: 1)
                let fromWidths = ResultCheck.unpackedImplausibility(bytes, bounds: bounds, microShards: microShards)
                #expect(full == fromWidths, "trial \(trial): \(microShards) micro-shards, \(edge) at \(at)")
                verdicts.insert(full == nil)
                // The widths alone decide (nothing is read again) where they lie inside the bound.
                let widest = Int32(64 - limit.leadingZeroBitCount)
                if bounds.high_bits <= widest && bounds.low_bits <= widest && bounds.lowest_window >= -3
                    && bounds.highest_window <= 2 {
                    decidedByWidths += 1
                    #expect(full == nil)
                }
            }
        }
        #expect(verdicts == [true, false] && decidedByWidths > 50, "both verdicts met; \(decidedByWidths) by widths")
    }
}
