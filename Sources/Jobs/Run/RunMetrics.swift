import Engine
import Foundation
import Prometheus

/// A run's figures for Prometheus (`--prometheus`), in its text format through swift-prometheus: the position
/// (step, epoch, steps in all, and when the last step ended, for an alert on a stalled run), the last epoch's loss,
/// accuracy, learning rate and samples per second, and with workers the members by state, losses and rejoins, and each
/// worker's samples, busy seconds and seconds per step. Updated from the training thread, read from the server's.
package final class RunMetrics: @unchecked Sendable {
    /// Members by state, losses and rejoins so far (from the coordinator).
    package struct Census: Sendable {
        package var states: [String: Int]
        package var losses: Int
        package var rejoins: Int

        package init(states: [String: Int], losses: Int, rejoins: Int) {
            self.states = states
            self.losses = losses
            self.rejoins = rejoins
        }
    }

    private let registry = PrometheusCollectorRegistry()
    private let step, epoch, totalSteps, lastStep, loss, accuracy, validationLoss, validationAccuracy, learningRate,
                samplesPerSecond: Gauge
    private let losses, rejoins: Counter
    /// The totals the counters hold (the census gives totals; a counter is told differences). Training thread only.
    private var counted = (losses: 0, rejoins: 0)
    /// The states a member can be in, so each has a series from the start (0 until a member is in it).
    package static let memberStates = ["joining", "ready", "assigned", "lost"]

    package init(totalSteps steps: Int) {
        let registry = self.registry
        func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: Self.name(name, help)) }
        step = gauge("step", "Optimizer steps taken.")
        epoch = gauge("epoch", "The epoch under way (0 first).")
        totalSteps = gauge("total_steps", "Optimizer steps the run takes in all.")
        lastStep = gauge("last_step_timestamp_seconds", "When the last step ended (Unix seconds): an alert on a stalled run compares it with time().")
        loss = gauge("loss", "The last epoch's mean training loss.")
        accuracy = gauge("accuracy", "The last epoch's training accuracy (classification).")
        validationLoss = gauge("val_loss", "The last epoch's validation loss.")
        validationAccuracy = gauge("val_accuracy", "The last epoch's validation accuracy.")
        learningRate = gauge("learning_rate", "The learning rate of the last epoch's last step.")
        samplesPerSecond = gauge("samples_per_second", "The last epoch's training samples per second.")
        losses = registry.makeCounter(descriptor: Self.name("worker_losses", "Workers lost (each loss counted).", unit: "total"))
        rejoins = registry.makeCounter(descriptor: Self.name("worker_rejoins", "Workers that said hello again after being lost or "
            + "restarting.", unit: "total"))
        totalSteps.set(to: Double(steps))
        for state in Self.memberStates { members(state).set(to: 0) }
    }

    /// `shardtrain_NAME` (`_UNIT`), with its help line.
    private static func name(_ name: String, _ help: String, unit: String = "") -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "shardtrain", metricName: name, unitName: unit, helpText: help)
    }

    private func members(_ state: String) -> Gauge {
        registry.makeGauge(descriptor: Self.name("members", "Workers by state."), labels: [("state", state)])
    }

    private func worker(_ name: String, _ worker: String, _ help: String) -> Gauge {
        registry.makeGauge(descriptor: Self.name("worker_" + name, help), labels: [("worker", worker)])
    }

    /// After each step.
    package func stepped(step: Int, epoch: Int, at time: Date = Date()) {
        self.step.set(to: Double(step))
        self.epoch.set(to: Double(epoch))
        lastStep.set(to: time.timeIntervalSince1970)
    }

    /// At each epoch's end; `shares` are the workers' parts of the epoch.
    package func epochEnded(_ report: EpochReport, shares: [WorkerShare]) {
        loss.set(to: report.loss)
        report.accuracy.map { accuracy.set(to: $0) }
        report.validationLoss.map { validationLoss.set(to: $0) }
        report.validationAccuracy.map { validationAccuracy.set(to: $0) }
        learningRate.set(to: Double(report.learningRate))
        samplesPerSecond.set(to: report.samplesPerSecond)
        for share in shares {
            worker("samples", share.worker, "Samples the worker computed in the last epoch.").set(to: Double(share.samples))
            worker("busy_seconds", share.worker, "Seconds from assignment to result in the last epoch.").set(to: share.seconds)
            worker("step_seconds", share.worker, "The worker's mean seconds from assignment to result per step, last epoch.")
                .set(to: share.seconds / Double(max(share.answers, 1)))
            worker("compute_seconds", share.worker, "Seconds the worker says it spent computing in the last epoch.")
                .set(to: share.computeSeconds)
        }
    }

    package func census(_ census: Census) {
        for state in Self.memberStates { members(state).set(to: Double(census.states[state] ?? 0)) }
        if census.losses > counted.losses { losses.increment(by: Int64(census.losses - counted.losses)) }
        if census.rejoins > counted.rejoins { rejoins.increment(by: Int64(census.rejoins - counted.rejoins)) }
        counted = (max(counted.losses, census.losses), max(counted.rejoins, census.rejoins))
    }

    /// The text exposition format, for a scrape.
    package func exposition() -> [UInt8] { registry.emitToBuffer() }
}
