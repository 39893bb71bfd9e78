import Platform
/// The trainer: forward → loss → backward → update over epochs and batches.
///
/// Each step sums the batch's micro-shard gradients (from a `GradientSource`: by default this process's threads),
/// divides once by the batch's sample count, and hands the mean to the optimizer. Buffers are built here; the
/// steady-state step allocates nothing.
package final class Trainer {
    package let spec: ModelSpec
    package let loss: Loss
    package let options: TrainingOptions
    package let training: Dataset
    package let validation: Dataset?
    package let parameters: Buffer<Float>
    /// Where a source writes a step's mean gradient.
    let gradient: Buffer<Float>
    /// What a step updated part by part has changed so far, as it was.
    let stepBackup = StepBackup()
    package let optimizer: Optimizer
    package let plan: BatchPlan
    /// Optimizer steps taken.
    package private(set) var step = 0
    /// The epoch the next step belongs to.
    package var epoch: Int { step / max(plan.batchesPerEpoch, 1) }
    /// The statistics of the current epoch's steps so far (a checkpoint carries them, so a resumed run prints the
    /// same lines).
    package private(set) var epochProgress = EpochProgress()
    /// Set when a step diverged; the parameters may then be partly stepped, so no later step runs.
    private var diverged: TrainingError?
    /// The statistics and learning rate of the step just taken (for per-step records).
    package private(set) var lastStep: (statistics: SliceStatistics, learningRate: Float)?

    /// Where each step's gradients come from: this process, or a coordinator's workers.
    package let source: GradientSource
    /// The buffers a step changes: the parameters, then the optimizer's state.
    let steppedBuffers: [Buffer<Float>]
    /// Evaluates the validation set and predictions in this process.
    package let computer: SliceComputer
    let sum: GradientSum
    private let order: Buffer<Int>
    /// The epoch whose order `order` holds.
    private var orderEpoch = -1

    /// `--trace` in this process: a recorder on each computing thread's network, whose layers' spans go in from now
    /// on (nil when the gradients come from workers, which record their own).
    package func recordLayers() -> [SpanRecorder]? {
        guard let local = source as? LocalGradientSource else { return nil }
        let recorders = local.slices.makeRecorders()
        local.slices.recordSpans(recorders)
        return recorders
    }

    /// A trainer starting from `initialParameters`, or from the seeded initialisation when nil.
    package init(spec: ModelSpec, loss: Loss, options: TrainingOptions, training: Dataset, validation: Dataset? = nil,
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
                                     largestSlice: min(options.batchSize, training.count),
                                     library: options.library)
        } else {
            let local = LocalGradientSource(
                ParallelSlices(spec: spec, loss: loss, targetWidth: training.targetWidth,
                               microShardSize: options.microShardSize, reduction: options.reduction,
                               largestSlice: min(options.batchSize, training.count), threads: options.threads,
                               library: options.library), data: training)
            self.source = local
            computer = local.slices.computers[0]
        }
        steppedBuffers = [parameters] + optimizer.state
        sum = GradientSum(count: count, reduction: options.reduction)
        // Read right after each step's sums arrive (the sources keep what they hand over until the next step).
        sum.holdsInputs = true
        sum.meanThreads = options.threads
        order = Buffer(count: training.count)
    }

    /// Steps the configured length asks for.
    package var totalSteps: Int {
        switch options.length {
        case .epochs(let n): n * plan.batchesPerEpoch
        case .steps(let n): n
        }
    }

    /// Trains from the current step to the configured length, reporting after each epoch (and after a final
    /// partial one); `afterStep` runs after every step and its report, where a checkpoint or a stop belongs.
    package func run(onEpoch report: (EpochReport) -> Void, afterStep: (Trainer) throws -> Void = { _ in }) throws {
        let clock = ContinuousClock()
        let batches = plan.batchesPerEpoch
        guard batches > 0 else {
            throw InputError("batch_size \(options.batchSize) with drop_last leaves no batch of "
                + "\(training.count) samples; lower batch_size or unset drop_last")
        }
        var started = clock.now
        while step < totalSteps {
            if orderEpoch != epoch {
                plan.writeOrder(epoch: epoch, into: order.elements)
                orderEpoch = epoch
                started = clock.now
            }
            let rate = learningRate()
            let epochOfStep = epoch
            let statistics = try takeStep(batch: step % batches, learningRate: rate)
            lastStep = (statistics, rate)
            epochProgress.add(statistics)
            if step % batches == 0 || step == totalSteps {
                let seconds = (clock.now - started) / .seconds(1)
                let p = epochProgress
                var line = EpochReport(epoch: epochOfStep, step: step, loss: p.lossSum / Double(p.samples),
                                       accuracy: loss.isClassification ? Double(p.correct) / Double(p.samples) : nil,
                                       learningRate: rate, samplesPerSecond: Double(p.samples) / max(seconds, 1e-9))
                if let validation {
                    let held = evaluate(validation)
                    line.validationLoss = held.loss
                    line.validationAccuracy = held.accuracy
                }
                report(line)
                epochProgress = EpochProgress()
            }
            try afterStep(self)
        }
    }

    /// Continues from a checkpoint's state (which `Checkpoint` has checked against this job).
    package func restore(step: Int, progress: EpochProgress, parameters values: [Float], optimizerSteps: Int,
                        optimizerState: [[Float]]) {
        precondition(values.count == parameters.count && optimizerState.count == optimizer.state.count,
                     "checkpoint state does not fit the trainer")
        _ = parameters.elements.update(fromContentsOf: values)
        for (buffer, saved) in zip(optimizer.state, optimizerState) {
            precondition(saved.count == buffer.count, "optimizer state does not fit")
            _ = buffer.elements.update(fromContentsOf: saved)
        }
        optimizer.steps = optimizerSteps
        self.step = step
        diverged = nil
        epochProgress = progress
    }

    /// One optimizer step on batch `batch` of the current epoch's order: the source's parts updated as they come,
    /// and anything thrown undoes those already updated.
    private func takeStep(batch: Int, learningRate: Float) throws -> SliceStatistics {
        if let diverged { throw diverged }
        let range = plan.range(ofBatch: batch)
        sum.reset()
        let indices = UnsafeBufferPointer(rebasing: UnsafeBufferPointer(order.elements)[range])
        var updated = 0
        do {
            try source.begin(StepOrder(step: step, epoch: epoch, batchIndex: batch, batch: indices,
                                       microShards: computer.microShardCount(batchSize: range.count),
                                       parameters: parameters, sum: sum, mean: gradient.pointer,
                                       learningRate: learningRate, optimizer: optimizer))
            while let event = try source.next() {
                switch event {
                case .update(let part):
                    try update(part, learningRate: learningRate)
                    updated += part.range.count
                case .undo(let part):
                    stepBackup.restore(part, of: steppedBuffers)
                    updated -= part.count
                }
            }
            guard !sum.overflowed else { throw divergence(learningRate) }
        } catch {
            stepBackup.restore(steppedBuffers)
            // An update may have been applied in part (a fast one checks as it goes), so no later step runs.
            if let error = error as? TrainingError { diverged = error }
            throw error
        }
        precondition(updated == parameters.count, "a step updated \(updated) of \(parameters.count) parameters")
        stepBackup.forget()
        optimizer.steps = optimizer.steps + 1  // not `+=`: see `Optimizer.step`
        step += 1
        return SliceStatistics(samples: sum.samples, lossSum: sum.lossSum, correct: sum.correct)
    }

    /// Updates `part` of the parameters (keeping them as they were, when the step may still be undone).
    private func update(_ part: ReadyPart, learningRate: Float) throws {
        if !part.closesStep { stepBackup.keep(part.range, of: steppedBuffers) }
        // The update may use the threads the mean did: this process's own, or a coordinator's idle cores.
        optimizer.threads = sum.meanThreads
        guard part.finite, optimizer.update(part.range, parameters: parameters.pointer, gradients: part.gradients,
                                            scale: part.scale, learningRate: learningRate,
                                            checkFinite: sum.reduction == .fast) else {
            throw divergence(learningRate, gradients: part.gradients, range: part.range)
        }
    }

    /// The run has diverged: names what overflowed — the first tensor whose gradient in `gradients` (the whole
    /// buffer, read in `range`) holds a NaN or ∞, else the loss — the step, and what to do.
    func divergence(_ learningRate: Float, gradients: UnsafePointer<Float>? = nil, range: Range<Int>? = nil)
        -> TrainingError {
        var what = sum.lossSum.isFinite ? "a gradient is NaN or infinite" : "the loss is NaN or infinite"
        let layers = spec.layout.layers
        if let gradients, let index = (range ?? 0..<parameters.count).first(where: { !gradients[$0].isFinite }),
           let layer = layers.lastIndex(where: { $0.weightOffset <= index }) {
            let dense = layers[layer], isWeight = index < dense.biasOffset
            let tensor = "\(dense.moduleIndex).\(isWeight ? "weight" : "bias")"
            let element = index - (isWeight ? dense.weightOffset : dense.biasOffset)
            what = "the gradient of layer \(layer + 1) of \(layers.count) (\(tensor)[\(element)]) is \(gradients[index])"
        }
        return TrainingError(message: "training diverged at step \(step) (epoch \(epoch)): \(what); "
            + "lower the learning rate (now \(learningRate)) or check the data")
    }

    private func learningRate() -> Float {
        let t = options.schedule.unit == .epoch ? epoch : step
        return options.schedule.rate(base: options.optimizer.learningRate, at: t)
    }

    /// Mean loss and accuracy of the current parameters on `data`.
    package func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double?) {
        let s = computer.evaluate(data: data, parameters: parameters.pointer)
        return (s.lossSum / Double(s.samples), loss.isClassification ? Double(s.correct) / Double(s.samples) : nil)
    }

    /// The model's outputs for `data` with the current parameters.
    package func predict(_ data: Dataset) -> [Float] { computer.predict(data: data, parameters: parameters.pointer) }
}

/// Sums over the steps of an epoch so far.
package struct EpochProgress: Sendable, Equatable {
    package var lossSum = 0.0
    package var correct = 0
    package var samples = 0

    package init(lossSum: Double = 0, correct: Int = 0, samples: Int = 0) {
        self.lossSum = lossSum
        self.correct = correct
        self.samples = samples
    }

    mutating func add(_ s: SliceStatistics) {
        lossSum += s.lossSum
        correct += s.correct
        samples += s.samples
    }
}
