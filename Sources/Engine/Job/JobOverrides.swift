/// Command-line values that take precedence over the job file.
public struct JobOverrides: Sendable {
    public var epochs: Int?
    public var steps: Int?
    public var batchSize: Int?
    public var optimizer: String?
    public var learningRate: Double?
    public var seed: UInt64?
    public var noShuffle = false
    public var microShardSize: Int?
    public var reduction: Reduction?
    public var logEvery: Int?
    public var threads: Int?

    public init() {}

    /// Applies the overrides; an optimizer named anew starts from `torch.optim`'s defaults unless it is the one the
    /// file already configures.
    public func apply(to job: Job) throws -> Job {
        var job = job
        if let epochs { job.options.length = .epochs(epochs) }
        if let steps { job.options.length = .steps(steps) }
        if let batchSize { job.options.batchSize = batchSize }
        if let name = optimizer {
            guard let fresh = JobParser.defaultOptimizer(name) else {
                throw InputError("--optimizer \(name): unknown optimizer; use sgd, rmsprop, adam or adamw")
            }
            if !sameKind(fresh, job.options.optimizer) { job.options.optimizer = fresh }
        }
        if let learningRate {
            guard learningRate > 0, learningRate.isFinite, Float(learningRate) > 0, Float(learningRate).isFinite else {
                throw InputError("--lr \(learningRate): the learning rate must be a positive number that float32 "
                    + "holds (1.4e-45 to 3.4e38)")
            }
            job.options.optimizer.learningRate = Float(learningRate)
        }
        if let seed { job.options.seed = seed }
        if noShuffle { job.options.shuffle = false }
        if let microShardSize { job.options.microShardSize = microShardSize }
        if let reduction { job.options.reduction = reduction }
        if let logEvery { job.logEvery = logEvery }
        if let threads { job.options.threads = threads }
        return job
    }

    private func sameKind(_ a: OptimizerConfig, _ b: OptimizerConfig) -> Bool {
        switch (a, b) {
        case (.sgd, .sgd), (.rmsprop, .rmsprop): true
        case (.adam(let x), .adam(let y)): x.decoupledWeightDecay == y.decoupledWeightDecay
        default: false
        }
    }
}
