/// How long to train.
public enum TrainingLength: Sendable, Equatable {
    case epochs(Int)
    case steps(Int)
}

/// Everything about a run except the model and the data.
public struct TrainingOptions: Sendable, Equatable {
    public var batchSize = 32
    public var length: TrainingLength = .epochs(1)
    public var shuffle = true
    public var dropLast = false
    public var seed: UInt64 = 0
    public var optimizer: OptimizerConfig = .adam(Adam.Options())
    public var schedule = Schedule()
    /// Samples per micro-shard: the unit of work whose gradient is computed identically wherever it runs.
    public var microShardSize = 128
    public var reduction: Reduction = .exact
    /// Threads computing micro-shards in this process (each with single-threaded products when more than one).
    public var threads = 1
    /// The library of every matrix product (see `GEMMLibrary`).
    public var library = GEMMLibrary.oneDNN

    public init() {}
}

/// One epoch's summary, as printed and written to the metrics file.
public struct EpochReport: Sendable, Equatable {
    public var epoch: Int
    /// Optimizer steps taken so far.
    public var step: Int
    /// Mean per-sample loss over the epoch's batches, each measured before its update.
    public var loss: Double
    /// Fraction of correct predictions over the epoch (classification losses only).
    public var accuracy: Double?
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Float
    public var samplesPerSecond: Double
}

/// A run that cannot go on.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
