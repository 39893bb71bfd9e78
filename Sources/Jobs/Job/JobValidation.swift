import Engine
import Platform
extension Job {
    /// Loads (or generates) the job's samples.
    package func loadData() throws -> Dataset {
        let seed = dataSeed ?? options.seed
        switch data {
        case .xor:
            return Synthetic.xor()
        case .spirals(let samples, let classes, let noise):
            return Synthetic.spirals(samples: samples, classes: classes, noise: noise, seed: seed)
        case .blobs(let samples, let classes, let features, let noise):
            return Synthetic.blobs(samples: samples, classes: classes, features: features, noise: noise, seed: seed)
        case .regression(let samples, let features, let noise):
            return Synthetic.regression(samples: samples, features: features, noise: noise, seed: seed)
        case .npy(let featuresPath, let targetsPath):
            return try NPY.dataset(features: featuresPath, targets: targetsPath)
        case .csv(let path, let target):
            return try CSV.read(path, target: target)
        case .idx(let images, let labels):
            return try IDX.read(images: images, labels: labels)
        }
    }

    /// The samples a run trains on, as every process computes them: loaded or generated, checked against the model,
    /// and with the held-out split removed.
    package func trainingSamples() throws -> (job: Job, training: Dataset, validation: Dataset?) {
        try ResourceCheck.check(self)  // before a built-in set is generated
        let data = try loadData()
        let job = try checked(against: data)
        try ResourceCheck.check(job, samples: data.count, featureWidth: data.featureWidth, targetWidth: data.targetWidth,
                                featureBytes: data.features.ownedBytes)
        let (training, validation) = job.validationSplit > 0
            ? data.split(validationFraction: job.validationSplit, seed: job.options.seed) : (data, nil)
        if job.options.dropLast && training.count < job.options.batchSize {
            throw InputError("batch_size \(job.options.batchSize) with drop_last leaves no batch of the "
                + "\(training.count) training samples; lower batch_size or unset drop_last")
        }
        return (job, training, validation)
    }

    /// The job made concrete for `data`: the model's input width filled in, and every mismatch between model,
    /// loss and data refused with a message naming the key.
    package func checked(against data: Dataset) throws -> Job {
        var job = self
        if job.model.inputs == 0 { job.model.inputs = data.featureWidth }
        guard job.model.inputs == data.featureWidth else {
            throw InputError("model.inputs is \(job.model.inputs) but \(data.name) has \(data.featureWidth) "
                + "features per sample; set model.inputs to \(data.featureWidth) or leave it out")
        }
        let layers = job.model.layers, outputs = job.model.outputs
        if let hidden = layers.dropLast().firstIndex(where: { $0.activation == .softmax }) {
            throw InputError("model.layers[\(hidden)].activation: softmax is only for the output layer")
        }
        let last = layers[layers.count - 1].activation
        let lastKey = "model.layers[\(layers.count - 1)].activation"
        switch loss {
        case .crossEntropy:
            guard last == .softmax || last == .identity else {
                throw InputError("\(lastKey) is \(last) but cross_entropy reads logits: use softmax (applied for "
                    + "predictions, fused into the loss) or identity")
            }
            guard outputs >= 2 else {
                throw InputError("cross_entropy needs at least 2 output units (one per class), the model has "
                    + "\(outputs); for two classes with one unit use bce_logits")
            }
            if data.targetWidth == 1 {
                if let bad = data.targets.firstIndex(where: { $0 < 0 || $0 >= Float(outputs) || $0 != $0.rounded() }) {
                    throw InputError("\(data.targetsName): target \(data.targets[bad]) of sample \(bad) is not a class index "
                        + "from 0 to \(outputs - 1) (one per output unit)")
                }
            } else if data.targetWidth == outputs {
                if let bad = data.targets.firstIndex(where: { $0 < 0 }) {
                    throw InputError("\(data.targetsName): class probability \(data.targets[bad]) of sample "
                        + "\(bad / outputs) is negative")
                }
            } else {
                throw InputError("\(data.targetsName): targets have \(data.targetWidth) columns; cross_entropy needs 1 "
                    + "(class indices) or \(outputs) (class probabilities)")
            }
        case .bce, .bceLogits:
            let wanted: Activation = loss == .bce ? .sigmoid : .identity
            guard last == wanted else {
                throw InputError(loss == .bce
                    ? "\(lastKey) is \(last) but bce reads probabilities: use sigmoid, or identity with bce_logits"
                    : "\(lastKey) is \(last) but bce_logits reads logits: use identity (the loss applies the sigmoid)")
            }
            try requireTargetWidth(data, outputs)
            if let bad = data.targets.firstIndex(where: { $0 < 0 || $0 > 1 }) {
                throw InputError("\(data.targetsName): target \(data.targets[bad]) of sample \(bad / outputs) is outside "
                    + "[0, 1]; \(loss.rawValue) needs probabilities")
            }
        case .mse, .mae:
            try requireTargetWidth(data, outputs)
        }
        let microShards = (options.batchSize + options.microShardSize - 1) / options.microShardSize
        if options.reduction == .exact && microShards > GradientSum.maximumMicroShards {
            throw InputError("batch_size \(options.batchSize) with micro_shard \(options.microShardSize) makes "
                + "\(microShards) micro-shards per batch; exact reduction sums at most "
                + "\(GradientSum.maximumMicroShards): raise micro_shard")
        }
        let holdout = Int((Double(data.count) * validationSplit).rounded())
        guard data.count - holdout >= 1 else {
            throw InputError("validation_split \(validationSplit) leaves no training sample out of \(data.count)")
        }
        return job
    }

    private func requireTargetWidth(_ data: Dataset, _ outputs: Int) throws {
        guard data.targetWidth == outputs else {
            throw InputError("\(data.targetsName): targets have \(data.targetWidth) columns but the model has \(outputs) "
                + "output units; \(loss.rawValue) compares them one to one")
        }
    }
}
