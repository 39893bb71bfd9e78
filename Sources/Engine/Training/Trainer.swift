/// Where a step's gradient sum comes from: this process's threads, or worker processes.
public protocol GradientSource: AnyObject {
    /// Adds the gradient sum of all `microShards` micro-shards of `batch` (sample indices, in epoch order; batch
    /// number `batchIndex` of `epoch`) at `parameters` into `sum`, which is empty.
    func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                    parameters: Buffer<Float>, into sum: GradientSum) throws
}

/// The trainer: forward → loss → backward → update over epochs and batches.
///
/// Each step sums the batch's micro-shard gradients (from a `GradientSource`: by default this process's threads),
/// divides once by the batch's sample count, and hands the mean to the optimizer. Buffers are built here; the
/// steady-state step allocates nothing.
public final class Trainer {
    public let spec: ModelSpec
    public let loss: Loss
    public let options: TrainingOptions
    public let training: Dataset
    public let validation: Dataset?
    public let parameters: Buffer<Float>
    /// The last exact step's mean gradient.
    private let gradient: Buffer<Float>
    public let optimizer: Optimizer
    public let plan: BatchPlan
    public private(set) var step = 0
    public private(set) var epoch = 0

    private let source: GradientSource
    /// Evaluates the validation set and predictions in this process.
    private let computer: SliceComputer
    private let sum: GradientSum
    private let order: Buffer<Int>

    /// A trainer starting from `initialParameters`, or from the seeded initialisation when nil.
    public init(spec: ModelSpec, loss: Loss, options: TrainingOptions, training: Dataset, validation: Dataset? = nil,
                initialParameters: [Float]? = nil, source: GradientSource? = nil) {
        self.spec = spec
        self.loss = loss
        self.options = options
        self.training = training
        self.validation = validation
        let count = spec.layout.parameterCount
        parameters = Buffer(count: count)
        if let initialParameters {
            precondition(initialParameters.count == count, "initial parameters do not fit the model")
            _ = parameters.elements.update(fromContentsOf: initialParameters)
        } else {
            spec.initialise(parameters, seed: options.seed)
        }
        gradient = Buffer(count: count)
        optimizer = options.optimizer.make(parameterCount: count)
        plan = BatchPlan(sampleCount: training.count, batchSize: options.batchSize, shuffle: options.shuffle,
                         dropLast: options.dropLast, seed: options.seed)
        if let source {
            self.source = source
            computer = SliceComputer(spec: spec, loss: loss, targetWidth: training.targetWidth,
                                     microShardSize: options.microShardSize, reduction: options.reduction,
                                     largestSlice: options.batchSize)
        } else {
            let local = LocalGradientSource(
                ParallelSlices(spec: spec, loss: loss, targetWidth: training.targetWidth,
                               microShardSize: options.microShardSize, reduction: options.reduction,
                               largestSlice: options.batchSize, threads: options.threads), data: training)
            self.source = local
            computer = local.slices.computers[0]
        }
        sum = GradientSum(count: count, reduction: options.reduction)
        order = Buffer(count: training.count)
    }

    /// Trains for the configured length, reporting after each epoch (and after a final partial one).
    public func run(onEpoch report: (EpochReport) -> Void) throws {
        let clock = ContinuousClock()
        let batches = plan.batchesPerEpoch
        guard batches > 0 else {
            throw TrainingError(message: "batch_size \(options.batchSize) with drop_last leaves no batch of "
                + "\(training.count) samples; lower batch_size or unset drop_last")
        }
        let totalSteps: Int
        switch options.length {
        case .epochs(let n): totalSteps = n * batches
        case .steps(let n): totalSteps = n
        }
        while step < totalSteps {
            let started = clock.now
            plan.writeOrder(epoch: epoch, into: order.elements)
            var lossSum = 0.0, correct = 0, samples = 0
            var rate = options.optimizer.learningRate
            for batch in 0..<batches where step < totalSteps {
                rate = learningRate()
                let statistics = try takeStep(batch: batch, learningRate: rate)
                lossSum += statistics.lossSum
                correct += statistics.correct
                samples += statistics.samples
            }
            let seconds = (clock.now - started) / .seconds(1)
            var line = EpochReport(epoch: epoch, step: step, loss: lossSum / Double(samples),
                                   accuracy: loss.isClassification ? Double(correct) / Double(samples) : nil,
                                   learningRate: rate, samplesPerSecond: Double(samples) / max(seconds, 1e-9))
            if let validation {
                let held = evaluate(validation)
                line.validationLoss = held.loss
                line.validationAccuracy = held.accuracy
            }
            report(line)
            epoch += 1
        }
    }

    /// One optimizer step on batch `batch` of the current epoch's order.
    private func takeStep(batch: Int, learningRate: Float) throws -> SliceStatistics {
        let range = plan.range(ofBatch: batch)
        sum.reset()
        let indices = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(order.elements)[range])
        try source.accumulate(step: step, epoch: epoch, batchIndex: batch, batch: indices,
                              microShards: computer.microShardCount(batchSize: range.count), parameters: parameters,
                              into: sum)
        // Exact sums become a mean in one division; a fast sum goes to the optimizer scaled, saving a pass.
        let finite = sum.reduction == .exact ? sum.writeMean(into: gradient.pointer) : sum.floatsAreFinite
        guard finite else {
            throw TrainingError(message: "training diverged at step \(step) (epoch \(epoch)): a gradient is NaN, "
                + "infinite or beyond ±2.1e9; lower the learning rate (now \(learningRate)) or check the data")
        }
        if sum.reduction == .exact {
            optimizer.step(parameters: parameters.pointer, gradients: gradient.pointer, scale: 1,
                           learningRate: learningRate)
        } else {
            optimizer.step(parameters: parameters.pointer, gradients: sum.floats.pointer,
                           scale: 1 / Float(sum.samples), learningRate: learningRate)
        }
        step += 1
        return SliceStatistics(samples: sum.samples, lossSum: sum.lossSum, correct: sum.correct)
    }

    private func learningRate() -> Float {
        let t = options.schedule.unit == .epoch ? epoch : step
        return options.schedule.rate(base: options.optimizer.learningRate, at: t)
    }

    /// Mean loss and accuracy of the current parameters on `data`.
    public func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double?) {
        let s = computer.evaluate(data: data, parameters: parameters.pointer)
        return (s.lossSum / Double(s.samples), loss.isClassification ? Double(s.correct) / Double(s.samples) : nil)
    }

    /// The model's outputs for `data` with the current parameters.
    public func predict(_ data: Dataset) -> [Float] { computer.predict(data: data, parameters: parameters.pointer) }
}

/// Micro-shards computed on this process's threads.
final class LocalGradientSource: GradientSource {
    let slices: ParallelSlices
    let data: Dataset

    init(_ slices: ParallelSlices, data: Dataset) {
        self.slices = slices
        self.data = data
    }

    func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                    parameters: Buffer<Float>, into sum: GradientSum) throws {
        slices.accumulate(batch: batch, microShards: 0 ..< microShards, data: data, parameters: parameters.pointer,
                          into: sum)
    }
}
