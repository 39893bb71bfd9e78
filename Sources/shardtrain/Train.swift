import ArgumentParser
import Cluster
import Engine
import Foundation
import Platform

/// `shardtrain train --config JOB [--workers N]`: in this process, or with N local worker processes.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model described by a job file (YAML or JSON), in-process or with local workers.",
        version: Version.text)

    @OptionGroup var flags: TrainingFlags
    @OptionGroup var cluster: ClusterFlags
    @Option(help: "Local worker processes to start (0: train in this process); one that exits is restarted.")
    var workers = 0

    func run() throws {
        try reportingFailures {
            guard workers >= 0 else { throw InputError("--workers \(workers): must be 0 or more") }
            guard workers > 0 else { return try flags.train() }
            var local: LocalWorkers?
            var coordinator: Coordinator?
            let threads = flags.threads ?? 1, cores = ProcessInfo.processInfo.activeProcessorCount
            if workers * threads > cores {
                logToStandardError("warning: \(workers) workers × \(threads) thread\(threads == 1 ? "" : "s") = "
                    + "\(workers * threads) compute threads on \(cores) core\(cores == 1 ? "" : "s"): they take turns, "
                    + "which is slower than --workers × --threads ≤ \(cores)")
            }
            // A file (made 0600 by the coordinator's bind), not Linux's abstract namespace, which any local user
            // could connect to. Removed at the end; after a SIGKILL, by the local workers as they stop.
            let endpoint = "ipc:///tmp/shardtrain-\(getpid())-\(UInt32.random(in: 0 ... .max)).ipc"
            defer {
                local?.terminate()
                try? FileManager.default.removeItem(atPath: String(endpoint.dropFirst("ipc://".count)))
            }
            try servingWorkers({ coordinator }) {
                try flags.train(makeSource: { job, training in
                    let made = try cluster.coordinator(job: job, training: training, endpoint: endpoint,
                                                       workers: workers, verbose: flags.verbose)
                    coordinator = made
                    // --threads means the threads of each worker here, as it does for `shardtrain worker`.
                    local = try LocalWorkers(count: workers, endpoint: endpoint, threads: threads)
                    made.processCheck = { local?.check(log: logToStandardError) }
                    return made
                }, prepared: { try waitForWorkers(coordinator, $0, $1) })
            }
        }
    }
}
