import AllocationCounter
import Testing
@testable import Engine

/// The steady-state training step allocates nothing.
struct AllocationTests {
    @Test("a steady-state epoch of training steps allocates nothing", .serialized, arguments: [Reduction.exact, .fast])
    func steadyStateStepAllocatesNothing(reduction: Reduction) throws {
        // The counter itself must work, or a zero below would prove nothing.
        allocation_counting(1)
        let probe = [Int](repeating: 1, count: 1000)
        allocation_counting(0)
        #expect(allocation_count() > 0 && probe.count == 1000)

        let data = Synthetic.blobs(samples: 300, classes: 4, features: 8, noise: 1, seed: 2)
        let spec = ModelSpec(inputs: 8, layers: [LayerSpec(units: 32, activation: .gelu),
                                                 LayerSpec(units: 16, activation: .tanh),
                                                 LayerSpec(units: 4, activation: .softmax)])
        for optimizer in [OptimizerConfig.adam(Adam.Options()), .sgd(SGD.Options()), .rmsprop(RMSProp.Options())] {
            var options = TrainingOptions()
            options.batchSize = 50
            options.microShardSize = 16
            options.reduction = reduction
            options.optimizer = optimizer
            options.schedule = Schedule(shape: .cosine(period: 10, minimum: 0), warmup: 2, unit: .step)
            options.length = .epochs(3)
            let trainer = Trainer(spec: spec, loss: .crossEntropy, options: options, training: data)
            var perEpoch: [Int] = []
            perEpoch.reserveCapacity(8)
            let before = allocation_count()
            allocation_counting(1)
            try trainer.run { _ in perEpoch.append(allocation_count()) }
            allocation_counting(0)
            // Epochs 2 and 3 (6 steps each) must add no allocation beyond what an epoch report costs.
            let epochCosts = zip(perEpoch.dropFirst(), perEpoch).map { $0 - $1 }
            let first = perEpoch.first.map { $0 - before } ?? -1
            #expect(epochCosts.allSatisfy { $0 == 0 },
                    "\(optimizer) \(reduction): allocations per epoch \(epochCosts), first epoch \(first)")
        }
    }
}
