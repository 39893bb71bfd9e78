import ArgumentParser
import Cluster
import Engine
import Foundation
import Platform

/// `shardtrain coordinator --config JOB --bind tcp://0.0.0.0:5555 --workers N`: waits for N workers, then trains.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Wait for N workers on an endpoint, then train with them.",
        version: Version.text)

    @OptionGroup var flags: TrainingFlags
    @OptionGroup var cluster: ClusterFlags
    @OptionGroup(title: "Keys") var keys: CoordinatorKeyFlags
    @Option(help: "Endpoint to listen on, e.g. tcp://0.0.0.0:5555.") var bind = "tcp://0.0.0.0:5555"
    @Option(help: "Workers that must join before step 1 (more may join later).") var workers: Int

    func run() throws {
        try reportingFailures {
            guard workers >= 1 else { throw InputError("--workers \(workers): a coordinator needs at least 1") }
            if let threads = flags.threads {
                throw InputError("--threads \(threads): a coordinator computes no micro-shards; give --threads to each "
                    + "`shardtrain worker`")
            }
            if let problem = EndpointReach.problem(bind) { throw InputError("--bind \(problem)") }
            try coordinate(flags: flags, cluster: cluster, keys: try keys.coordinatorKeys(listeningOn: bind), bind: bind,
                           workers: workers)
        }
    }
}

/// Listens on `bind`, waits for `workers` workers, trains with them and tells them how the run ended.
func coordinate(flags: TrainingFlags, cluster: ClusterFlags, keys coordinatorKeys: CoordinatorKeys?, bind: String,
                workers: Int) throws {
    var coordinator: Coordinator?
    try servingWorkers({ coordinator }) {
        try flags.train(makeSource: { job, training in
            let made = try cluster.coordinator(job: job, training: training, endpoint: bind, workers: workers,
                                               verbose: flags.verbose, keys: coordinatorKeys)
            coordinator = made
            let security = coordinatorKeys.map { "CurveZMQ, key \($0.keyPair.publicKey.fingerprint)…, "
                + "\($0.authorized.count) authorised" } ?? "plaintext"
            let layout = made.settings.sharded ? "the sum sharded over the workers" : "the sum at the coordinator"
            logToStandardError("waiting for \(workers) worker\(workers == 1 ? "" : "s") on \(made.endpoint) (\(security); "
                + "\(layout), --layout \(cluster.layout.rawValue))")
            return made
        }, prepared: { try waitForWorkers(coordinator, $0, $1) })
    }
}
