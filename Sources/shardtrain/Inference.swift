import ArgumentParser
import Engine
import Foundation
import Jobs
import Platform

extension TrainedModel.Output: ExpressibleByArgument {}

/// The job and weights every inference command takes.
struct ModelFlags: ParsableArguments {
    @Option(help: "The job file the weights were trained with.") var config: String
    @Option(help: "The trained weights (safetensors, e.g. from --save).") var weights: String

    func load() throws -> TrainedModel { TrainedModel(job: try Job.load(config), weights: weights) }
}

/// `shardtrain evaluate --config JOB --weights W [--data FILE [--targets FILE]]`: loss and accuracy.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and accuracy of trained weights on the job's data (training and validation splits) or other data.",
        version: Version.text)

    @OptionGroup var model: ModelFlags
    @Option(help: ArgumentHelp("Other data: a CSV file (its target column as the job names it, or --target), or a .npy "
        + "file of features with --targets.", valueName: "file")) var data: String?
    @Option(help: ArgumentHelp("The .npy targets of --data.", valueName: "file")) var targets: String?
    @Option(help: "The target column of a CSV --data (default: the job's data.target).") var target: String?

    func run() throws {
        try reportingFailures {
            let trained = try model.load()
            var sets: [(String, Dataset)] = []
            if let data {
                sets = [(data, try Self.read(data, targets: targets, target: target, job: trained.job))]
            } else {
                let (_, training, validation) = try trained.job.trainingSamples()
                sets = [("Training", training)] + (validation.map { [("Validation", $0)] } ?? [])
            }
            for (label, samples) in sets {
                let result = try trained.evaluate(samples)
                print("\(label): loss = \(Reporting.number(result.loss, 4))"
                    + (result.accuracy.map { ", accuracy = \(Reporting.number($0, 4))" } ?? "")
                    + " (\(samples.count) samples)")
            }
        }
    }

    static func read(_ path: String, targets: String?, target: String?, job: Job) throws -> Dataset {
        for file in [path] + (targets.map { [$0] } ?? []) where !FileManager.default.isReadableFile(atPath: file) {
            throw InputError("\(file): cannot read the file; check the path (from the current folder, "
                + "\(FileManager.default.currentDirectoryPath))")
        }
        if path.hasSuffix(".csv") {
            var column = target
            if column == nil, case .csv(_, let named) = job.data { column = named }
            guard let column else { throw InputError("--data \(path): give --target, the CSV column holding targets") }
            return try CSV.read(path, target: column, targetSetting: "--target")
        }
        guard let targets else { throw InputError("--data \(path): a .npy file of features needs --targets FILE.npy") }
        let x = try NPY.read(path), y = try NPY.read(targets)
        guard x.rows == y.rows else {
            throw InputError("\(targets): \(y.rows) target rows but \(path) has \(x.rows) samples")
        }
        var data = try Dataset(name: path, features: x.values, featureWidth: x.columns, targets: y.values,
                               targetWidth: y.columns)
        data.targetsName = targets
        return data
    }
}

/// `shardtrain predict --config JOB --weights W --input x.npy|x.csv --output y.npy|y.csv`.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Predictions of trained weights for new samples: probabilities, class indices or values.",
        version: Version.text)

    @OptionGroup var model: ModelFlags
    @Option(help: ArgumentHelp("Features: .npy (samples × features) or .csv with a header (the job's target column, "
        + "if present, is left out).", valueName: "file")) var input: String
    @Option(help: ArgumentHelp("Where to write the predictions: .npy or .csv.", valueName: "file")) var output: String
    @Option(name: .customLong("as"), help: ArgumentHelp("probabilities, classes or values (default: probabilities for "
        + "classification, values for regression).", valueName: "kind")) var kind: TrainedModel.Output?

    func validate() throws {
        for (flag, path) in [("--input", input), ("--output", output)] where !path.hasSuffix(".npy") && !path.hasSuffix(".csv") {
            throw ValidationError("\(flag) \(path): give a .npy or .csv file")
        }
    }

    func run() throws {
        try reportingFailures {
            let trained = try model.load()
            let features: (values: [Float], columns: Int)
            if input.hasSuffix(".csv") {
                var excluded: String?
                if case .csv(_, let named) = trained.job.data { excluded = named }
                features = try CSV.readFeatures(input, excluding: excluded)
            } else {
                let read = try NPY.read(input)
                features = (read.values, read.columns)
            }
            let kind = kind ?? trained.defaultOutput
            let result = try trained.predict(features: features.values, columns: features.columns, as: kind)
            let rows = result.values.count / max(result.columns, 1)
            if output.hasSuffix(".npy") {
                try NPY.write(result.values, rows: rows, columns: kind == .classes ? nil : result.columns,
                              integers: kind == .classes, to: output)
            } else {
                let header = kind == .classes ? ["class"]
                    : (0..<result.columns).map { kind == .probabilities ? "p\($0)" : "y\($0)" }
                var text = header.joined(separator: ",") + "\n"
                for row in 0..<rows {
                    let cells = result.values[(row * result.columns)..<((row + 1) * result.columns)]
                    text += cells.map { kind == .classes ? String(Int($0)) : "\($0)" }.joined(separator: ",") + "\n"
                }
                do { try text.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                    throw InputError("--output \(output): cannot write it (\(error.localizedDescription))")
                }
            }
            logToStandardError("wrote \(rows) \(kind.rawValue == "classes" ? "class indices" : kind.rawValue) to \(output)")
        }
    }
}
