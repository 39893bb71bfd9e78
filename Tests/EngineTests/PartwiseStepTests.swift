import Testing
@testable import Engine

/// Steps whose parts are updated one at a time, as a coordinator with `--overlap` does: the bits of one whole
/// update, and a step stopped half-way (a signal, too few workers) undone, with a checkpoint written during one
/// holding the state from before it.
@Suite struct PartwiseStepTests {
    struct Stop: Error {}

    /// This process's micro-shards, handed to the trainer part by part; it can stop a step after some parts, or
    /// look at the trainer in the middle of one.
    final class PartsSource: GradientSource {
        /// What the next calls do: hand the trainer an event, or run something first.
        enum Scripted {
            case event(StepEvent)
            case run(() throws -> Void)
        }

        let local: LocalGradientSource
        let parts: [Range<Int>]
        var stop: (step: Int, afterParts: Int)?
        var midStep: ((_ step: Int, _ partsDone: Int) -> Void)?
        /// Parts to update first with wrong gradients, then undo, then update with the right ones (values refused
        /// after use).
        var wrongFirst: Set<Int> = []
        private let wrong: Buffer<Float>
        private var script: [Scripted] = []

        init(_ options: TrainingOptions, spec: ModelSpec, data: Dataset, partSize: Int) {
            local = LocalGradientSource(ParallelSlices(spec: spec, loss: .crossEntropy, targetWidth: data.targetWidth,
                                                       microShardSize: options.microShardSize,
                                                       reduction: options.reduction, largestSlice: options.batchSize,
                                                       threads: 1, library: options.library), data: data)
            let count = spec.layout.parameterCount
            parts = stride(from: 0, to: count, by: partSize).map { $0 ..< min($0 + partSize, count) }
            wrong = Buffer(count: count)
            wrong.elements.initialize(repeating: 0.25)
        }

        func begin(_ order: StepOrder) throws {
            local.begin(order)
            guard case .update(let whole)? = local.next() else { throw Stop() }
            script = []
            // Last part first: the order must not matter.
            for (done, part) in parts.reversed().enumerated() {
                let step = order.step
                script.append(.run { [unowned self] in if let stop, stop.step == step, stop.afterParts == done { throw Stop() } })
                if wrongFirst.contains(done) {
                    script.append(.event(.update(ReadyPart(range: part, gradients: wrong.pointer, scale: 1, finite: true,
                                                           closesStep: false))))
                    script.append(.run { [unowned self] in midStep?(step, -1) })
                    script.append(.event(.undo(part)))
                }
                script.append(.event(.update(ReadyPart(range: part, gradients: whole.gradients, scale: whole.scale,
                                                       finite: whole.finite, closesStep: false))))
                script.append(.run { [unowned self] in midStep?(step, done + 1) })
            }
            script.reverse()
        }

        func next() throws -> StepEvent? {
            while let item = script.popLast() {
                switch item {
                case .event(let event): return event
                case .run(let body): try body()
                }
            }
            return nil
        }
    }

    static let data = Synthetic.blobs(samples: 240, classes: 4, features: 12, noise: 1, seed: 4)
    /// 12·40 + 40 + 40·4 + 4 = 684 parameters, in parts of 64 (the last of 44).
    static let spec = ModelSpec(inputs: 12, layers: [LayerSpec(units: 40, activation: .relu),
                                                     LayerSpec(units: 4, activation: .softmax)])

    static func options(_ optimizer: OptimizerConfig, _ reduction: Reduction, steps: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.batchSize = 48
        options.microShardSize = 16
        options.reduction = reduction
        options.optimizer = optimizer
        options.length = .steps(steps)
        return options
    }

    /// The weights and optimizer state as bits.
    static func state(_ trainer: Trainer) -> [[UInt32]] {
        ([trainer.parameters] + trainer.optimizer.state).map { $0.array.map(\.bitPattern) }
    }

    static func wholeSteps(_ optimizer: OptimizerConfig, _ reduction: Reduction, _ steps: Int) throws -> Trainer {
        let trainer = Trainer(spec: spec, loss: .crossEntropy, options: options(optimizer, reduction, steps: steps),
                              training: data)
        try trainer.run { _ in }
        return trainer
    }

