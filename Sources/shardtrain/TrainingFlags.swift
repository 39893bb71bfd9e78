import ArgumentParser
import Cluster
import Engine
import Foundation

/// The flags every way of training shares (`train`, `coordinator`): they mean the same everywhere.
struct TrainingFlags: ParsableArguments {
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
    @Option(name: .customLong("init"), help: "Start from these weights (safetensors, named as nn.Sequential).")
    var initWeights: String?
    @Option(help: "Save the trained weights here (safetensors).") var save: String?
    @Option(help: "Append one JSON object per epoch to this file.") var metrics: String?
    @Option(help: "Threads computing micro-shards in this process, each with single-threaded BLAS (default: all cores).")
    var threads: Int?
    @Flag(help: "Print the set-up, the BLAS kernel and, when distributed, every step's timings.") var verbose = false

    func overrides() throws -> JobOverrides {
        try checkPositive(["--epochs": epochs, "--steps": steps, "--batch-size": batchSize,
                           "--micro-shard": microShard, "--log-every": logEvery, "--threads": threads])
        if epochs != nil && steps != nil { throw InputError("give --epochs or --steps, not both") }
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
        return overrides
    }

    /// Prepares the run (refusing bad input before any step), trains, prints and saves. `makeSource` supplies
    /// worker processes when the run is distributed.
    func train(makeSource: (Job, Dataset) throws -> GradientSource? = { _, _ in nil }) throws {
        let overrides = try overrides()
        BLAS.setThreads(1)
        let run = try PreparedRun(jobFile: config, overrides: overrides, initialWeights: initWeights,
                                  makeSource: makeSource)
        if verbose { print(run.summary + ", BLAS kernel \(BLASKernel.description)") }
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

/// Runs a command body, turning known failures into one line on standard error and an exit status:
/// 2 bad input, 3 the run diverged, 4 the cluster failed.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as InputError {
        fail(error.message, status: 2)
    } catch let error as TrainingError {
        fail(error.message, status: 3)
    } catch let error as ClusterError {
        fail(error.message, status: 4)
    }
    func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        Foundation.exit(status)
    }
}

/// Lines about workers go to standard error, so standard output is the same in every mode.
func logToStandardError(_ line: String) {
    FileHandle.standardError.write(Data("\(line)\n".utf8))
}
