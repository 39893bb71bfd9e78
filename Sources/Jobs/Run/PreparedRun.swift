import Engine
import Platform
/// A job read, overridden, checked against its data and turned into a ready trainer: everything refusable is
/// refused here, before the first step.
package struct PreparedRun {
    package let job: Job
    package let trainer: Trainer
    /// Print an epoch line when `epoch % logEvery == 0`.
    package let logEvery: Int

    /// `makeSource` may supply the step's gradients from elsewhere (worker processes), given the checked job and
    /// its training samples; nil keeps them in this process.
    package init(jobFile: String, overrides: JobOverrides, initialWeights: String?,
                makeSource: (Job, Dataset) throws -> GradientSource? = { _, _ in nil }) throws {
        let parsed = try overrides.apply(to: Job.load(jobFile))
        try self.init(job: parsed, initialWeights: initialWeights, makeSource: makeSource)
    }

    package init(job parsed: Job, initialWeights: String?,
                makeSource: (Job, Dataset) throws -> GradientSource? = { _, _ in nil }) throws {
        let (job, training, validation) = try parsed.trainingSamples()
        let initial = try initialWeights.map { try Safetensors.read($0, layout: job.model.layout) }
        self.job = job
        trainer = Trainer(spec: job.model, loss: job.loss, options: job.options, training: training,
                          validation: validation, initialParameters: initial, source: try makeSource(job, training))
        let epochs: Int
        switch job.options.length {
        case .epochs(let n): epochs = n
        case .steps(let n): epochs = (n + trainer.plan.batchesPerEpoch - 1) / max(trainer.plan.batchesPerEpoch, 1)
        }
        logEvery = job.logEvery ?? max(1, epochs / 5)
    }

    /// One line describing the run.
    package var summary: String {
        let widths = ([job.model.inputs] + job.model.layers.map(\.units)).map(String.init).joined(separator: "→")
        return "\(trainer.training.name): \(trainer.training.count) samples, model \(widths) "
            + "(\(job.model.layout.parameterCount) parameters), \(job.loss.rawValue), batch \(job.options.batchSize), "
            + "\(job.options.reduction.rawValue) reduction, micro-shard \(job.options.microShardSize)"
    }

    /// After training: predictions beside targets for a small data set (as the seed prints them), else the final
    /// loss and accuracy.
    package func closingLines() -> [String] {
        let data = trainer.training
        if data.count <= 16 {
            let predictions = trainer.predict(data)
            return ["", "Predictions: \(Reporting.numpyArray(predictions))",
                    "Expected:    \(Reporting.numpyArray(data.targets, digits: 0))"]
        }
        var lines: [String] = []
        let final = trainer.evaluate(data)
        lines.append("Final: loss = \(Reporting.number(final.loss, 4))"
            + (final.accuracy.map { ", accuracy = \(Reporting.number($0, 4))" } ?? ""))
        if let validation = trainer.validation {
            let held = trainer.evaluate(validation)
            lines.append("Validation: loss = \(Reporting.number(held.loss, 4))"
                + (held.accuracy.map { ", accuracy = \(Reporting.number($0, 4))" } ?? ""))
        }
        return lines
    }
}
