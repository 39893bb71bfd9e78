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
        // Diverged (a NaN, ∞ or huge value): the step stops the run with its own message.
        guard frame.exact, !frame.overflowed else { return nil }
        // Each micro-shard adds at most GradientSum.limbLimit to a limb (a larger value marks it overflowed).
        let bound = GradientSum.limbLimit.multipliedReportingOverflow(by: Int64(max(1, microShards)))
        let limit = bound.overflow ? Int64.max : bound.partialValue
        guard frame.lossHigh.magnitude <= limit.magnitude, frame.lossLow.magnitude <= limit.magnitude,
              GradientSum.lossWindows.contains(Int(frame.lossWindow)) else {
            return "a loss sum no \(microShards) micro-shards can produce"
        }
        // Every limb must lie within ±2^bits, the power of two at or above the limit: v + 2^bits then lies in
        // [0, 2^(bits+1)) and shifts to zero; every window within `gradientWindows`. Adds, shifts and ors only, so
        // the pass vectorises on any x86-64 and costs about one read of the message.
        let bits = UInt64(64 - UInt64(limit.magnitude - 1).leadingZeroBitCount)
        let offset = Int64(1) << min(bits, 62)
        let lowest = Int8(GradientSum.gradientWindows.lowerBound)
        let windowSpan = UInt8(GradientSum.gradientWindows.count - 1)
        let (limbsOutside, windowsOutside) = frame.withValues { bytes -> (UInt64, Bool) in
            var any: UInt64 = 0
            let count = bytes.count / GradientFrame.exactBytesPerParameter
            if bits < 62 {
                if Int(bitPattern: bytes.baseAddress) % 8 == 0 {
                    let limbs = bytes.baseAddress!.assumingMemoryBound(to: Int64.self)
                    for index in 0 ..< 2 * count { any |= UInt64(bitPattern: limbs[index] &+ offset) >> (bits + 1) }
                } else {
                    for index in 0 ..< 2 * count {
                        let limb = bytes.loadUnaligned(fromByteOffset: 8 * index, as: Int64.self)
                        any |= UInt64(bitPattern: limb &+ offset) >> (bits + 1)
                    }
                }
            }
            let windows = (bytes.baseAddress! + 16 * count).assumingMemoryBound(to: Int8.self)
            var highest: UInt8 = 0
            for index in 0..<count { highest = max(highest, UInt8(bitPattern: windows[index] &- lowest)) }
            return (any, highest > windowSpan)
        }
        guard limbsOutside == 0 else {
            return "a gradient limb beyond the ±2^\(bits) that \(microShards) micro-shards can produce"
        }
        guard !windowsOutside else {
            return "a gradient window outside \(GradientSum.gradientWindows.lowerBound) to "
                + "\(GradientSum.gradientWindows.upperBound)"
        }
        return nil
    }
}
