import Engine
import Foundation
import Platform

/// Console and metrics-file text for a run, shared by every way of running a job.
package enum Reporting {
    /// `Epoch 0: loss = 0.2643`, with accuracy and validation figures where they apply.
    package static func epochLine(_ r: EpochReport) -> String {
        var line = "Epoch \(r.epoch): loss = \(number(r.loss, 4))"
        if let a = r.accuracy { line += ", accuracy = \(number(a, 4))" }
        if let v = r.validationLoss { line += ", val_loss = \(number(v, 4))" }
        if let v = r.validationAccuracy { line += ", val_accuracy = \(number(v, 4))" }
        return line
    }

    /// One JSON object for the metrics file.
    /// `time` is the wall clock (Unix seconds) when the epoch ended; the learning rate is written as the shortest
    /// decimal of the float32 the optimizer used (0.01, not 0.009999999776482582).
    package static func metricsLine(_ r: EpochReport, time: Date = Date(), extra: [String] = []) -> String {
        var fields = ["\"epoch\":\(r.epoch)", "\"step\":\(r.step)",
                      "\"time\":\(String(format: "%.3f", time.timeIntervalSince1970))", "\"loss\":\(json(r.loss))"]
        if let a = r.accuracy { fields.append("\"accuracy\":\(json(a))") }
        if let v = r.validationLoss { fields.append("\"val_loss\":\(json(v))") }
        if let v = r.validationAccuracy { fields.append("\"val_accuracy\":\(json(v))") }
        fields.append("\"learning_rate\":\(r.learningRate.isFinite ? "\(r.learningRate)" : "null")")
        fields.append("\"samples_per_second\":\(json(r.samplesPerSecond))")
        return "{\((fields + extra).joined(separator: ","))}"
    }

    /// One JSON object for a step (`--metrics-steps`): its mean loss before the update, the rate it used.
    package static func stepLine(step: Int, epoch: Int, statistics: SliceStatistics, learningRate: Float,
                                time: Date = Date()) -> String {
        var fields = ["\"record\":\"step\"", "\"step\":\(step)", "\"epoch\":\(epoch)",
                      "\"time\":\(String(format: "%.3f", time.timeIntervalSince1970))",
                      "\"loss\":\(json(statistics.lossSum / Double(max(statistics.samples, 1))))",
                      "\"samples\":\(statistics.samples)"]
        fields.append("\"learning_rate\":\(learningRate.isFinite ? "\(learningRate)" : "null")")
        return "{\(fields.joined(separator: ","))}"
    }

    /// Values rounded to `digits` decimals and printed as NumPy prints a float array: `[0.5 0.5 0.5 0.5]`,
    /// `[0.5  0.5  0.98 0.02]`, `[0. 1. 1. 0.]`: each value with the decimals it needs, points aligned.
    package static func numpyArray(_ values: [Float], digits: Int = 2) -> String {
        let scale = Foundation.pow(10, Double(digits))
        let texts = values.map { value -> (whole: String, fraction: String) in
            let rounded = (Double(value) * scale).rounded() / scale
            var text = String(format: "%.\(digits)f", rounded)
            if text.hasPrefix("-"), Double(text) == 0 { text.removeFirst() }
            while text.hasSuffix("0"), text.contains(".") { text.removeLast() }
            let parts = text.split(separator: ".", omittingEmptySubsequences: false)
            return (String(parts[0]) + ".", parts.count > 1 ? String(parts[1]) : "")
        }
        let wholeWidth = texts.map(\.whole.count).max() ?? 0, fractionWidth = texts.map(\.fraction.count).max() ?? 0
        let cells = texts.map { t in
            String(repeating: " ", count: wholeWidth - t.whole.count) + t.whole + t.fraction
                + String(repeating: " ", count: fractionWidth - t.fraction.count)
        }
        return "[\(cells.joined(separator: " "))]"
    }

    /// `digits` decimals, or as many significant digits after the point in scientific notation when fixed would hide
    /// the value: a loss of 4.8e38 prints as `4.8000e+38`, not 39 digits, and one of 3e-7 as `3.0000e-07`, not 0.
    package static func number(_ value: Double, _ digits: Int) -> String {
        let magnitude = abs(value)
        let scientific = value.isFinite && magnitude != 0
            && (magnitude >= 1e6 || magnitude < 0.5 * pow(10, Double(-digits)))
        return String(format: scientific ? "%.\(digits)e" : "%.\(digits)f", value)
    }

    static func json(_ value: Double) -> String { value.isFinite ? "\(value)" : "null" }
}

/// One worker's part of an epoch, as the coordinator saw it: the samples it computed, the seconds from each
/// assignment to its result, how many of those the worker says it spent computing, and how many results it gave.
package struct WorkerShare: Sendable, Equatable {
    /// "w1": the key of the metrics file's `workers` and of TensorBoard's and Prometheus' series.
    package let worker: String
    /// `w1 "box-1"`, for lines.
    package let label: String
    package let samples: Int
    package let seconds: Double
    package let computeSeconds: Double
    package let answers: Int

    package init(worker: String, label: String, samples: Int, seconds: Double, computeSeconds: Double, answers: Int) {
        (self.worker, self.label, self.samples, self.seconds) = (worker, label, samples, seconds)
        (self.computeSeconds, self.answers) = (computeSeconds, answers)
    }

    /// The metrics file's entry: `"w1":{"samples":608,"seconds":0.0348,"compute_seconds":0.0301}`.
    package var metricsEntry: String {
        "\"\(worker)\":{\"samples\":\(samples),\"seconds\":\(String(format: "%.4f", seconds)),"
            + "\"compute_seconds\":\(String(format: "%.4f", computeSeconds))}"
    }
}

extension Reporting {
    /// Which worker held the steps up, and why: the worker whose results took longest from assignment to arrival,
    /// against the median worker's, split into computing and the rest (sending, receiving, waiting to be read):
    /// `stragglers: w3 "box-3" took 1.80× the median worker's time a result (41.2 ms against 22.9 ms; computing
    /// 1.10×, the rest 3.20×)`. Nil with fewer than two workers, or when the slowest took less than `atLeast` times
    /// the median's.
    package static func stragglersLine(_ shares: [WorkerShare], atLeast threshold: Double = 0) -> String? {
        let workers = shares.filter { $0.answers > 0 }
        guard workers.count >= 2 else { return nil }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted(), middle = sorted.count / 2
            return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        }
        let time = { (s: WorkerShare) in s.seconds / Double(s.answers) }
        let computing = { (s: WorkerShare) in min(s.computeSeconds, s.seconds) / Double(s.answers) }
        let rest = { (s: WorkerShare) in time(s) - computing(s) }
        let slowest = workers.max { time($0) < time($1) }!
        func ratio(_ value: Double, _ typical: Double) -> String {
            typical > 0 ? String(format: "%.2f×", value / typical) : "n/a"
        }
        let typical = median(workers.map(time))
        guard time(slowest) >= threshold * typical else { return nil }
        return "stragglers: \(slowest.label) took \(ratio(time(slowest), typical)) the median worker's time a result ("
            + String(format: "%.1f ms against %.1f ms", 1000 * time(slowest), 1000 * typical)
            + "; computing \(ratio(computing(slowest), median(workers.map(computing)))), "
            + "the rest \(ratio(rest(slowest), median(workers.map(rest)))))"
    }
}
