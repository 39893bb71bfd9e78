import ArgumentParser
import Cluster
import Engine
import Foundation

/// `shardtrain coordinator --config JOB --bind tcp://0.0.0.0:5555 --workers N`: waits for N workers, then trains.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Wait for N workers on an endpoint, then train with them.")

    @OptionGroup var flags: TrainingFlags
    @Option(help: "Endpoint to listen on, e.g. tcp://0.0.0.0:5555.") var bind = "tcp://0.0.0.0:5555"
    @Option(help: "Workers to wait for.") var workers: Int
    @Option(help: "Seconds to wait for all workers to join.") var joinTimeout = 120.0
    @Option(help: "Seconds a worker may take to return a step before the run stops.") var workerTimeout = 30.0

    func run() throws {
        try reportingFailures {
            guard workers >= 1 else { throw InputError("--workers \(workers): a coordinator needs at least 1") }
            var coordinator: Coordinator?
            defer { coordinator?.shutdown() }
            try flags.train(makeSource: { job, training in
                var settings = Coordinator.Settings(endpoint: bind, workers: workers)
                settings.joinTimeout = .milliseconds(Int(joinTimeout * 1000))
                settings.workerTimeout = .milliseconds(Int(workerTimeout * 1000))
                settings.verbose = flags.verbose
                let made = try Coordinator(job: job, training: training, settings: settings, log: logToStandardError)
                logToStandardError("waiting for \(workers) workers on \(made.endpoint)")
                try made.waitForWorkers()
                coordinator = made
                return made
            })
        }
    }
}