    static let optimizers: [OptimizerConfig] = [
        .sgd({ var o = SGD.Options(); o.momentum = 0.9; o.nesterov = true; o.weightDecay = 0.01; return o }()),
        .adam({ var o = Adam.Options(); o.amsgrad = true; return o }()),
        .rmsprop({ var o = RMSProp.Options(); o.centered = true; o.momentum = 0.5; return o }()),
    ]

    @Test("updated part by part, in any order, the weights and optimizer state have the bits of whole updates",
          arguments: optimizers.indices, [Reduction.exact, .fast])
    func sameBits(optimizer: Int, reduction: Reduction) throws {
        let config = Self.optimizers[optimizer]
        let whole = try Self.wholeSteps(config, reduction, 8)
        let options = Self.options(config, reduction, steps: 8)
        let source = PartsSource(options, spec: Self.spec, data: Self.data, partSize: 64)
        let parts = Trainer(spec: Self.spec, loss: .crossEntropy, options: options, training: Self.data, source: source)
        try parts.run { _ in }
        #expect(Self.state(parts) == Self.state(whole) && parts.optimizer.steps == 8)
    }

    @Test("a step stopped after some of its parts is undone, and the run goes on to the same bits",
          arguments: optimizers.indices)
    func stoppedStepUndone(optimizer: Int) throws {
        let config = Self.optimizers[optimizer]
        let beforeStep3 = try Self.wholeSteps(config, .exact, 3), complete = try Self.wholeSteps(config, .exact, 8)
        let options = Self.options(config, .exact, steps: 8)
        let source = PartsSource(options, spec: Self.spec, data: Self.data, partSize: 64)
        source.stop = (step: 3, afterParts: 5)
        let trainer = Trainer(spec: Self.spec, loss: .crossEntropy, options: options, training: Self.data, source: source)
        #expect(throws: Stop.self) { try trainer.run { _ in } }
        #expect(trainer.step == 3 && trainer.optimizer.steps == 3)
        #expect(Self.state(trainer) == Self.state(beforeStep3), "the stopped step's parts were not undone")
        source.stop = nil
        try trainer.run { _ in }
        #expect(Self.state(trainer) == Self.state(complete))
    }

    @Test("parts updated from values refused later, undone and updated again, leave the bits of whole updates",
          arguments: optimizers.indices)
    func partsUndoneAndRedone(optimizer: Int) throws {
        let config = Self.optimizers[optimizer]
        let whole = try Self.wholeSteps(config, .exact, 6)
        let options = Self.options(config, .exact, steps: 6)
        let source = PartsSource(options, spec: Self.spec, data: Self.data, partSize: 64)
        source.wrongFirst = [0, 3, 10]
        let trainer = Trainer(spec: Self.spec, loss: .crossEntropy, options: options, training: Self.data, source: source)
        let beforeStep2 = try Self.wholeSteps(config, .exact, 2)
        var seen: [[UInt32]]?
        // A checkpoint read while a wrong part is in must still see the state before the step.
        source.midStep = { step, done in
            if step == 2, done == -1, seen == nil { seen = trainer.withStateBeforeStep { Self.state(trainer) } }
        }
        try trainer.run { _ in }
        #expect(seen == Self.state(beforeStep2))
        #expect(Self.state(trainer) == Self.state(whole) && trainer.optimizer.steps == 6)
    }

    @Test("in the middle of a step, the state a checkpoint reads is the state before it; after, the step goes on")
    func checkpointMidStep() throws {
        let config = Self.optimizers[1]
        let beforeStep3 = try Self.wholeSteps(config, .exact, 3), complete = try Self.wholeSteps(config, .exact, 6)
        let options = Self.options(config, .exact, steps: 6)
        let source = PartsSource(options, spec: Self.spec, data: Self.data, partSize: 64)
        let trainer = Trainer(spec: Self.spec, loss: .crossEntropy, options: options, training: Self.data, source: source)
        var seen: [[UInt32]]?, during: [[UInt32]]?
        source.midStep = { step, done in
            guard step == 3, done == 4 else { return }
            during = Self.state(trainer)
            seen = trainer.withStateBeforeStep { Self.state(trainer) }
            #expect(Self.state(trainer) == during!, "the step's updated parts did not come back")
        }
        try trainer.run { _ in }
        #expect(seen == Self.state(beforeStep3) && during != seen)
        #expect(Self.state(trainer) == Self.state(complete))
    }
}
