import Engine
import Foundation
import Platform

/// A job's model with trained weights from a safetensors file, for `evaluate` and `predict`: the same forward pass
/// as training, so a loss computed here is the loss training reports.
package struct TrainedModel {
    package let job: Job
    package let weightsPath: String

    package init(job: Job, weights: String) {
        self.job = job
        weightsPath = weights
    }

    /// Mean loss (and accuracy, for classification) on `data`, checked against the model as training data is.
    package func evaluate(_ data: Dataset) throws -> (loss: Double, accuracy: Double?) {
        let checked = try job.checked(against: data)
        return try trainer(for: checked, data: data).evaluate(data)
    }

    /// What predictions mean for this job's loss.
    package enum Output: String, CaseIterable, Sendable {
        /// One probability per output unit (softmax, sigmoid; bce_logits' logits through the sigmoid).
        case probabilities
        /// The class index (argmax; for one sigmoid unit, 1 when its probability is at least 0.5).
        case classes
        /// The output layer's values as they are (regression).
        case values
    }

    /// The output kind a job's loss calls for by default.
    package var defaultOutput: Output { job.loss.isClassification ? .probabilities : .values }

    /// Predictions for `features` (`rows × columns`): rows × outputs values, or rows class indices.
    package func predict(features: [Float], columns: Int, as output: Output) throws -> (values: [Float], columns: Int) {
        var job = self.job
        let inferred = job.model.inputs == 0
        if inferred { job.model.inputs = columns }
        guard job.model.inputs == columns else {
            throw InputError("the input has \(columns) feature columns but the model takes \(job.model.inputs); "
                + "give only the features, in the training data's order (leave out targets and index columns)")
        }
        if output != .values && !job.loss.isClassification {
            throw InputError("\(output.rawValue) are for classification; \(job.loss.rawValue) predicts values")
        }
        let rows = features.count / columns
        let outputs = job.model.outputs
        // Targets are not read by a forward pass; zeros of the width the loss expects stand in for them.
        let width = job.loss == .crossEntropy ? 1 : outputs
        let data = try Dataset(name: "input", features: features, featureWidth: columns,
                               targets: [Float](repeating: 0, count: rows * width), targetWidth: width)
        let trainer: Trainer
        do {
            trainer = try self.trainer(for: job, data: data)
        } catch let error as InputError where inferred {
            throw InputError("the input has \(columns) feature columns, which the weights do not take "
                + "(\(error.message)); give only the features, in the training data's order (leave out targets "
                + "and index columns), or check that the weights are this job's")
        }
        var values = trainer.predict(data)
        if job.loss == .bceLogits { values = values.map { 1 / (1 + (-$0).exp()) } }
        // cross_entropy over an identity output reads logits: probabilities are their softmax.
        if job.loss == .crossEntropy, job.model.layers.last?.activation == .identity, output != .values {
            for row in 0..<rows {
                let slice = (row * outputs)..<((row + 1) * outputs)
                let largest = values[slice].max() ?? 0
                var total: Float = 0
                for index in slice { values[index] = (values[index] - largest).exp(); total += values[index] }
                for index in slice { values[index] /= total }
            }
        }
        guard output == .classes else { return (values, outputs) }
        let classes = (0..<rows).map { row -> Float in
            let slice = values[(row * outputs)..<((row + 1) * outputs)]
            if outputs == 1 { return slice.first! >= 0.5 ? 1 : 0 }
            return Float(slice.indices.max { slice[$0] < slice[$1] }! - row * outputs)
        }
        return (classes, 1)
    }

    private func trainer(for job: Job, data: Dataset) throws -> Trainer {
        let weights = try Safetensors.read(weightsPath, layout: job.model.layout)
        var options = job.options
        options.threads = 1
        return Trainer(spec: job.model, loss: job.loss, options: options, training: data, initialParameters: weights)
    }
}

private extension Float {
    func exp() -> Float { Float(Foundation.exp(Double(self))) }
}
