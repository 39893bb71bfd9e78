import Engine
import Foundation
import Jobs

/// A Keras-like progress line on standard error while a run trains, redrawn in place at most five times a second:
/// epoch, step, samples per second, time left and the epoch's running loss. Only on a terminal, never mixed into
/// standard output (epoch lines and log lines clear it first), and off with --no-progress.
final class ProgressLine {
    /// The line being shown, if any: log lines clear it before they are written.
    nonisolated(unsafe) private static var shared: ProgressLine?
    /// Guards `shared` and every write to standard error through this type: log lines also come from the
    /// coordinator's key-check and handshake threads.
    static let lock = NSLock()

    static var current: ProgressLine? { lock.withLock { shared } }

    private let clock = ContinuousClock()
    private var started: ContinuousClock.Instant?
    private var startStep = 0
    private var lastDraw: ContinuousClock.Instant?
    private var shown = false

    /// A progress line when standard error is a terminal and it is wanted; nil otherwise.
    static func start(enabled: Bool) -> ProgressLine? {
        guard enabled, isatty(STDERR_FILENO) != 0, ProcessInfo.processInfo.environment["TERM"] != "dumb" else {
            return nil
        }
        let line = ProgressLine()
        lock.withLock { shared = line }
        return line
    }

    func update(_ trainer: Trainer) {
        let now = clock.now
        guard let started else {
            self.started = now
            startStep = trainer.step
            return
        }
        if let lastDraw, now - lastDraw < .milliseconds(200) { return }
        lastDraw = now
        let seconds = (now - started) / .seconds(1)
        let steps = trainer.step - startStep
        guard seconds > 0, steps > 0 else { return }
        let perSecond = Double(steps) / seconds
        let left = Double(trainer.totalSteps - trainer.step) / perSecond
        let batches = max(trainer.plan.batchesPerEpoch, 1)
        let epochs = (trainer.totalSteps + batches - 1) / batches
        let progress = trainer.epochProgress
        var text = "epoch \(trainer.epoch) of \(epochs)  step \(trainer.step)/\(trainer.totalSteps)  "
            + "\(Self.grouped(perSecond * Double(trainer.options.batchSize))) samples/s  ETA \(Self.clock(left))"
        if progress.samples > 0 { text += "  loss " + Reporting.number(progress.lossSum / Double(progress.samples), 4) }
        Self.lock.withLock {
            FileHandle.standardError.write(Data("\r\u{1b}[K\(text)".utf8))
            shown = true
        }
    }

    /// Removes the line (before other output, and at the end).
    func clear() {
        Self.lock.withLock { clearLocked() }
    }

    private func clearLocked() {
        guard shown else { return }
        FileHandle.standardError.write(Data("\r\u{1b}[K".utf8))
        shown = false
    }

    func finish() {
        Self.lock.withLock {
            clearLocked()
            if Self.shared === self { Self.shared = nil }
        }
    }

    /// Writes a log line to standard error, the progress line cleared first (from any thread).
    static func log(_ line: String) {
        lock.withLock {
            shared?.clearLocked()
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    static func grouped(_ value: Double) -> String {
        let digits = String(Int(value.rounded()))
        var out = ""
        for (index, character) in digits.reversed().enumerated() {
            if index > 0 && index % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return String(out.reversed())
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let whole = Int(seconds.rounded())
        return whole >= 3600 ? String(format: "%d:%02d:%02d", whole / 3600, whole / 60 % 60, whole % 60)
            : String(format: "%d:%02d", whole / 60, whole % 60)
    }
}
