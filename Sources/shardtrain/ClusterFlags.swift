import ArgumentParser
import Cluster
import Engine
import Foundation
import Jobs
import Platform

/// The flags of every run with workers (`train --workers N`, `coordinator`): membership, heartbeats and timeouts.
struct ClusterFlags: ParsableArguments {
    @Option(help: "Seconds between heartbeats, both ways; a worker silent for 3 is lost.") var heartbeat = 1.0
    @Option(help: "Fewest workers to train with; below it, checkpoint and wait --rejoin-timeout for more.")
    var minWorkers = 1
    @Option(help: "Seconds to wait for the workers to join before step 1.") var joinTimeout = 120.0
    @Option(help: "Seconds a worker may take over one assignment before it is lost and its work moves.")
    var workerTimeout = 30.0
    @Option(help: "Seconds to wait for workers when fewer than --min-workers are left.") var rejoinTimeout = 300.0
    /// Removed: said so, rather than "unknown option", to whoever still passes it.
    @Flag(help: .hidden) var weightsAsChange = false
    @Option(help: ArgumentHelp("Results and weights in parts (at most 65,536 parameters): each part of the weights is "
        + "updated and sent back as soon as every worker's values there are in, so weights go down while gradients "
        + "still come up, and workers send a layer's parts as backward finishes it. auto: on when the endpoint is "
        + "not on this machine (workers on other machines)."))
    var overlap = OverlapChoice.auto
    @Option(help: ArgumentHelp("Where gradients are summed. star: at the coordinator, which sends every worker the new "
        + "weights. sharded: the parts of the parameters are owned by the workers, which sum them and send each part's "
        + "mean to every worker; every worker applies every update, so the coordinator's link no longer carries N "
        + "results and N weights (docs/scale-out.md; needs a tcp:// endpoint). auto: sharded when the endpoint is not "
        + "on this machine and --overlap is not off, as long as every worker offers a peer socket its address reaches; the "
        + "star otherwise."))
    var layout = LayoutChoice.auto

    func validate() throws {
        if weightsAsChange {
            throw ValidationError("--weights-as-change is no longer offered: on the slow links where it helped, "
                + "--overlap (on by default across machines) is faster; drop the flag")
        }
        // Workers refuse a job whose heartbeat exceeds an hour: so does this.
        guard heartbeat.isFinite, heartbeat >= 0.01, heartbeat <= 3600 else {
            throw ValidationError("--heartbeat \(heartbeat): give seconds between 0.01 and 3600")
        }
        for (flag, value) in [("--join-timeout", joinTimeout),
                              ("--worker-timeout", workerTimeout), ("--rejoin-timeout", rejoinTimeout)] {
            guard value.isFinite, value >= 0.01, value <= 1e6 else {
                throw ValidationError("\(flag) \(value): give seconds between 0.01 and 1000000")
            }
        }
        guard minWorkers >= 1 else { throw ValidationError("--min-workers \(minWorkers): must be at least 1") }
    }

    /// A coordinator for the run on `endpoint`, logging to standard error, with these flags' settings.
    func coordinator(job: Job, training: Dataset, endpoint: String, workers: Int, verbose: Bool,
                     keys: CoordinatorKeys? = nil) throws -> Coordinator {
        guard workers <= Coordinator.maximumWorkers else {
            throw InputError("\(workers) workers: a coordinator holds at most \(Coordinator.maximumWorkers); start "
                + "fewer, each with more --threads")
        }
        guard minWorkers <= workers else {
            throw InputError("--min-workers \(minWorkers) is more than the \(workers) workers the run starts with")
        }
        let perBatch = (job.options.batchSize + job.options.microShardSize - 1) / job.options.microShardSize
        if perBatch < workers {
            let idle = workers - perBatch
            logToStandardError("warning: batch_size \(job.options.batchSize) / micro_shard \(job.options.microShardSize) "
                + "makes \(perBatch) micro-shard\(perBatch == 1 ? "" : "s") per batch, so \(idle) of the "
                + "\(workers) workers \(idle == 1 ? "gets" : "get") no work in a step; lower micro_shard (and hold it "
                + "fixed when comparing runs)")
        }
        var settings = Coordinator.Settings(endpoint: endpoint, workers: workers)
        settings.minimumWorkers = minWorkers
        settings.heartbeat = .seconds(heartbeat)
        settings.joinTimeout = .seconds(joinTimeout)
        settings.workerTimeout = .seconds(workerTimeout)
        settings.rejoinTimeout = .seconds(rejoinTimeout)
        settings.verbose = verbose
        settings.overlap = switch overlap {
        case .on: true
        case .off: false
        case .auto: !EndpointReach.isLocal(endpoint)
        }
        // Results in parts carry the sharded layout: `--overlap off` keeps the star.
        if layout == .auto && overlap != .off && endpoint.hasPrefix("tcp://") && !EndpointReach.isLocal(endpoint) {
            (settings.sharded, settings.overlap, settings.starWhenUnreachable) = (true, true, true)
        }
        if layout == .sharded {
            guard endpoint.hasPrefix("tcp://") else {
                throw InputError("--layout sharded: the workers reach each other over TCP, and \(endpoint) is not a "
                    + "tcp:// endpoint (`train --workers` keeps its workers on this machine, where the star is faster); "
                    + "run `coordinator --bind tcp://ADDRESS:PORT --layout sharded` with `worker`s, or `launch`")
            }
            (settings.sharded, settings.overlap) = (true, true)
        }
        if verbose && settings.overlap { logToStandardError("results and weights go in parts (--overlap)") }
        settings.keys = keys
        return try Coordinator(job: job, training: training, settings: settings, log: logToStandardError)
    }
}

/// Where gradients are summed (`--layout`).
enum LayoutChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, star, sharded
}

/// Whether results and weights go in parts (`--overlap`).
enum OverlapChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, on, off
}

/// Runs `body` (the training), then tells the coordinator's workers how it ended: finished, or failed/stopped.
func servingWorkers(_ coordinator: () -> Coordinator?, _ body: () throws -> Void) throws {
    do {
        try body()
        coordinator()?.shutdown()
    } catch {
        let reason = (error as? Interrupted)?.reasonForWorkers ?? "\(error)"
        coordinator()?.shutdown(reason: reason, disposition: .failed)
        throw error
    }
}

/// After a run is prepared (its trainer built, its checkpoint read): the coordinator, listening since before, waits
/// for its workers now, so none waits through the preparation unheard; and when short of workers later, it writes a
/// checkpoint before it waits for more.
func waitForWorkers(_ coordinator: Coordinator?, _ run: PreparedRun, _ checkpointer: Checkpointer?) throws {
    guard let coordinator else { return }
    checkpointWhenStarved(coordinator, run, checkpointer)
    try coordinator.waitForWorkers()
}

private func checkpointWhenStarved(_ coordinator: Coordinator, _ run: PreparedRun, _ checkpointer: Checkpointer?) {
    guard let checkpointer else { return }
    // Weak: the trainer holds the coordinator, which would otherwise never be released, and a coordinator that is
    // not released never closes its socket — its last messages (the workers' shutdown) may then be lost at exit.
    coordinator.onStarved = { [weak trainer = run.trainer] in
        guard let trainer else { return }
        let path = try checkpointer.write(trainer)
        logToStandardError("checkpoint written to \(path)")
    }
}
