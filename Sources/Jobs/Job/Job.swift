import Engine
import Foundation
import Platform
import Yams

/// Where a job's samples come from.
package enum DataSource: Sendable, Equatable {
    case xor
    case spirals(samples: Int, classes: Int, noise: Double)
    case blobs(samples: Int, classes: Int, features: Int, noise: Double)
    case regression(samples: Int, features: Int, noise: Double)
    /// NumPy arrays: features `[N, D]`, targets `[N]` or `[N, T]`; paths resolved against the job file's folder.
    case npy(features: String, targets: String)
    /// A CSV file with a header; `target` names the target column.
    case csv(path: String, target: String)
    /// MNIST's IDX files (optionally gzipped): images scaled to [0, 1], labels as class indices.
    case idx(images: String, labels: String)
}

/// A training job as a job file (YAML or JSON) describes it.
package struct Job: Sendable, Equatable {
    /// The model; `inputs` of 0 means "as many as the data has features".
    package var model: ModelSpec
    package var loss: Loss
    package var options: TrainingOptions
    package var data: DataSource
    /// Seed of the synthetic data sets (defaults to the job's seed).
    package var dataSeed: UInt64?
    /// Fraction of the samples held out and evaluated after each epoch (0 for none).
    package var validationSplit = 0.0
    /// Print a line every this many epochs (default: five lines over the run).
    package var logEvery: Int?

    package init(model: ModelSpec, loss: Loss, options: TrainingOptions, data: DataSource) {
        self.model = model
        self.loss = loss
        self.options = options
        self.data = data
    }

    /// Reads a job file; relative data paths are taken from the file's folder.
    package static func load(_ path: String) throws -> Job {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read the job file; check the path")
        }
        guard let text = String(data: contents, encoding: .utf8) else {
            throw InputError("\(path): the job file is not UTF-8 text (YAML or JSON)")
        }
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, file: path, folder: folder)
    }

    /// Where and what, in one line: Yams' own text quotes the whole mapping or a snippet over several lines.
    static func describe(_ error: YamlError) -> String {
        switch error {
        case .duplicatedKeysInMapping(let duplicates, let context):
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return "line \(context.mark.line): \(keys) appear\(duplicates.count == 1 ? "s" : "") more than once in one "
                + "mapping; keep one"
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
             .composer(_, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)"
        case .reader(let problem, _, _, _):
            return problem
        default:
            return String(String(describing: error).split(separator: "\n").first ?? "")
        }
    }

    /// Parses job text (YAML, or JSON, which is YAML too).
    package static func parse(_ text: String, file: String, folder: String) throws -> Job {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw InputError("\(file): the job file is empty") }
            root = node
        } catch let error as InputError {
            throw error
        } catch let error as YamlError {
            throw InputError("\(file): not valid YAML or JSON: \(Self.describe(error))")
        } catch {
            throw InputError("\(file): not valid YAML or JSON: \(String(describing: error).split(separator: "\n")[0])")
        }
        var top = try JobReader(root, file: file, path: "")
        return try JobParser(file: file, folder: folder).job(&top)
    }
}

extension Job {
    /// The row counts of the micro-shards an exact run over `samples` training samples computes: full micro-shards,
    /// and the short ones a batch or the epoch's last batch ends with.
    package func microShardRows(samples: Int) -> [Int] {
        let batch = min(options.batchSize, max(1, samples)), size = options.microShardSize
        var batches: Set<Int> = [batch]
        if samples % batch != 0 && !options.dropLast { batches.insert(samples % batch) }
        var rows: Set<Int> = []
        for b in batches {
            if b >= size { rows.insert(size) }
            if b % size != 0 { rows.insert(b % size) }
        }
        return rows.sorted()
    }
}

extension Job {
    /// Exact mode: the fingerprint of this job's products over `samples` training samples, on this process's library
    /// and kernels (`Products.fingerprint` at every micro-shard size the run computes), which the coordinator and
    /// every worker compare; 0 in fast mode.
    package func productsFingerprint(samples: Int) -> UInt64 {
        guard options.reduction == .exact else { return 0 }
        return Products.fingerprint(library: options.library, spec: model, rows: microShardRows(samples: samples))
    }
}
