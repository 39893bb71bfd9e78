import Cluster
import Engine
import Foundation
import Synchronization
import Wire

/// `--trace FILE`: the run's timeline in the Trace Event Format's JSON array (what Perfetto and chrome://tracing
/// open; the closing bracket is optional there, so a run stopped by a signal still leaves a readable file).
///
/// One process row for the coordinator — each step's hand-out, wait for results, reduce, and update — and one per
/// worker: for each of its results the assignment travelling, its computing (and within it what the worker sent),
/// and the result travelling on thread 0; each layer's forward and backward on the thread that ran it. Workers report
/// their spans on their own clocks; `WorkerClocks` measures each one's offset from this one. In-process, one row of
/// steps.
///
/// Written on a thread of its own: a step only hands over its values (`step`), so the run waits for no formatting or
/// writing; `check` and `finish` wait for what is queued. State below is touched on `queue` alone after `init`.
final class TraceFile: @unchecked Sendable {
    private let queue = DispatchQueue(label: "shardtrain.trace")
    private let file: AppendedFile
    private let origin = ContinuousClock.now
    /// `SpanRecorder`'s clock when the trace began, for this process's own spans.
    private let uptimeOrigin = Int64(clamping: SpanRecorder.now())
    private var named: Set<UInt32> = []
    private var namedThreads: Set<[UInt32]> = []
    private var clocks = WorkerClocks()
    private var separator = ""

    /// `process`: what row 0 is (the coordinator, or the in-process run).
    init(_ path: String, process: String) throws {
        file = try AppendedFile(path, what: "--trace", flags: O_CREAT | O_TRUNC)
        file.append(Array("[\n".utf8))
        name(process: 0, process)
    }

    /// Nanoseconds since the trace began.
    private func nanoseconds(_ instant: ContinuousClock.Instant) -> Int64 {
        let elapsed = (instant - origin).components
        return elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
    }

    /// Events are written as bytes directly (a step's dozens cost microseconds, where JSONSerialization's, or
    /// even string interpolation's, cost a measurable share of a short step); only a worker's label, from the network,
    /// goes through the encoder.
    private var pending: [UInt8] = []
    /// Events written, and the time spent writing them (what tracing costs this process; said at the end).
    private var events = 0
    private var writing: Duration = .zero

    private func event(_ text: String) {
        events += 1
        pending += separator.utf8
        pending += text.utf8
        separator = ",\n"
    }

    private func flush() {
        file.append(pending)
        pending.removeAll(keepingCapacity: true)
        noteFailure()
    }

