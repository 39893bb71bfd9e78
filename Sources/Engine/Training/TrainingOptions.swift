/// How long to train.
package enum TrainingLength: Sendable, Equatable {
    case epochs(Int)
    case steps(Int)
}

/// Everything about a run except the model and the data.
package struct TrainingOptions: Sendable, Equatable {
    package var batchSize = 32
    package var length: TrainingLength = .epochs(1)
    package var shuffle = true
    package var dropLast = false
    package var seed: UInt64 = 0
    package var optimizer: OptimizerConfig = .adam(Adam.Options())
    package var schedule = Schedule()
    /// Samples per micro-shard: the unit of work whose gradient is computed identically wherever it runs.
    package var microShardSize = 128
    package var reduction: Reduction = .exact
    /// Threads computing micro-shards in this process (each with single-threaded products when more than one).
    package var threads = 1
    /// The library of every matrix product (see `GEMMLibrary`).
    package var library = GEMMLibrary.oneDNN

    package init() {}
}

/// One epoch's summary, as printed and written to the metrics file.
package struct EpochReport: Sendable, Equatable {
    package var epoch: Int
    /// Optimizer steps taken so far.
    package var step: Int
    /// Mean per-sample loss over the epoch's batches, each measured before its update.
    package var loss: Double
    /// Fraction of correct predictions over the epoch (classification losses only).
    package var accuracy: Double?
    package var validationLoss: Double?
    package var validationAccuracy: Double?
    package var learningRate: Float
    package var samplesPerSecond: Double
}

/// A run that cannot go on.
package struct TrainingError: Error, CustomStringConvertible {
    package let message: String
    package var description: String { message }
}
