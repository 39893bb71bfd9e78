import Engine
import Platform
import Yams

/// The job's settings that are one value each (the sections — model, loss, optimizer, schedule, data — have their
/// own readers). Each is declared here once: its key, how a value is read and checked, where it goes in the `Job`,
/// how the canonical text writes it, and the command-line flag that replaces it. The job file's parser, the
/// canonical text, the command line's overrides and its help all go through this table.
package enum JobSetting: String, CaseIterable, Sendable {
    // In the canonical text's order.
    case batchSize = "batch_size"
    case epochs
    case steps
    case seed
    case shuffle
    case dropLast = "drop_last"
    case microShard = "micro_shard"
    case reduction
    case gemm
    case validationSplit = "validation_split"
    case logEvery = "log_every"

    /// The job file's key.
    package var key: String { rawValue }

    /// The command-line flag that replaces the file's value (`--no-shuffle` sets `shuffle` to false).
    package var flag: String { self == .shuffle ? "--no-shuffle" : "--" + key.replacingOccurrences(of: "_", with: "-") }

    /// What the setting's flag does (its help).
    package var help: String {
        switch self {
        case .batchSize: "Samples per batch."
        case .epochs: "Epochs to train (replaces the job's epochs or steps)."
        case .steps: "Optimizer steps to train (replaces the job's epochs or steps)."
        case .seed: "Seed of initialisation, shuffling and synthetic data."
        case .shuffle: "Keep the data's order in every epoch."
        case .dropLast: "Leave out each epoch's last batch when it is short."
        case .microShard: "Samples per micro-shard (the unit computed identically everywhere)."
        case .reduction: "How gradients are added: exact (same bits for any split) or fast (one GEMM per batch)."
        case .gemm: "The matrix-product library: onednn (default) or openblas."
        case .validationSplit: "Fraction of the samples held out and evaluated after each epoch."
        case .logEvery: "Print every this many epochs."
        }
    }

    /// Reads this setting, if `reader` has it, into `job`; a bad value is refused naming where it came from.
    func read(_ reader: inout JobReader, into job: inout Job) throws {
        switch self {
        case .batchSize: if let n = try reader.int(key, minimum: 1) { job.options.batchSize = n }
        case .epochs: if let n = try reader.int(key, minimum: 1) { job.options.length = .epochs(n) }
        case .steps: if let n = try reader.int(key, minimum: 1) { job.options.length = .steps(n) }
        case .seed: if let n = try reader.int(key, minimum: 0) { job.options.seed = UInt64(n) }
        case .shuffle: if let flag = try reader.bool(key) { job.options.shuffle = flag }
        case .dropLast: if let flag = try reader.bool(key) { job.options.dropLast = flag }
        case .microShard: if let n = try reader.int(key, minimum: 1) { job.options.microShardSize = n }
        case .reduction:
            if let name = try reader.string(key) {
                guard let mode = Reduction(rawValue: name) else {
                    throw reader.fail(key, reader.node(key), "unknown reduction '\(name)'; use exact or fast")
                }
                job.options.reduction = mode
            }
        case .gemm:
            if let name = try reader.string(key) {
                guard let library = GEMMLibrary(rawValue: name) else {
                    throw reader.fail(key, reader.node(key), "unknown GEMM library '\(name)'; use onednn or openblas")
                }
                job.options.library = library
            }
        case .validationSplit: if let f = try reader.double(key, in: 0...0.99) { job.validationSplit = f }
        case .logEvery: if let n = try reader.int(key, minimum: 1) { job.logEvery = n }
        }
    }

    /// The setting as the canonical text writes it (`"key": value`), or nil when the job leaves it out.
    func text(of job: Job) -> String? {
        let value: String
        switch self {
        case .batchSize: value = "\(job.options.batchSize)"
        case .epochs:
            guard case .epochs(let n) = job.options.length else { return nil }
            value = "\(n)"
        case .steps:
            guard case .steps(let n) = job.options.length else { return nil }
            value = "\(n)"
        case .seed: value = "\(job.options.seed)"
        case .shuffle: value = "\(job.options.shuffle)"
        case .dropLast: value = "\(job.options.dropLast)"
        case .microShard: value = "\(job.options.microShardSize)"
        case .reduction: value = "\"\(job.options.reduction.rawValue)\""
        case .gemm:
            // Left out at the default, so the text (and checkpoints' job hash) of every earlier job stays the same.
            guard job.options.library != .oneDNN else { return nil }
            value = "\"\(job.options.library.rawValue)\""
        case .validationSplit: value = "\(job.validationSplit)"
        case .logEvery:
            guard let n = job.logEvery else { return nil }
            value = "\(n)"
        }
        return "\"\(key)\": \(value)"
    }

    /// The canonical text's line breaks fall after these (so its bytes, and the checkpoints' job hash, stay as
    /// they were when the text was written by hand).
    var endsCanonicalLine: Bool { self == .shuffle || self == .microShard || self == .validationSplit }

    /// Applies a value given on the command line, checked as the job file's value is, naming the flag.
    func apply(_ text: String, to job: inout Job) throws {
        var reader = try JobReader(Node([(Node(key), Node(text))]), file: flag, path: "", flagValue: text)
        try read(&reader, into: &job)
    }
}
