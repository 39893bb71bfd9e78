import Testing
@testable import Wire

/// A worker's timeline (`--trace`): what is written reads back, and a report whose spans do not fit inside it, whose
/// count and frame disagree or whose times run backwards is refused with the field named.
struct SpansCodecTests {
    static let limits = Limits(parameterCount: 1000, job: 9)
    static let entries = [TimelineReport.Entry(kind: 0, thread: 0, index: 0, start: 0, duration: 1_500),
                          TimelineReport.Entry(kind: 1, thread: 2, index: 7, start: 1_500, duration: 40_000),
                          TimelineReport.Entry(kind: 4, thread: 0, index: 65_535, start: 41_500, duration: 8_500)]

    @Test("a report reads back as written, and an assignment's trace flag with it")
    func roundTrip() throws {
        let report = TimelineReport(attempt: 12, received: 5_000_000_000, sent: 5_000_050_000, dropped: 3,
                                    entries: Self.entries)
        let frames = try Codec.spans(report, job: 9, step: 4, worker: 2)
        guard case .spans(let back) = try Codec.decode(frames, limits: Self.limits).payload else {
            Issue.record("not a spans message")
            return
        }
        #expect(back == report)
        let assignment = try Codec.assignment(job: 9, step: 4, worker: 2, epoch: 0, batch: 1, ranges: [0..<2],
                                              traced: true)
        guard case .assignment(_, _, _, _, _, _, _, let traced) = try Codec.decode(assignment, limits: Self.limits).payload
        else { Issue.record("not an assignment"); return }
        #expect(traced)
    }

    @Test("a span that ends after the report, a count the frame does not hold, times running backwards or beyond 2^62, or too many spans are refused",
          arguments: [(49_999 as UInt64, 3, 0 as UInt64, "span 2 from 41500 ns for 8500 ns ends after the result's 49999 ns"),
                      (50_001, 2, 0, "expected 32"), (50_001, 4, 0, "expected 64"),
                      (0, 3, 5_000_000_001, "received at 5000000001 ns, after its report was sent at 5000000000 ns"),
                      (1 << 62, 3, 1 << 62, "beyond 2^62"),
                      (50_001, TimelineReport.maximumEntries + 1, 0, "32769 spans (at most 32768)")])
    func refused(length: UInt64, count: Int, received: UInt64, named: String) throws {
        let receivedAt = received == 0 ? 5_000_000_000 : received
        let sent = received == 1 << 62 ? UInt64.max : 5_000_000_000 + length
        let fields = SpansFields(attempt: 1, received: receivedAt, sent: sent, count: count, dropped: 0)
        var frames = try Codec.spans(TimelineReport(attempt: 1, received: 0, sent: 60_000, dropped: 0,
                                                    entries: Self.entries), job: 9, step: 4, worker: 2)
        frames[0] = try Message(copying: Codec.header(fields, job: 9, step: 4, worker: 2).encoded())
        #expect {
            try Codec.decode(frames, limits: Self.limits)
        } throws: { error in
            "\(error)".contains(named) && "\(error)".contains("spans")
        }
    }

    @Test("a header's step beyond 2^62 is refused (a report, a heartbeat), before any receiver counts with it")
    func stepBound() throws {
        var frames = try Codec.spans(TimelineReport(attempt: 1, received: 0, sent: 60_000, dropped: 0,
                                                    entries: Self.entries), job: 9, step: Header.stepLimit - 1, worker: 2)
        #expect(throws: Never.self) { try Codec.decode(frames, limits: Self.limits) }
        frames = try Codec.spans(TimelineReport(attempt: 1, received: 0, sent: 60_000, dropped: 0,
                                                entries: Self.entries), job: 9, step: Header.stepLimit, worker: 2)
        #expect { try Codec.decode(frames, limits: Self.limits) } throws: { "\($0)".contains("step 4611686018427387904 beyond 2^62") }
        #expect { try Codec.decode(Codec.heartbeat(job: 9, step: UInt64.max, worker: 2), limits: Self.limits) } throws: {
            "\($0)".contains("beyond 2^62")
        }
    }

    @Test("an assignment's trace flag beyond 0 or 1 is refused")
    func traceFlag() throws {
        var words = AssignmentFields(epoch: 0, batch: 1, attempt: 2, resultSlot: nil, inParts: false, traced: true).words
        words[5] = 2
        #expect(throws: WireError.self) { try AssignmentFields(checking: words) }
    }
}
