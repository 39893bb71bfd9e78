import Dispatch

/// Computes a range of a batch's micro-shards on several threads of this process, each with its own workspace
/// and single-threaded products, and adds their sums.
///
/// Threads take contiguous runs. In exact mode the result has the same bits for any thread count (the sums are
/// integer); in fast mode each thread's run is one GEMM and the Float sums depend on the count.
package final class ParallelSlices {
    package let threads: Int
    package let reduction: Reduction
    /// One per thread; the first also serves evaluation and prediction.
    package let computers: [SliceComputer]
    private let partials: [GradientSum]

    package init(spec: ModelSpec, loss: Loss, targetWidth: Int, microShardSize: Int, reduction: Reduction,
                largestSlice: Int, threads: Int, library: GEMMLibrary) {
        self.threads = max(1, threads)
        self.reduction = reduction
        computers = (0..<self.threads).map { _ in
            SliceComputer(spec: spec, loss: loss, targetWidth: targetWidth, microShardSize: microShardSize,
                          reduction: reduction, largestSlice: largestSlice, library: library)
        }
        partials = (1..<self.threads).map { _ in
            GradientSum(count: spec.layout.parameterCount, reduction: reduction)
        }
    }

    /// Adds the gradient sum of micro-shards `microShards` of `batch` to `sum`.
    ///
    /// Exact sums split whole micro-shards over the threads (each run starts on a micro-shard boundary); fast sums
    /// have no micro-shard bits to keep, so threads split the samples themselves and a batch of one micro-shard
    /// still uses every thread.
    package func accumulate(batch: UnsafeBufferPointer<Int>, microShards: Range<Int>, data: Dataset,
                           parameters: UnsafePointer<Float>, into sum: GradientSum) {
        let size = computers[0].microShardSize
        let samples = microShards.lowerBound * size ..< min(microShards.upperBound * size, batch.count)
        let worthSplitting = reduction == .exact ? microShards.count > 1 : samples.count >= 2 * threads
        guard threads > 1, worthSplitting else {
            computers[0].accumulate(batch: batch, samples: samples, data: data, parameters: parameters, into: sum)
            return
        }
        let work = UncheckedSendable((self, batch, data, parameters, sum))
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let (me, batch, data, parameters, sum) = work.value
            let rows: Range<Int>
            if me.reduction == .exact {
                // A thread's run may be empty, or start past the batch's end (more threads than micro-shards, a
                // short last batch): clamped, it is an empty range rather than an inverted one.
                let run = me.share(of: microShards, thread: thread), end = min(run.upperBound * size, batch.count)
                rows = min(run.lowerBound * size, end) ..< end
            } else {
                rows = me.share(of: samples, thread: thread)
            }
            let target = thread == 0 ? sum : me.partials[thread - 1]
            if thread > 0 {
                target.reset()
                // A partial is read (added to `sum`) before this computer runs again: it may hold its Floats too.
                target.holdsInputs = sum.holdsInputs
            }
            guard !rows.isEmpty else { return }
            me.computers[thread].accumulate(batch: batch, samples: rows, data: data, parameters: parameters,
                                            into: target)
        }
        // An empty partial adds nothing.
        for partial in partials { sum.add(partial) }
    }

    /// Exact mode: writes the gradient sum of each micro-shard `microShards[i]` of `batch` into `targets[i]` and its
    /// statistics into `statistics[i]`, the threads taking contiguous runs.
    package func gradients(batch: UnsafeBufferPointer<Int>, microShards: UnsafeBufferPointer<Int>, data: Dataset,
                          parameters: UnsafePointer<Float>, into targets: UnsafeBufferPointer<UnsafeMutablePointer<Float>>,
                          statistics: UnsafeMutablePointer<SliceStatistics>) {
        precondition(reduction == .exact && targets.count == microShards.count, "one target per exact micro-shard")
        guard threads > 1, microShards.count > 1 else {
            return computeShare(0 ..< microShards.count, batch, microShards, data, parameters, targets, statistics,
                                on: computers[0])
        }
        let work = UncheckedSendable((self, batch, microShards, data, parameters, targets, statistics))
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            let (me, batch, microShards, data, parameters, targets, statistics) = work.value
            me.computeShare(me.share(of: 0 ..< microShards.count, thread: thread), batch, microShards, data, parameters,
                            targets, statistics, on: me.computers[thread])
        }
    }

    private func computeShare(_ items: Range<Int>, _ batch: UnsafeBufferPointer<Int>,
                              _ microShards: UnsafeBufferPointer<Int>, _ data: Dataset, _ parameters: UnsafePointer<Float>,
                              _ targets: UnsafeBufferPointer<UnsafeMutablePointer<Float>>,
                              _ statistics: UnsafeMutablePointer<SliceStatistics>, on computer: SliceComputer) {
        for i in items {
            statistics[i] = computer.gradient(batch: batch, microShard: microShards[i], data: data,
                                              parameters: parameters, into: targets[i])
        }
    }

    /// `--trace`: a recorder for each computing thread, numbered from 1 (0 is the caller's own).
    package func makeRecorders() -> [SpanRecorder] {
        computers.indices.map { SpanRecorder(thread: UInt8(min($0 + 1, 255))) }
    }

    /// Each computing thread's layers go into its recorder from now on (`recorders` from `makeRecorders`; nil: none).
    package func recordSpans(_ recorders: [SpanRecorder]?) {
        for (i, computer) in computers.enumerated() { computer.network.spans = recorders?[i] }
    }

    /// Thread `thread`'s contiguous run of `range`, as even as whole units allow.
    func share(of range: Range<Int>, thread: Int) -> Range<Int> {
        let base = range.count / threads, extra = range.count % threads
        let start = range.lowerBound + thread * base + min(thread, extra)
        return start ..< start + base + (thread < extra ? 1 : 0)
    }
}

/// Hands non-Sendable references to worker threads whose use of them the caller keeps disjoint.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