    /// Appends `value` in decimal.
    private func append(_ value: Int64) {
        if value < 0 { pending.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        let first = pending.count
        repeat {
            pending.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        pending[first...].reverse()
    }

    private func name(process: UInt32, _ name: String) {
        let quoted = (try? JSONSerialization.data(withJSONObject: name, options: [.fragmentsAllowed]))
            .map { String(decoding: $0, as: UTF8.self) } ?? "\"?\""
        event("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(process),\"tid\":0,\"args\":{\"name\":\(quoted)}}")
        flush()
    }

    private func name(process: UInt32, thread: UInt8) {
        guard namedThreads.insert([process, UInt32(thread)]).inserted else { return }
        let name = thread == 0 ? "messages" : "computing thread \(thread)"
        event("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":\(process),\"tid\":\(thread),"
            + "\"args\":{\"name\":\"\(name)\"}}")
    }

    /// A span from `from` to `to`, nanoseconds since the trace began, written in whole microseconds; `args` is JSON
    /// text (numbers only).
    private func span(_ name: String, process: UInt32, thread: UInt8 = 0, from: Int64, to: Int64, _ args: String) {
        let start = from / 1000
        events += 1
        pending += separator.utf8
        separator = ",\n"
        pending += #"{"name":""#.utf8
        pending += name.utf8
        pending += #"","cat":"step","ph":"X","pid":"#.utf8
        append(Int64(process))
        pending += #","tid":"#.utf8
        append(Int64(thread))
        pending += #","ts":"#.utf8
        append(start)
        pending += #","dur":"#.utf8
        append(max(0, to / 1000 - start))
        pending += #","args":{"#.utf8
        pending += args.utf8
        pending += "}}".utf8
    }

    /// Span names made once each: a step writes the same few dozen.
    private var spanNames: [Int: String] = [:]

    private func spanName(_ kind: SpanKind, _ index: UInt16) -> String {
        let key = Int(kind.rawValue) << 16 | Int(index)
        if let name = spanNames[key] { return name }
        let name = kind.name(index: Int(index))
        spanNames[key] = name
        return name
    }

    /// A distributed step, which ended (its update done) at `ended`.
    func step(_ trace: Coordinator.StepTrace, ended: ContinuousClock.Instant) {
        enqueue { self.write(trace, ended: ended) }
    }

    /// Steps handed over and not yet written, at most: a disk slower than the steps slows the run rather than
    /// filling memory.
    private let inFlight = DispatchSemaphore(value: 16)

    /// Hands a step's writing to the queue (waiting while 16 are queued), and counts the time it takes there.
    private func enqueue(_ work: @escaping @Sendable () -> Void) {
        inFlight.wait()
        queue.async {
            let started = ContinuousClock.now
            work()
            self.writing += ContinuousClock.now - started
            self.inFlight.signal()
        }
    }

    /// Waits until every step handed over is written (a run that stops early keeps its last steps).
    func drain() { queue.sync {} }

    private func write(_ trace: Coordinator.StepTrace, ended: ContinuousClock.Instant) {
        let args = "\"step\":\(trace.step)"
        let (begun, sent, gathered, reduced) = (nanoseconds(trace.begun), nanoseconds(trace.sent),
                                                nanoseconds(trace.gathered), nanoseconds(trace.reduced))
        span("hand-out", process: 0, from: begun, to: sent, args)
        span("wait for results", process: 0, from: sent, to: gathered, args)
        if reduced > gathered { span("reduce", process: 0, from: gathered, to: reduced, args) }
        span("update", process: 0, from: reduced, to: nanoseconds(ended), args)
        for result in trace.results {
            if named.insert(result.worker).inserted { name(process: result.worker, result.label) }
            let worker = "\"step\":\(trace.step),\"samples\":\(result.samples)"
            if let timeline = result.timeline {
                place(timeline, of: result, args: worker)
            } else {
                estimate(result, args: worker)
            }
        }
        flush()
    }

    /// A result with its worker's timeline, placed on this clock. Placed times are kept between the assignment's
    /// sending and the result's arrival, where they must lie: an offset measured on another result may be wrong by
    /// half the difference of the two results' transfer times.
    private func place(_ timeline: TimelineReport, of result: Coordinator.StepTrace.Result, args: String) {
        let sent = nanoseconds(result.sent), arrived = nanoseconds(result.arrived)
        let received = Int64(clamping: timeline.received), reported = Int64(clamping: timeline.sent)
        let (offset, uncertainty) = clocks.offset(worker: result.worker, sent: sent, arrived: arrived,
                                                  received: received, reported: reported)
        let here = { (workerTime: Int64) in min(max(workerTime - offset, sent), arrived) }
        let (start, end) = (here(received), here(reported))
        var computing = start
        for entry in timeline.entries where entry.kind == SpanKind.waiting.rawValue && entry.thread == 0 {
            computing = max(computing, here(received + Int64(entry.start) + Int64(entry.duration)))
        }
        name(process: result.worker, thread: 0)
        span("assignment in", process: result.worker, from: sent, to: start, args)
        span("compute", process: result.worker, from: computing, to: end, args)
        for entry in timeline.entries {
            guard let kind = SpanKind(rawValue: entry.kind) else { continue }
            let from = received + Int64(entry.start)
            name(process: result.worker, thread: entry.thread)
            span(spanName(kind, entry.index), process: result.worker, thread: entry.thread, from: here(from),
                 to: here(from + Int64(entry.duration)), args)
        }
        span("result out", process: result.worker, from: end, to: arrived,
             args + ",\"worker clock within us\":\(uncertainty / 1000)")
    }

    /// A result whose worker sent no timeline: its computing time where the coordinator guesses it, with the two
    /// transfers taken as equal.
    private func estimate(_ result: Coordinator.StepTrace.Result, args: String) {
        let sent = nanoseconds(result.sent), arrived = nanoseconds(result.arrived)
        let computing = min(Int64(result.computing / .nanoseconds(1)), arrived - sent)
        let started = sent + (arrived - sent - computing) / 2
        span("assignment in", process: result.worker, from: sent, to: started, args)
        span("compute", process: result.worker, from: started, to: started + computing, args)
        span("result out", process: result.worker, from: started + computing, to: arrived, args)
    }

    /// An in-process step, and what its computing threads' recorders hold of it (emptied here; evaluation records
    /// nothing). Their clock is read beside this one's when the trace began.
    func step(_ step: Int, from: ContinuousClock.Instant, to: ContinuousClock.Instant, layers: [SpanRecorder]) {
        let spans = layers.flatMap { Array($0.spans) }
        for recorder in layers { recorder.reset() }
        enqueue { self.write(step, from: from, to: to, spans: spans) }
    }

    private func write(_ step: Int, from: ContinuousClock.Instant, to: ContinuousClock.Instant, spans: [Span]) {
        let (start, end) = (nanoseconds(from), nanoseconds(to)), args = "\"step\":\(step)"
        span("step", process: 0, from: start, to: end, args)
        for s in spans {
            // Read beside the step's own clock: kept inside the step, which they are (a clock read apart may not be).
            let first = min(max(Int64(clamping: s.start) - uptimeOrigin, start), end)
            let last = min(max(Int64(clamping: s.end) - uptimeOrigin, first), end)
            name(process: 0, thread: s.thread)
            span(spanName(s.kind, s.index), process: 0, thread: s.thread, from: first, to: last, args)
        }
        flush()
    }

    /// Closes the array: the file is then strict JSON too. Returns a line saying what writing it cost.
    func finish() -> String {
        queue.sync {
            file.append(Array("\n]\n".utf8))
            noteFailure()
            let (spent, run) = (writing / .seconds(1), (ContinuousClock.now - origin) / .seconds(1))
            return "--trace: \(events) events in \(file.path); writing them took "
                + String(format: "%.3f s on a thread of their own, %.2f %% of the run's %.1f s", spent,
                         100 * spent / max(run, 1e-9), run)
        }
    }

    /// A write that failed (a full disk), raised at the next step without waiting for the writes queued.
    func check() throws {
        if let failure = failure.withLock({ $0 }) { throw failure }
    }

    private let failure = Mutex<Error?>(nil)

    private func noteFailure() {
        do { try file.check() } catch { failure.withLock { $0 = $0 ?? error } }
    }
}
