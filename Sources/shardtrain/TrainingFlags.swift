import ArgumentParser
import CPlatform
import Cluster
import Engine
import Foundation
import Jobs
import Platform

extension Reduction: ExpressibleByArgument {}
extension GEMMLibrary: ExpressibleByArgument {}

/// The optimizers `--optimizer` can name (each with `torch.optim`'s defaults).
enum OptimizerName: String, ExpressibleByArgument, CaseIterable {
    case sgd, rmsprop, adam, adamw
}

/// The flags every way of training shares (`train`, `coordinator`): they mean the same everywhere.
struct TrainingFlags: ParsableArguments {
    @Option(name: .long, help: "The job file.")
    var config: String

    // The job's one-value settings: meaning, checks and effect come from `JobSetting`.
    @Option(help: ArgumentHelp(JobSetting.epochs.help)) var epochs: Int?
    @Option(help: ArgumentHelp(JobSetting.steps.help)) var steps: Int?
    @Option(help: ArgumentHelp(JobSetting.batchSize.help)) var batchSize: Int?
    @Option(help: ArgumentHelp(JobSetting.seed.help)) var seed: Int?
    @Flag(help: ArgumentHelp(JobSetting.shuffle.help)) var noShuffle = false
    @Option(help: ArgumentHelp(JobSetting.microShard.help)) var microShard: Int?
    @Option(help: ArgumentHelp(JobSetting.reduction.help)) var reduction: Reduction?
    @Option(help: ArgumentHelp(JobSetting.gemm.help)) var gemm: GEMMLibrary?
    @Option(help: ArgumentHelp(JobSetting.logEvery.help)) var logEvery: Int?
    @Option(help: "The optimizer, with torch.optim's defaults (unless the job names the same one).")
    var optimizer: OptimizerName?
    @Option(help: "Base learning rate.") var lr: Double?
    @Option(name: .customLong("init"), help: "Start from these weights (safetensors, named as nn.Sequential).")
    var initWeights: String?
    @Option(help: "Save the trained weights here (safetensors).") var save: String?
    @Option(help: "Write one JSON object per epoch to this file (appended to with --resume).") var metrics: String?
    @Option(help: ArgumentHelp("Write TensorBoard event files into this folder (created if missing; a new file per run "
        + "or resume): per epoch the --metrics figures, and each worker's samples and seconds.", valueName: "folder"))
    var tensorboard: String?
    @Option(help: ArgumentHelp("Serve the run's figures for Prometheus at http://ADDRESS/metrics (:9400 on every "
        + "address, 127.0.0.1:9400 on this machine only): step, epoch, loss, rate, workers by state, each worker's time.",
        valueName: "address"))
    var prometheus: String?
    @Option(help: ArgumentHelp("Write the run's timeline here as a Chrome trace (open it in Perfetto or "
        + "chrome://tracing): the coordinator's steps and each worker's results.", valueName: "file"))
    var trace: String?
    @Option(help: ArgumentHelp("Threads computing micro-shards, each with single-threaded products: in this process "
        + "(default: all cores), or in each local worker of `train --workers N` (default: 1)."))
    var threads: Int?
    @Flag(help: "Print the set-up, the GEMM library and its kernels and, when distributed, what each worker shares in memory and every step's timings (a line per step).") var verbose = false
    @Flag(help: "No progress line on standard error (it is drawn only on a terminal).") var noProgress = false
    @Flag(help: "Also write a record per optimizer step to the --metrics file (step, epoch, time, loss, samples, rate).")
    var metricsSteps = false
    @Option(help: "Write checkpoints (weights, optimizer state, position) into this folder; the newest 3 are kept.")
    var checkpoint: String?
    @Option(help: "Write a checkpoint every N steps (default: at the end of each epoch), on SIGTERM/SIGINT and at the end.")
    var checkpointEvery: Int?
    @Flag(help: "Continue from the newest checkpoint in --checkpoint (start from step 0 when there is none).")
    var resume = false

