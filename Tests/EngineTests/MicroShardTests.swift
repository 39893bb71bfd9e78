import Foundation
import Testing
@testable import Engine

/// The exactness scheme: the same batch split any way over micro-shard ranges gives the same gradient bits.
struct MicroShardTests {
    let spec = ModelSpec(inputs: 6, layers: [LayerSpec(units: 16, activation: .relu),
                                             LayerSpec(units: 8, activation: .tanh),
                                             LayerSpec(units: 4, activation: .softmax)])
    let data = Synthetic.blobs(samples: 203, classes: 4, features: 6, noise: 1.5, seed: 5)
    let microShard = 8

    /// Sum of the batch's micro-shards `groups` (each computed by its own SliceComputer, as separate workers
    /// would), added in the given order; returns the mean gradient's bit patterns and the loss sum.
    func meanGradient(batch: [Int], groups: [Range<Int>], parameters: Buffer<Float>,
                      reduction: Reduction = .exact) -> ([UInt32], Double) {
        let total = GradientSum(count: parameters.count, reduction: reduction)
        for group in groups {
            let worker = SliceComputer(spec: spec, loss: .crossEntropy, targetWidth: 1, microShardSize: microShard,
                                       reduction: reduction, largestSlice: batch.count, library: .oneDNN)
            let part = GradientSum(count: parameters.count, reduction: reduction)
            batch.withUnsafeBufferPointer {
                worker.accumulate(batch: $0, microShards: group, data: data, parameters: parameters.pointer, into: part)
            }
            total.add(part)
        }
        let mean = Buffer<Float>(count: parameters.count)
        #expect(total.writeMean(into: mean.pointer))
        #expect(total.samples == batch.count)
        return (mean.array.map(\.bitPattern), total.lossSum)
    }

