import ArgumentParser
import Cluster
import Engine
import Foundation
import Platform

/// `shardtrain launch --config JOB [train flags]`: one command line for every process of a run. Its place comes from
/// the launcher (torchrun/Kubeflow: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; srun: SLURM_PROCID, SLURM_NTASKS,
/// the first host of SLURM_JOB_NODELIST), flags overriding: rank 0 is the coordinator, the others its workers.
struct Launch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Coordinator (rank 0) or worker (other ranks) of one run, placed by torchrun's or Slurm's variables.",
        discussion: """
            Every rank takes the same command line; flags that act on the run's results (--save, --metrics, \
            --tensorboard, --prometheus, --trace, --checkpoint) act on rank 0 and are accepted and ignored elsewhere. With one \
            process it trains in-process.
            """,
        version: Version.text)

    @OptionGroup var flags: TrainingFlags
    @OptionGroup var cluster: ClusterFlags
    @OptionGroup(title: "Keys (one shared --key serves every rank)") var keys: SharedKeyFlags
    @Option(help: "This process's rank (default: RANK or SLURM_PROCID).") var rank: Int?
    @Option(help: "Processes in the run, coordinator included (default: WORLD_SIZE or SLURM_NTASKS).") var worldSize: Int?
    @Option(help: "The coordinator's host (default: MASTER_ADDR or the first host of SLURM_JOB_NODELIST).")
    var masterAddr: String?
    @Option(help: "The coordinator's port (default: MASTER_PORT or 29500).") var masterPort: Int?
    @Option(help: "Workers: seconds to keep trying to reach the coordinator before giving up.") var idleTimeout = 120.0

    func run() throws {
        try reportingFailures {
            let place: LaunchPlace
            do {
                place = try LaunchPlace.resolve(rank: rank, worldSize: worldSize, host: masterAddr, port: masterPort,
                                                environment: ProcessInfo.processInfo.environment)
            } catch let error as LaunchError {
                throw InputError("launch: \(error.message)")
            }
            guard place.worldSize > 1 else { return try flags.train() }
            if place.rank == 0 {
                let bind: String
                // An address that does not resolve to this machine is bad input, as any endpoint is (exit 2).
                do { bind = try place.bindEndpoint() } catch let error as LaunchError { throw InputError(error.message) }
                logToStandardError("launch: rank 0 of \(place.worldSize) (\(place.source)): coordinator on \(bind)")
                try coordinate(flags: flags, cluster: cluster, keys: try keys.coordinatorKeys(listeningOn: bind),
                               bind: bind, workers: place.worldSize - 1)
            } else {
                // Every rank refuses the same bad flags as rank 0 (a worker rank needs no copy of the job file).
                try flags.overrides().check()
                let environment = ProcessInfo.processInfo.environment
                let threads = flags.threads ?? environment["SLURM_CPUS_PER_TASK"].flatMap(Int.init) ?? 1
                let name = "rank-\(place.rank)@\(ProcessInfo.processInfo.hostName)"
                logToStandardError("launch: rank \(place.rank) of \(place.worldSize) (\(place.source)): worker of "
                    + place.connectEndpoint)
                let workerKeys = try keys.workerKeys(connectingTo: place.connectEndpoint)
                try work(connect: place.connectEndpoint, name: name, threads: max(1, threads), idleTimeout: idleTimeout,
                         keys: workerKeys)
            }
        }
    }
}
