import Engine
import Platform
/// Command-line values that take precedence over the job file.
package struct JobOverrides: Sendable {
    /// One-value settings as given on the command line, read and checked as the job file's are (`JobSetting`).
    package var settings: [JobSetting: String] = [:]
    /// An optimizer named anew, and a learning rate (inside the file's optimizer section).
    package var optimizer: String?
    package var learningRate: Double?
    /// Threads computing micro-shards (not part of the job: it never changes the bits).
    package var threads: Int?

    package init() {}

    /// Overrides from the settings given (nil: not given).
    package init(settings given: [JobSetting: String?]) {
        settings = given.compactMapValues { $0 }
    }

    /// Checks the values alone, as `apply` would, for a process that never reads the job file (`launch`'s worker
    /// ranks): the settings only replace one-value fields, so any job shows whether they are acceptable.
    package func check() throws {
        let any = Job(model: ModelSpec(inputs: 1, layers: [LayerSpec(units: 1, activation: .identity)]), loss: .mse,
                      options: TrainingOptions(), data: .xor)
        _ = try apply(to: any)
    }

    /// Applies the overrides; an optimizer named anew starts from `torch.optim`'s defaults unless it is the one the
    /// file already configures.
    package func apply(to job: Job) throws -> Job {
        var job = job
        if settings[.epochs] != nil && settings[.steps] != nil {
            throw InputError("give \(JobSetting.epochs.flag) or \(JobSetting.steps.flag), not both")
        }
        for setting in JobSetting.allCases {
            if let value = settings[setting] { try setting.apply(value, to: &job) }
        }
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