    func overrides() throws -> JobOverrides {
        if let threads, threads < 1 { throw InputError("--threads \(threads): must be at least 1") }
        if let checkpointEvery, checkpointEvery < 1 {
            throw InputError("--checkpoint-every \(checkpointEvery): must be at least 1")
        }
        if resume && checkpoint == nil { throw InputError("--resume needs --checkpoint FOLDER to resume from") }
        if checkpointEvery != nil && checkpoint == nil { throw InputError("--checkpoint-every needs --checkpoint FOLDER") }
        if metricsSteps && metrics == nil { throw InputError("--metrics-steps needs --metrics FILE to write to") }
        var overrides = JobOverrides(settings: [
            .epochs: epochs.map(String.init), .steps: steps.map(String.init), .batchSize: batchSize.map(String.init),
            .seed: seed.map(String.init), .shuffle: noShuffle ? "false" : nil,
            .microShard: microShard.map(String.init), .reduction: reduction?.rawValue, .gemm: gemm?.rawValue,
            .logEvery: logEvery.map(String.init),
        ])
        overrides.optimizer = optimizer?.rawValue
        overrides.learningRate = lr
        overrides.threads = threads ?? ProcessInfo.processInfo.activeProcessorCount
        return overrides
    }

    /// Prepares the run (refusing bad input before any step), trains, prints and saves. `makeSource` supplies
    /// worker processes when the run is distributed; `prepared` sees the run and its checkpointer before step 1.
    func train(makeSource: (Job, Dataset) throws -> GradientSource? = { _, _ in nil },
               prepared: (PreparedRun, Checkpointer?) throws -> Void = { _, _ in }) throws {
        let overrides = try overrides()
        // Opened now: an unwritable path is reported before training, and the weights can be written at the end
        // even if descriptors have run out by then.
        let saveFile = try save.map { try ReservedFile($0, what: "--save") }
        cplatform_line_buffer_stdout()
        Interruption.install()
        BLAS.setThreads(1)
        let run = try PreparedRun(jobFile: config, overrides: overrides, initialWeights: initWeights,
                                  makeSource: makeSource)
        let trainer = run.trainer
        let checkpointer = try checkpoint.map {
            try Checkpointer(folder: $0, job: run.job, fingerprint: trainer.training.fingerprint)
        }
        if verbose {
            let library = run.job.options.library
            print(run.summary + (library == .oneDNN ? ", products on \(library.description)," : ", products on OpenBLAS,")
                  + " BLAS kernel \(BLASKernel.description)")
        }
        if resume, let checkpointer {
            if let path = try checkpointer.resume(trainer, log: logToStandardError) {
                logToStandardError("resumed from \(path): step \(trainer.step) of \(trainer.totalSteps), epoch \(trainer.epoch)")
            } else {
                logToStandardError("no checkpoint in \(checkpointer.folder) yet; starting at step 0")
            }
        }
        try prepared(run, checkpointer)
        let metricsFile = try metrics.map { try MetricsFile($0, append: resume) }
        let events = try tensorboard.map { try TensorBoardFile(folder: $0) }
        // Kept only when served: without --prometheus no step pays for updating them.
        let figures = prometheus.map { _ in RunMetrics(totalSteps: trainer.totalSteps) }
        let server = try prometheus.map { address in try MetricsServer(address: address) { figures!.exposition() } }
        defer { server?.stop() }
        if let server {
            logToStandardError("serving Prometheus metrics on port \(server.port): http://\(server.address)/metrics")
        }
        let coordinator = trainer.source as? Coordinator
        let timeline = try trace.map { try TraceFile($0, process: coordinator == nil ? "train" : "coordinator") }
        if timeline != nil { coordinator?.traces = [] }
        let layerSpans = timeline == nil ? nil : trainer.recordLayers()
        defer { timeline?.drain() }
        var stepStart = ContinuousClock.now
        func census() {
            guard let figures, let c = coordinator?.census() else { return }
            figures.census(.init(states: c.states, losses: c.losses, rejoins: c.rejoins))
        }
        let every = checkpointEvery ?? max(trainer.plan.batchesPerEpoch, 1)
        let progress = ProgressLine.start(enabled: !noProgress)
        defer { progress?.finish() }
        do {
            try trainer.run(onEpoch: { report in
                // Cleared only to print a line: on short epochs it would otherwise be blank most of the time.
                if report.epoch % run.logEvery == 0 {
                    progress?.clear()
                    print(Reporting.epochLine(report))
                }
                // Distributed: each worker's samples and busy seconds over the epoch.
                let shares = coordinator?.takeShares()
                let time = Date()
                metricsFile?.append(Reporting.metricsLine(report, time: time, extra: shares.map { shares in
                    ["\"workers\":{\(shares.map(\.metricsEntry).joined(separator: ","))}"]
                } ?? []))
                // Which worker held the epoch's steps up: after the last epoch, and with a logged epoch's line when one
                // took a quarter longer than the median worker or more.
                let last = report.step >= trainer.totalSteps
                if report.epoch % run.logEvery == 0 || last,
                   let line = shares.flatMap({ Reporting.stragglersLine($0, atLeast: last ? 0 : 1.25) }) {
                    logToStandardError(line)
                }
                events?.append(report, time: time, shares: shares ?? [])
                figures?.epochEnded(report, shares: shares ?? [])
            }, afterStep: { trainer in
                try metricsFile?.check()
                try events?.check()
                if let timeline {
                    let now = ContinuousClock.now
                    if let coordinator {
                        for step in coordinator.takeTraces() { timeline.step(step, ended: now) }
                    } else {
                        timeline.step(trainer.step, from: stepStart, to: now, layers: layerSpans ?? [])
                    }
                    stepStart = now
                    try timeline.check()
                }
                figures?.stepped(step: trainer.step, epoch: trainer.epoch)
                census()
                progress?.update(trainer)
                if metricsSteps, let metricsFile, let last = trainer.lastStep {
                    // Recorded after the step: its epoch is that of the step before the counter moved on.
                    let batches = max(trainer.plan.batchesPerEpoch, 1)
                    metricsFile.append(Reporting.stepLine(step: trainer.step, epoch: (trainer.step - 1) / batches,
                                                          statistics: last.statistics, learningRate: last.learningRate))
                }
                if trainer.step % every == 0, let checkpointer, try checkpointer.write(trainer, required: false) == nil {
                    logToStandardError("checkpoint at step \(trainer.step) skipped: no file can be opened now (too "
                        + "many open files); training goes on and the next checkpoint tries again")
                }
                if let signal = Interruption.signal {
                    throw Interrupted(signal: signal, checkpoint: try checkpointer?.write(trainer), steps: trainer.step)
                }
            })
        } catch let stop as Interrupted {
            // Stopped inside a step: the trainer still holds the state from before it.
            throw Interrupted(signal: stop.signal, checkpoint: try stop.checkpoint ?? checkpointer?.write(trainer),
                              steps: trainer.step)
        }
        try metricsFile?.check()
        try events?.check()
        let traceCost = timeline?.finish()
        try timeline?.check()
        if let traceCost { logToStandardError(traceCost) }
        print(run.closingLines().joined(separator: "\n"))
        // The weights first: they are the run's result, written through the file opened at the start.
        try saveFile?.commit(Safetensors.encode(trainer.parameters.array, layout: run.job.model.layout,
                                                metadata: ["format": "pt", "producer": "shardtrain"]))
        // With the weights saved, a final checkpoint that cannot be opened is not worth failing the run for.
        if let checkpointer, try checkpointer.write(trainer, required: saveFile == nil) == nil {
            logToStandardError("the final checkpoint was skipped: no file can be opened now (too many open files); "
                + "the weights are saved in \(save ?? "")")
        }
    }
}

/// Runs a command body, turning known failures into one line on standard error and an exit status:
/// 2 bad input, 3 the run diverged, 4 the cluster failed, 128 + N stopped by signal N (130 SIGINT, 143 SIGTERM).
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let stop as Interrupted {
        fail(stop.description, status: Interruption.exitStatus(stop.signal))
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
    ProgressLine.log(line)
}
