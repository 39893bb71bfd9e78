import ArgumentParser
import Engine
import Foundation

/// `shardtrain train --config JOB`: parse, call the engine, print.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model described by a job file (YAML or JSON).")

    @Option(name: .long, help: "The job file.")
    var config: String

    @Option(help: "Epochs to train (replaces the job's epochs or steps).") var epochs: Int?
    @Option(help: "Optimizer steps to train (replaces the job's epochs or steps).") var steps: Int?
    @Option(help: "Samples per batch.") var batchSize: Int?
    @Option(help: "sgd, rmsprop, adam or adamw, with torch.optim's defaults.") var optimizer: String?
    @Option(help: "Base learning rate.") var lr: Double?
    @Option(help: "Seed of initialisation, shuffling and synthetic data.") var seed: UInt64?
    @Flag(help: "Keep the data's order in every epoch.") var noShuffle = false
    @Option(help: "Samples per micro-shard (the unit computed identically everywhere).") var microShard: Int?
    @Option(help: "exact (same bits for any split) or fast (one GEMM per batch).") var reduction: String?
    @Option(help: "Print every this many epochs.") var logEvery: Int?
    @Option(name: .customLong("init"), help: "Start from these weights (safetensors, named as nn.Sequential).") var initWeights: String?
    @Option(help: "Save the trained weights here (safetensors).") var save: String?
    @Option(help: "Append one JSON object per epoch to this file.") var metrics: String?
    @Option(help: "Threads computing micro-shards, each with single-threaded BLAS (default: all cores).")
    var threads: Int?
    @Flag(help: "Print the set-up and the BLAS kernel.") var verbose = false

    func run() throws {
        // One line on standard error, no usage dump: the message already says what to change.
        do {
            try train()
        } catch let error as InputError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(2)
        } catch let error as TrainingError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode(3)
        }
    }

    private func train() throws {
        var overrides = JobOverrides()
        overrides.epochs = epochs
        overrides.steps = steps
        overrides.batchSize = batchSize
        overrides.optimizer = optimizer
        overrides.learningRate = lr
        overrides.seed = seed
        overrides.noShuffle = noShuffle
        overrides.microShardSize = microShard
        overrides.logEvery = logEvery
        overrides.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        if let reduction {
            guard let mode = Reduction(rawValue: reduction) else {
                throw InputError("--reduction \(reduction): use exact or fast")
            }
            overrides.reduction = mode
        }
        try checkPositive(["--epochs": epochs, "--steps": steps, "--batch-size": batchSize,
                           "--micro-shard": microShard, "--log-every": logEvery, "--threads": threads])
        if epochs != nil && steps != nil { throw InputError("give --epochs or --steps, not both") }

        let run = try PreparedRun(jobFile: config, overrides: overrides, initialWeights: initWeights)
        BLAS.setThreads(1)
        if verbose { print(run.summary + ", BLAS kernel \(BLAS.kernel)") }
        let metricsFile = try metrics.map(MetricsFile.init)
        try run.trainer.run { report in
            if report.epoch % run.logEvery == 0 { print(Reporting.epochLine(report)) }
            metricsFile?.append(Reporting.metricsLine(report))
        }
        print(run.closingLines().joined(separator: "\n"))
        if let save {
            try Safetensors.write(run.trainer.parameters.array, layout: run.job.model.layout, to: save,
                                  metadata: ["format": "pt", "producer": "shardtrain"])
        }
    }

    private func checkPositive(_ values: [String: Int?]) throws {
        for (flag, value) in values.sorted(by: { $0.key < $1.key }) {
            if let value, value < 1 { throw InputError("\(flag) \(value): must be at least 1") }
        }
    }
}

/// Appends lines to the metrics file, created anew for the run.
final class MetricsFile {
    private let handle: FileHandle

    init(_ path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw InputError("--metrics \(path): cannot create the file; check that the folder exists and is writable")
        }
        self.handle = handle
    }

    func append(_ line: String) { handle.write(Data((line + "\n").utf8)) }

    deinit { try? handle.close() }
}