    /// Initial weights, the 203 samples in a shuffled order (26 micro-shards, the last holding 3 samples), and the
    /// whole batch's mean gradient and loss sum computed in one group: the reference a split must match.
    func shuffledBatch(seed: UInt64) -> (Buffer<Float>, [Int], Int, ([UInt32], Double)) {
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: 11)
        var order = Array(0..<data.count)
        var random = Xoshiro(seed: seed)
        order.withUnsafeMutableBufferPointer { random.shuffle($0) }
        let shards = (data.count + microShard - 1) / microShard
        return (parameters, order, shards, meanGradient(batch: order, groups: [0..<shards], parameters: parameters))
    }

    @Test("1, 2, 3 and uneven splits give the same bits, in any order")
    func groupingIndependence() {
        let (parameters, order, shards, reference) = shuffledBatch(seed: 1)
        let splits: [[Range<Int>]] = [
            [0..<13, 13..<shards],
            [0..<9, 9..<18, 18..<shards],
            [20..<shards, 0..<1, 1..<20],
            (0..<shards).map { $0 ..< $0 + 1 }.reversed(),
        ]
        for split in splits {
            let result = meanGradient(batch: order, groups: split, parameters: parameters)
            #expect(result.0 == reference.0, "split \(split) changed the gradient bits")
            #expect(result.1.bitPattern == reference.1.bitPattern, "split \(split) changed the loss sum bits")
        }
    }

    @Test("micro-shards handed over as Floats (on 1 and 2 threads), mixed with limb results, give the same bits")
    func floatResults() {
        let (parameters, order, shards, reference) = shuffledBatch(seed: 3)
        let count = parameters.count
        // Workers' shares: Floats for runs of up to four micro-shards, limbs for the two longer ones.
        let shares: [(Range<Int>, floats: Bool)] = [(0..<4, true), (4..<11, false), (11..<12, true), (12..<15, true),
                                                    (15..<22, false), (22..<shards, true)]
        for threads in [1, 2] {
            for holds in [true, false] {
                let total = GradientSum(count: count, reduction: .exact)
                total.holdsInputs = holds
                let slices = ParallelSlices(spec: spec, loss: .crossEntropy, targetWidth: 1, microShardSize: microShard,
                                            reduction: .exact, largestSlice: order.count, threads: threads,
                                            library: .oneDNN)
                var kept: [AnyObject] = []
                for (share, floats) in shares {
                    order.withUnsafeBufferPointer { batch in
                        if floats {
                            let buffers = share.map { _ in Buffer<Float>(count: count) }
                            kept.append(contentsOf: buffers)
                            let indices = Array(share), targets = buffers.map(\.pointer)
                            var statistics = [SliceStatistics](repeating: SliceStatistics(), count: share.count)
                            indices.withUnsafeBufferPointer { i in
                                targets.withUnsafeBufferPointer { t in
                                    slices.gradients(batch: batch, microShards: i, data: data,
                                                     parameters: parameters.pointer, into: t, statistics: &statistics)
                                }
                            }
                            let summary = statistics.withUnsafeBufferPointer { GradientSum.exactSummary(of: $0) }
                            buffers.map { UnsafePointer($0.pointer) }.withUnsafeBufferPointer {
                                total.add(floats: $0, summary: summary)
                            }
                        } else {
                            let part = GradientSum(count: count, reduction: .exact)
                            kept.append(part)
                            slices.accumulate(batch: batch, microShards: share, data: data,
                                              parameters: parameters.pointer, into: part)
                            total.add(bytes: part.valueBytes, samples: part.samples, correct: part.correct,
                                      lossWords: part.lossWords, overflowed: part.overflowed)
                        }
                    }
                }
                let mean = Buffer<Float>(count: count)
                #expect(total.writeMean(into: mean.pointer) && total.samples == order.count)
                #expect(mean.array.map(\.bitPattern) == reference.0, "\(threads) threads, holding \(holds)")
                #expect(total.lossSum.bitPattern == reference.1.bitPattern)
                withExtendedLifetime(kept) {}
            }
        }
    }

    @Test("plain Float sums of the same split do change bits (what the exact scheme prevents)")
    func floatSumsDependOnGrouping() {
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: 11)
        let batch = Array(0..<data.count), shards = (data.count + microShard - 1) / microShard
        func floatMean(_ groups: [Range<Int>]) -> [UInt32] {
            meanGradient(batch: batch, groups: groups, parameters: parameters, reduction: .fast).0
        }
        #expect(floatMean([0..<shards]) != floatMean([0..<9, 9..<18, 18..<shards]))
    }

    @Test("exact and fast reductions agree to float rounding")
    func exactMatchesFastPath() {
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: 3)
        let batch = Array(0..<100)
        func mean(_ reduction: Reduction) -> [Float] {
            let computer = SliceComputer(spec: spec, loss: .crossEntropy, targetWidth: 1, microShardSize: microShard,
                                         reduction: reduction, largestSlice: batch.count, library: .oneDNN)
            let sum = GradientSum(count: parameters.count, reduction: reduction)
            batch.withUnsafeBufferPointer {
                computer.accumulate(batch: $0, microShards: 0 ..< computer.microShardCount(batchSize: 100),
                                    data: data, parameters: parameters.pointer, into: sum)
            }
            let out = Buffer<Float>(count: parameters.count)
            sum.writeMean(into: out.pointer)
            return out.array
        }
        let exact = mean(.exact), fast = mean(.fast)
        #expect(firstMismatch(exact, fast, relative: 1e-4, absolute: 1e-6) == nil)
    }
}

struct ThreadCountTests {
    @Test("exact training gives the same weights with 1 to 9, 16 and 64 threads (short and empty shares), and fast mode runs with any count",
          arguments: [Reduction.exact, .fast])
    func sameBitsAnyThreadCount(reduction: Reduction) throws {
        let data = Synthetic.spirals(samples: 203, classes: 3, noise: 0.05, seed: 2)
        let spec = ModelSpec(inputs: 2, layers: [LayerSpec(units: 32, activation: .relu),
                                                 LayerSpec(units: 3, activation: .softmax)])
        func weights(threads: Int) throws -> [UInt32] {
            var options = TrainingOptions()
            options.batchSize = 50
            options.microShardSize = 8
            options.length = .epochs(3)
            options.threads = threads
            options.reduction = reduction
            let trainer = Trainer(spec: spec, loss: .crossEntropy, options: options, training: data)
            try trainer.run { _ in }
            return trainer.parameters.array.map(\.bitPattern)
        }
        // 203 samples in batches of 50: 7 micro-shards of 8 (the last of 2), and a last batch of 3 samples in one
        // micro-shard, so from 2 threads on some get a short share and from 8 on some get none.
        let one = try weights(threads: 1)
        for threads in Array(2...9) + [16, 64] {
            let other = try weights(threads: threads)
            if reduction == .exact { #expect(other == one, "\(threads) threads") }
            #expect(other.allSatisfy { Float(bitPattern: $0).isFinite }, "\(threads) threads")
        }
    }
}
