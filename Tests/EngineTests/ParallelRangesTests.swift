import Testing
@testable import Engine

/// Passes split over threads: the runs cover every index once, a check finds what lies in any run, and an update
/// gives the bits of one pass (the PyTorch goldens check the single pass itself).
struct ParallelRangesTests {
    @Test("runs cover every index exactly once, for any count and thread number; a check sees every run")
    func runsCoverAll() {
        for count in [0, 1, 65_535, 131_072, 300_007, 1_000_003] {
            for threads in [1, 2, 3, 8, 64] {
                let seen = Buffer<Int32>(count: count)
                let pointer = seen.pointer
                forEachRange(count, threads: threads) { range in for i in range { pointer[i] += 1 } }
                #expect(seen.array.allSatisfy { $0 == 1 }, "\(count) on \(threads) threads")
                for marked in Set([0, count / 2, count - 1]) where count > 0 {
                    #expect(anyRange(count, threads: threads) { $0.contains(marked) })
                }
                #expect(!anyRange(count, threads: threads) { $0.contains(count) })
            }
        }
    }

    @Test("every optimizer gives the same bits on 1 and 3 threads, over several steps", arguments: [
        OptimizerConfig.sgd(SGD.Options()), .sgd({ var o = SGD.Options(); o.momentum = 0.9; o.nesterov = true; o.weightDecay = 0.01; return o }()),
        .rmsprop(RMSProp.Options()), .adam(Adam.Options()), .adam({ var o = Adam.Options.adamW; o.amsgrad = true; return o }()),
    ])
    func threadsAgree(config: OptimizerConfig) {
        let count = 300_007  // three uneven runs, the last one short
        var random = Xoshiro(seed: 5)
        let start = (0..<count).map { _ in Float(random.nextUnitDouble() - 0.5) }
        let gradients = (0..<3).map { _ in Buffer<Float>((0..<count).map { _ in Float(random.nextUnitDouble() - 0.5) }) }
        var results: [[UInt32]] = []
        for threads in [1, 3] {
            let parameters = Buffer<Float>(start), optimizer = config.make(parameterCount: count)
            optimizer.threads = threads
            for gradient in gradients {
                optimizer.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 0.5, learningRate: 0.01)
            }
            results.append(parameters.array.map(\.bitPattern) + optimizer.state.flatMap { $0.array.map(\.bitPattern) })
        }
        #expect(results[0] == results[1], "\(config)")
        #expect(Array(results[0].prefix(count)) != start.map(\.bitPattern), "the update changed nothing")
    }
}
