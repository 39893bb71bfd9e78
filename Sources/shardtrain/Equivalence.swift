import ArgumentParser
import Cluster
import Engine
import Foundation
import Jobs
import Platform

/// The reductions an equivalence check covers.
enum ReductionChoice: String, ExpressibleByArgument, CaseIterable {
    case exact, fast, both
    var reductions: [String] { self == .both ? ["exact", "fast"] : [rawValue] }
}

/// `shardtrain equivalence --config JOB --workers 1,2,4`: the "N workers give what one gives" check, run as a user
/// would run it — the train command in this process and with each N local workers — and compared.
struct Equivalence: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a job in-process and with N local workers for each N, and compare the results.",
        discussion: """
            Prints per run the weights' SHA-256, the largest |Δw| against the in-process run, the largest relative \
            difference of any logged loss, and how each batch's micro-shards were split. Exits 0 when every exact \
            run is bit-identical to the in-process one, 1 when one is not (fast runs are reported, not judged).
            """,
        version: Version.text)

    @Option(help: "The job file.") var config: String
    @Option(help: ArgumentHelp("Worker counts to compare with the in-process run, e.g. 1,2,4.", valueName: "n,n,…"))
    var workers: String = "1,2"
    @Option(help: "Epochs to train (default: the job's).") var epochs: Int?
    @Option(help: "Optimizer steps to train instead of epochs.") var steps: Int?
    @Option(help: "exact, fast or both.") var reduction: ReductionChoice = .exact
    @Option(help: "Samples per micro-shard (default: the job's); held fixed across the runs.") var microShard: Int?
    @Option(help: ArgumentHelp(JobSetting.gemm.help)) var gemm: GEMMLibrary?

    var counts: [Int] { workers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let parts = workers.split(separator: ",")
        guard !parts.isEmpty, parts.count == counts.count, counts.allSatisfy({ (1...64).contains($0) }) else {
            throw ValidationError("--workers \(workers): give worker counts from 1 to 64, separated by commas")
        }
        guard epochs == nil || steps == nil else { throw ValidationError("give --epochs or --steps, not both") }
    }

    struct Run {
        let label: String
        let digest: String
        let weights: [Float]
        let losses: [Double]
        /// How the steps' samples were shared out, most frequent first: "32+32 ×185, 48+16 ×5".
        let split: String
    }

    func run() throws {
        try reportingFailures {
            let overrides = JobOverrides(settings: [.epochs: epochs.map(String.init), .steps: steps.map(String.init),
                                                    .microShard: microShard.map(String.init), .gemm: gemm?.rawValue])
            let job = try overrides.apply(to: Job.load(config))
            let perBatch = (job.options.batchSize + job.options.microShardSize - 1) / job.options.microShardSize
            let folder = NSTemporaryDirectory() + "shardtrain-equivalence-\(getpid())"
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            for count in counts where count > perBatch {
                logToStandardError("warning: with \(count) workers, \(count - perBatch) \(count - perBatch == 1 ? "gets" : "get") no micro-shards: batch_size "
                    + "\(job.options.batchSize) / micro_shard \(job.options.microShardSize) makes \(perBatch) per batch")
            }
            print(Self.batchLine(batchSize: job.options.batchSize, microShard: job.options.microShardSize))
            print(pad("reduction", 10) + pad("workers", 12) + pad("SHA-256", 18) + pad("max |Δw|", 12)
                + pad("max rel Δloss", 15) + "samples per worker in a step × steps")
            var exactMismatch: [String] = [], exactCompared = 0
            for reduction in reduction.reductions {
                var reference: Run?
                for count in [0] + counts {
                    let result = try train(workers: count, reduction: reduction, folder: folder)
                    let split = count == 0 ? "one process" : result.split
                    guard let reference else {
                        reference = result
                        print(pad(reduction, 10) + pad("in-process", 12) + pad(String(result.digest.prefix(16)), 18)
                            + pad("—", 12) + pad("—", 15) + split)
                        continue
                    }
                    let deltaW = zip(reference.weights, result.weights).map { abs($0 - $1) }.max() ?? .infinity
                    let deltaLoss = zip(reference.losses, result.losses).map { a, b in
                        a == b ? 0 : abs(a - b) / max(abs(a), abs(b), .leastNormalMagnitude) }.max() ?? 0
                    let same = result.digest == reference.digest && result.weights.count == reference.weights.count
                    if reduction == "exact" {
                        exactCompared += 1
                        if !same { exactMismatch.append("\(count)") }
                    }
                    print(pad(reduction, 10) + pad("\(count)", 12)
                        + pad(String(result.digest.prefix(16)) + (same ? " =" : " ≠"), 18)
                        + pad(String(format: "%.3g", deltaW), 12) + pad(String(format: "%.3g", deltaLoss), 15) + split)
                }
            }
            let fastNote = self.reduction == .exact ? "" : "; fast runs are reported, not judged"
            guard exactMismatch.isEmpty else {
                print("verdict: DIFFERENT — exact with \(exactMismatch.joined(separator: ", ")) worker"
                    + "\(exactMismatch == ["1"] ? "" : "s") gave other bits than in-process\(fastNote)")
                throw ExitCode(1)
            }
            print(exactCompared > 0
                ? "verdict: the same — every exact run (\(exactCompared)) gave the in-process run's bits\(fastNote)"
                : "verdict: none judged — fast runs are reported, not judged")
        }
    }

    /// The train command as a user runs it, in a child process: its weights' SHA-256 and values, and its losses.
    private func train(workers count: Int, reduction: String, folder: String) throws -> Run {
        let weights = "\(folder)/\(reduction)-\(count).safetensors", metrics = "\(folder)/\(reduction)-\(count).jsonl"
        var arguments = ["train", "--config", config, "--reduction", reduction, "--workers", String(count), "--save",
                         weights, "--metrics", metrics, "--no-progress", "--threads", "1", "--verbose"]
        if let epochs { arguments += ["--epochs", String(epochs)] }
        if let steps { arguments += ["--steps", String(steps)] }
        if let microShard { arguments += ["--micro-shard", String(microShard)] }
        if let gemm { arguments += ["--gemm", gemm.rawValue] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: LocalWorkers.currentExecutable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let bytes = FileManager.default.contents(atPath: weights) else {
            throw ClusterError("the run with \(count == 0 ? "no" : String(count)) workers failed (status "
                + "\(process.terminationStatus)): \(text.split(separator: "\n").last ?? "")")
        }
        var digest = SHA256()
        digest.update([UInt8](bytes))
        // The tensors follow the 8-byte length and the JSON header, as float32 in the layout's order.
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let values = bytes.dropFirst(8 + headerLength).withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
        }
        let losses = ((try? String(contentsOfFile: metrics, encoding: .utf8)) ?? "").split(separator: "\n").flatMap {
            line -> [Double] in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return [] }
            return ["loss", "val_loss"].compactMap { object[$0] as? Double }
        }
        // The coordinator's step lines: "step 12: send …; w1 32 samples, w2 32 samples".
        var patterns: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("step ") {
            guard let shares = line.split(separator: ";").last else { continue }
            let samples = shares.split(separator: ",").compactMap { part in
                part.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            }
            patterns[samples.map(String.init).joined(separator: "+"), default: 0] += 1
        }
        let split = patterns.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(3)
            .map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + (patterns.count > 3 ? ", …" : "")
        return Run(label: "\(count)", digest: digest.hexDigest(), weights: values, losses: losses, split: split)
    }

    /// "64 samples per batch in 4 micro-shards of 16", or with a short last one: "50 samples per batch in 4
    /// micro-shards: 3 of 16 and 1 of 2".
    static func batchLine(batchSize: Int, microShard: Int) -> String {
        let full = batchSize / microShard, rest = batchSize % microShard, count = full + (rest > 0 ? 1 : 0)
        let shards = "\(count) micro-shard\(count == 1 ? "" : "s")"
        guard rest > 0 else { return "\(batchSize) samples per batch in \(shards) of \(microShard)" }
        guard full > 0 else { return "\(batchSize) samples per batch in 1 micro-shard of \(rest)" }
        return "\(batchSize) samples per batch in \(shards): \(full) of \(microShard) and 1 of \(rest)"
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
