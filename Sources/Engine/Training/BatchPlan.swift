/// Which samples form each batch: epochs, batches and iterations as the seed's table defines them.
///
/// 1000 samples with batch 100 give 10 iterations per epoch. Each epoch's order is a seeded shuffle (or the data's
/// own order), a pure function of (seed, epoch), so any process can rebuild it. The last partial batch is kept
/// unless `dropLast` is set.
package struct BatchPlan: Sendable, Equatable {
    package let sampleCount: Int
    package let batchSize: Int
    package let shuffle: Bool
    package let dropLast: Bool
    package let seed: UInt64

    package init(sampleCount: Int, batchSize: Int, shuffle: Bool, dropLast: Bool, seed: UInt64) {
        precondition(sampleCount > 0 && batchSize > 0, "a batch plan needs samples and a positive batch size")
        self.sampleCount = sampleCount
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.seed = seed
    }

    /// Iterations per epoch.
    package var batchesPerEpoch: Int {
        dropLast ? sampleCount / batchSize : (sampleCount + batchSize - 1) / batchSize
    }

    /// Writes epoch `epoch`'s sample order into `order` (`sampleCount` elements), without allocating.
    package func writeOrder(epoch: Int, into order: UnsafeMutableBufferPointer<Int>) {
        precondition(order.count == sampleCount, "order buffer holds \(order.count), plan has \(sampleCount)")
        for i in 0..<sampleCount { order[i] = i }
        if shuffle {
            var random = Xoshiro(seed: seed, stream: RandomStream.shuffle(epoch: epoch))
            random.shuffle(order)
        }
    }

    /// The positions in the epoch order of batch `batch`.
    package func range(ofBatch batch: Int) -> Range<Int> {
        let start = batch * batchSize
        return start ..< min(start + batchSize, sampleCount)
    }
}
