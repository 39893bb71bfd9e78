/// Splits a batch's micro-shards into contiguous runs, one per worker, in proportion to each worker's measured
/// speed. Which worker computes what never changes the result in exact mode; it only balances the wait.
package enum Sharding {
    /// Contiguous ranges covering `0..<microShards`. When there are at least as many micro-shards as workers each
    /// gets one (so every worker's speed keeps being measured); the rest go by `speeds[i] / Σ speeds`, largest
    /// remainders rounded up, ties to the lower index. With fewer micro-shards than workers the fastest get them.
    package static func split(_ microShards: Int, speeds: [Double]) -> [Range<Int>] {
        precondition(!speeds.isEmpty, "no workers to split over")
        let weights = speeds.map { $0.isFinite && $0 > 0 ? $0 : 1e-9 }
        let floor = microShards >= weights.count ? 1 : 0
        let rest = microShards - floor * weights.count
        let total = weights.reduce(0, +)
        let exact = weights.map { Double(rest) * $0 / total }
        var counts = exact.map { Int($0.rounded(.down)) }
        let order = exact.indices.sorted { (exact[$0] - Double(counts[$0]), -$0) > (exact[$1] - Double(counts[$1]), -$1) }
        for i in order.prefix(rest - counts.reduce(0, +)) { counts[i] += 1 }
        counts = counts.map { $0 + floor }
        var start = 0
        return counts.map { count in
            defer { start += count }
            return start ..< start + count
        }
    }
}
