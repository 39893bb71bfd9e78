/// Places a worker's timeline (`--trace`) on the coordinator's clock. The two clocks' offset is measured as NTP does,
/// from four times of each traced result: the assignment sent (S) and the result in (A) on the coordinator's clock,
/// the assignment in (R) and the report sent (T) on the worker's. Taking the two transfers as equally long,
/// offset = ((R − S) + (T − A)) / 2, wrong by at most half the time the transfers took, A − S − (T − R). Of a worker's
/// last 16 results, the one whose transfers took least gives the offset, as NTP's clock filter does: over 16 steps two
/// machines' clocks drift apart by microseconds at most.
package struct WorkerClocks {
    private struct Sample {
        var offset: Int64, delay: Int64
    }
    private var samples: [UInt32: [Sample]] = [:]
    static let kept = 16

    package init() {}

    /// Takes a result's times (nanoseconds: `sent` and `arrived` on the coordinator's clock, `received` and `reported`
    /// on the worker's) and returns the offset to place its timeline with (worker's clock minus coordinator's) and how
    /// far off it may be, half the transfers' time of the result it came from.
    package mutating func offset(worker: UInt32, sent: Int64, arrived: Int64, received: Int64, reported: Int64)
        -> (offset: Int64, uncertainty: Int64) {
        let sample = Sample(offset: ((received - sent) + (reported - arrived)) / 2,
                            delay: (arrived - sent) - (reported - received))
        var kept = samples[worker, default: []]
        kept.append(sample)
        if kept.count > Self.kept { kept.removeFirst() }
        samples[worker] = kept
        let best = kept.min { $0.delay < $1.delay }!
        return (best.offset, max(0, best.delay) / 2)
    }
}
