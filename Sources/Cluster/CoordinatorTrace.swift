import Engine
import Wire

/// `--trace`: what the coordinator hands its trace file each step — its own phases, and each result with its worker's
/// timeline of it (docs/watching.md).
extension Coordinator {
    package struct StepTrace: Sendable {
        package struct Result: Sendable {
            package let worker: UInt32
            package let label: String
            /// When its assignment went out and when it was in, on this process's clock.
            package let sent: ContinuousClock.Instant, arrived: ContinuousClock.Instant
            package let computing: Duration
            package let samples: Int
            /// The worker's own timeline of it, on the worker's clock (nil if none came).
            package let timeline: TimelineReport?
        }
        package let step: Int
        package let begun: ContinuousClock.Instant, sent: ContinuousClock.Instant
        package let gathered: ContinuousClock.Instant, reduced: ContinuousClock.Instant
        package let results: [Result]
    }

    struct TimelineKey: Hashable {
        let worker: UInt32, step: Int, attempt: UInt64
    }

    /// The steps traced since the last call.
    package func takeTraces() -> [StepTrace] {
        defer { if traces != nil { traces = [] } }
        return traces ?? []
    }

    func trace(_ round: StepRound, begun: ContinuousClock.Instant, sent: ContinuousClock.Instant,
               gathered: ContinuousClock.Instant, reduced: ContinuousClock.Instant) {
        guard traces != nil else { return }
        let results = round.results.compactMap { r -> StepTrace.Result? in
            guard let sentAt = r.sentAt, let arrivedAt = r.arrivedAt else { return nil }
            let member = core.table[r.member]
            let key = TimelineKey(worker: member.id, step: round.step, attempt: r.frame.attempt)
            return StepTrace.Result(worker: member.id, label: "w\(member.id) \"\(member.name)\"", sent: sentAt,
                                    arrived: arrivedAt, computing: r.frame.computing, samples: r.frame.samples,
                                    timeline: timelineReports.removeValue(forKey: key))
        }
        // Reports of results not taken (a lost worker's, a withdrawn twin's) go with their step.
        timelineReports = timelineReports.filter { $0.key.step > round.step }
        traces!.append(StepTrace(step: round.step, begun: begun, sent: sent, gathered: gathered, reduced: reduced,
                                 results: results))
    }

    /// A member's timeline of a result it is about to send: kept for its step's trace if every span names a kind,
    /// layer and part of this job; otherwise one line, and the report is dropped (a trace is no reason to lose a
    /// worker).
    func timelineArrived(_ report: TimelineReport, step: Int, from identity: [UInt8]) {
        guard traces != nil, let index = core.table.index(of: identity), core.table[index].isActive,
              let current = core.round?.step, step == current else { return }
        let member = core.table[index]
        if let problem = Self.problem(in: report, layers: job.model.layers.count,
                                      parts: parts.count) {
            return timelineRefused(index, "step \(step)'s with \(problem)")
        }
        // Kept only for an assignment this member holds in this step: at most one report per assignment out.
        guard !timelineRefusals.contains(member.id), core.round?.outstanding[report.attempt]?.member == index else {
            return
        }
        timelineReports[TimelineKey(worker: member.id, step: step, attempt: report.attempt)] = report
    }

    /// Says once that a member's timelines are left out of the trace, and why.
    func timelineRefused(_ member: Int, _ why: String) {
        guard traces != nil, timelineRefusals.insert(core.table[member].id).inserted else { return }
        log("\(core.table[member].label) sent a timeline that cannot be used (\(why)); its timelines are left out of "
            + "--trace")
    }

    /// What in `report` no worker of this job records, or nil.
    static func problem(in report: TimelineReport, layers: Int, parts: Int) -> String? {
        for (i, entry) in report.entries.enumerated() {
            guard let kind = SpanKind(rawValue: entry.kind) else { return "span \(i) of unknown kind \(entry.kind)" }
            let index = Int(entry.index)
            switch kind {
            case .forward where index >= layers, .backward where index >= layers:
                return "span \(i) in layer \(index + 1) of a model of \(layers)"
            case .sendPart where index >= parts:
                return "span \(i) sending part \(index) of \(parts)"
            default: continue
            }
        }
        return nil
    }
}
