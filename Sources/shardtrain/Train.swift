import ArgumentParser
import Cluster
import Engine
import Foundation

/// `shardtrain train --config JOB [--workers N]`: in this process, or with N local worker processes.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model described by a job file (YAML or JSON), in-process or with local workers.")

    @OptionGroup var flags: TrainingFlags
    @Option(help: "Local worker processes to start (0: train in this process).") var workers = 0
    @Option(help: "Seconds a worker may take to return a step before the run stops.") var workerTimeout = 30.0

    func run() throws {
        try reportingFailures {
            guard workers >= 0 else { throw InputError("--workers \(workers): must be 0 or more") }
            guard workers > 0 else { return try flags.train() }
            var local: LocalWorkers?
            var coordinator: Coordinator?
            let endpoint = "ipc:///tmp/shardtrain-\(getpid())-\(UInt32.random(in: 0 ... .max)).ipc"
            defer {
                coordinator?.shutdown()
                local?.terminate()
                try? FileManager.default.removeItem(atPath: String(endpoint.dropFirst("ipc://".count)))
            }
            try flags.train(makeSource: { job, training in
                var settings = Coordinator.Settings(endpoint: endpoint, workers: workers)
                settings.workerTimeout = .milliseconds(Int(workerTimeout * 1000))
                settings.verbose = flags.verbose
                settings.joinTimeout = .seconds(60)
                let made = try Coordinator(job: job, training: training, settings: settings, log: logToStandardError)
                local = try LocalWorkers(count: workers, endpoint: endpoint)
                made.processCheck = { local?.check() }
                try made.waitForWorkers()
                coordinator = made
                return made
            })
        }
    }
}
