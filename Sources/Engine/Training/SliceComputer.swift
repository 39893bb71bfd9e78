/// Computes the gradient sum of any slice of a batch: what the in-process trainer does for a whole batch and what a
/// worker does for its share.
///
/// A batch is cut into micro-shards of `microShardSize` samples from its start (the last may be shorter). In exact
/// mode each micro-shard is one forward/backward with the same shapes wherever it runs, and its gradient enters
/// the `GradientSum` in fixed point, so any split of the micro-shards gives the same bits. In fast mode a slice is
/// one forward/backward over all its samples.
package final class SliceComputer {
    package let network: Network
    package let microShardSize: Int
    package let reduction: Reduction
    /// Fast mode: where a slice's gradient goes when the sum already holds one.
    private let scratch: Buffer<Float>
    /// Exact mode: gradients of up to four micro-shards waiting to enter the sum in one pass.
    private let pending: [Buffer<Float>]
    private let pendingPointers = UnsafeMutablePointer<UnsafePointer<Float>>.allocate(capacity: 4)
    private let pendingStatistics = UnsafeMutablePointer<SliceStatistics>.allocate(capacity: 4)

    /// `largestSlice` bounds the samples a fast-mode slice may hold (the batch size).
    package init(spec: ModelSpec, loss: Loss, targetWidth: Int, microShardSize: Int, reduction: Reduction,
                largestSlice: Int, library: GEMMLibrary) {
        self.microShardSize = microShardSize
        self.reduction = reduction
        // No slice holds more than a batch, whatever the micro-shard size.
        let capacity = max(1, reduction == .exact ? min(microShardSize, largestSlice) : largestSlice)
        network = Network(spec: spec, loss: loss, targetWidth: targetWidth, capacity: capacity,
                          library: library)
        let parameterCount = network.layout.parameterCount
        scratch = Buffer(count: reduction == .fast ? parameterCount : 0)
        pending = reduction == .exact ? (0..<4).map { _ in Buffer(count: parameterCount) } : []
        for (i, buffer) in pending.enumerated() { pendingPointers[i] = UnsafePointer(buffer.pointer) }
    }

    deinit {
        pendingPointers.deallocate()
        pendingStatistics.deallocate()
    }

    /// Micro-shards in a batch of `batchSize` samples.
    package func microShardCount(batchSize: Int) -> Int { (batchSize + microShardSize - 1) / microShardSize }

    /// Adds the gradient sum of micro-shards `microShards` of `batch` (sample indices into `data`) to `sum`.
    package func accumulate(batch: UnsafeBufferPointer<Int>, microShards: Range<Int>, data: Dataset,
                           parameters: UnsafePointer<Float>, into sum: GradientSum) {
        let start = microShards.lowerBound * microShardSize
        let end = min(microShards.upperBound * microShardSize, batch.count)
        precondition(start >= 0 && start < end, "micro-shards \(microShards) lie outside a batch of \(batch.count)")
        accumulate(batch: batch, samples: start ..< end, data: data, parameters: parameters, into: sum)
    }

    /// Exact mode: writes micro-shard `microShard` of `batch`'s gradient sum into `gradient` (the parameter layout)
    /// and returns its statistics — the Floats a worker may send instead of their limbs.
    package func gradient(batch: UnsafeBufferPointer<Int>, microShard: Int, data: Dataset, parameters: UnsafePointer<Float>,
                         into gradient: UnsafeMutablePointer<Float>) -> SliceStatistics {
        let start = microShard * microShardSize, end = min(start + microShardSize, batch.count)
        precondition(reduction == .exact && start >= 0 && start < end,
                     "micro-shard \(microShard) lies outside a batch of \(batch.count)")
        gather(UnsafeBufferPointer(rebasing: batch[start ..< end]), from: data)
        return network.gradientSum(rows: end - start, parameters: parameters, gradient: gradient)
    }

    /// Adds the gradient sum of batch positions `samples` to `sum`, in workspace-sized slices. Exact sums need the
    /// positions to start on a micro-shard boundary (the workspace then holds one micro-shard).
    func accumulate(batch: UnsafeBufferPointer<Int>, samples: Range<Int>, data: Dataset,
                    parameters: UnsafePointer<Float>, into sum: GradientSum) {
        let end = samples.upperBound
        var position = samples.lowerBound, waiting = 0
        while position < end {
            let rows = min(network.capacity, end - position)
            gather(UnsafeBufferPointer(rebasing: batch[position ..< position + rows]), from: data)
            position += rows
            if reduction == .exact {
                // Up to four micro-shards are summed into the limbs in one pass over them.
                pendingStatistics[waiting] = network.gradientSum(rows: rows, parameters: parameters,
                                                                 gradient: pending[waiting].pointer)
                waiting += 1
                if waiting == 4 || position >= end {
                    // The last group is not overwritten before the sum is read: it may be held, not added.
                    let started = network.spans == nil ? 0 : SpanRecorder.now()
                    sum.addExact(UnsafeBufferPointer(start: pendingPointers, count: waiting),
                                 UnsafeBufferPointer(start: pendingStatistics, count: waiting), final: position >= end)
                    network.spans?.record(.exactSum, waiting, from: started)
                    waiting = 0
                }
            } else {
                // A fast sum's first slice goes straight into it, saving a copy.
                let target = sum.writableFloats ?? scratch.pointer
                let statistics = network.gradientSum(rows: rows, parameters: parameters, gradient: target)
                sum.add(gradient: target, statistics: statistics)
            }
        }
    }

    /// Loss sum and correct count of every sample of `data`, forward only, in chunks.
    package func evaluate(data: Dataset, parameters: UnsafePointer<Float>) -> SliceStatistics {
        var total = SliceStatistics()
        forEachChunk(of: data, parameters: parameters) { rows, _ in
            let chunk = network.evaluate(rows: rows)
            total.samples += chunk.samples
            total.lossSum += chunk.lossSum
            total.correct += chunk.correct
        }
        return total
    }

    /// The model's outputs for every sample of `data` (`count × outputs`).
    package func predict(data: Dataset, parameters: UnsafePointer<Float>) -> [Float] {
        let width = network.spec.outputs
        var outputs: [Float] = []
        outputs.reserveCapacity(data.count * width)
        forEachChunk(of: data, parameters: parameters) { rows, _ in
            outputs.append(contentsOf: UnsafeBufferPointer(start: network.output, count: rows * width))
        }
        return outputs
    }

    private func forEachChunk(of data: Dataset, parameters: UnsafePointer<Float>, _ body: (Int, Int) -> Void) {
        // Evaluation and prediction are no step's: a trace's recorder keeps its room for the steps.
        let spans = network.spans
        network.spans = nil
        defer { network.spans = spans }
        var start = 0
        while start < data.count {
            let rows = min(network.capacity, data.count - start)
            for r in 0..<rows { scratchIndex[r] = start + r }
            gather(UnsafeBufferPointer(start: scratchIndex.pointer, count: rows), from: data)
            network.forward(rows: rows, parameters: parameters)
            body(rows, start)
            start += rows
        }
    }

    private lazy var scratchIndex = Buffer<Int>(count: network.capacity)

    /// Copies the samples at `indices` into the network's input and target rows.
    private func gather(_ indices: UnsafeBufferPointer<Int>, from data: Dataset) {
        let inputWidth = data.featureWidth, targetWidth = data.targetWidth
        let input = network.input.pointer, targets = network.targets.pointer
        let features = data.features
        for (row, sample) in indices.enumerated() {
            features.copyRow(sample, into: input + row * inputWidth)
        }
        data.targets.withUnsafeBufferPointer { values in
            for (row, sample) in indices.enumerated() {
                (targets + row * targetWidth).update(from: values.baseAddress! + sample * targetWidth,
                                                     count: targetWidth)
            }
        }
    }
}
