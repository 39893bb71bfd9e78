import CExactSum
import Foundation
import Engine
import Wire

/// What a worker's result can be, given what it was asked: a broken (or hostile) worker's impossible values are
/// refused, naming it, before they reach the sum. Plausible but wrong values cannot be told from right ones; keys
/// keep strangers out, and these checks catch broken workers.
enum ResultCheck {
    /// Why `frame`, the answer for `microShards` micro-shards of `samples` samples, cannot be a real result; nil if
    /// it can.
    static func implausibility(_ frame: GradientFrame, microShards: Int, samples: Int) -> String? {
        guard frame.correct >= 0, frame.correct <= samples else {
            return "\(frame.correct) correct predictions out of \(samples) samples"
        }
        // On this machine's cores: the last result's check is on the step's critical path, with the workers idle
        // (an earlier result's check shares them with the workers still computing).
        let threads = ProcessInfo.processInfo.activeProcessorCount
        // Diverged (a NaN or ∞): the step stops the run with its own message. A NaN or ∞ among fast values is the
        // update's to find, which stops the run the same way.
        guard frame.exact, !frame.overflowed else { return nil }
        // Each micro-shard's value deposits at most GradientSum.depositLimit in each limb, and a window's raise
        // only moves a limb's sum, so no limb of a real result exceeds depositLimit × micro-shards (≤ 2⁶²).
        let limit = limbLimit(microShards: microShards)
        guard frame.lossHigh.magnitude <= limit.magnitude, frame.lossLow.magnitude <= limit.magnitude,
              GradientSum.lossWindows.contains(Int(frame.lossWindow)) else {
            return "a loss sum no \(microShards) micro-shards can produce"
        }
        // Micro-shards' Floats: any finite value is one a micro-shard can produce, and a NaN or ∞ among them makes
        // the step's mean say the run diverged, as a worker's `overflowed` does.
        guard frame.floatShards == 0, !frame.inParts else { return nil }
        return frame.withValues { limbsImplausibility($0, microShards: microShards, threads: threads) }
    }

    /// Whether `frame` says its sum saw a NaN or ∞, or holds one among its Floats (a fast sum, or micro-shards'
    /// Floats). An exact sum's limbs hold none: a worker's sum that saw one says so.
    static func holdsNonFinite(_ frame: GradientFrame) -> Bool {
        if frame.overflowed { return true }
        guard !frame.inParts, !frame.exact || frame.floatShards > 0 else { return false }
        return frame.withValues { bytes in
            // The largest magnitude's bits: 0x7F800000 or more is a NaN or ∞. A maximum of integers, so the pass
            // vectorises (about a read of the values).
            var largest: UInt32 = 0
            for i in 0..<bytes.count / 4 {
                largest = max(largest, bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self) & 0x7FFF_FFFF)
            }
            return largest >= 0x7F80_0000
        }
    }

    /// The bound on every limb of a real sum of `microShards` micro-shards.
    static func limbLimit(microShards: Int) -> Int64 {
        GradientSum.depositLimit * Int64(min(max(1, microShards), GradientSum.maximumMicroShards))
    }

    /// As `limbsImplausibility`, of limbs `cexact_unpack_bounded` just wrote: when the packed widths and windows
    /// already lie inside the bounds (as a real sum's do), the limbs are not read again.
    static func unpackedImplausibility(_ bytes: UnsafeRawBufferPointer, bounds: cexact_unpacked_bounds,
                                       microShards: Int) -> String? {
        // w bits in two's complement hold magnitudes up to 2^(w-1): up to the limit for w ≤ ⌊log2 limit⌋ + 1.
        let widest = Int32(64 - limbLimit(microShards: microShards).leadingZeroBitCount)
        let windows = GradientSum.gradientWindows
        if bounds.high_bits <= widest, bounds.low_bits <= widest, windows.contains(Int(bounds.lowest_window)),
           windows.contains(Int(bounds.highest_window)) {
            return nil
        }
        return limbsImplausibility(bytes, microShards: microShards, threads: 1)
    }

    /// Why `bytes`, an exact sum of `microShards` micro-shards in `cexact_merge`'s layout, cannot be one; nil if it
    /// can.
    static func limbsImplausibility(_ bytes: UnsafeRawBufferPointer, microShards: Int, threads: Int) -> String? {
        let limit = limbLimit(microShards: microShards)
        let windows = GradientSum.gradientWindows
        let count = bytes.count / GradientFrame.exactBytesPerParameter
        // Bit 0: every limb within ±limit; bit 1: every window in range (`cexact_within`, in vector registers).
        var verdict: Int32 = 3
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: maximumParts) { verdicts in
            verdicts.initialize(repeating: 3)
            forEachPart(count, threads: threads, alignment: 16) { part, range in
                verdicts[part] = cexact_within(bytes.baseAddress, count, range.lowerBound, range.upperBound,
                                               UInt64(limit), Int32(windows.lowerBound), Int32(windows.upperBound))
            }
            verdict = verdicts.reduce(3) { $0 & $1 }
        }
        guard verdict & 1 != 0 else {
            return "a gradient limb beyond ±\(limit), what \(microShards) micro-shards of at most 2^50 each can add up to"
        }
        guard verdict & 2 != 0 else {
            return "a gradient window outside \(windows.lowerBound) to \(windows.upperBound)"
        }
        return nil
    }
}

extension GradientFrame {
    /// The result's loss sum as a `GradientSum` takes it.
    var lossWords: LossWords { LossWords(high: lossHigh, low: lossLow, window: lossWindow) }
}
