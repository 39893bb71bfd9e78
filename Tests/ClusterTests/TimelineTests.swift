import Engine
import Testing
import Wire
@testable import Cluster

/// `--trace`: a worker's clock placed on the coordinator's, and the timelines a coordinator keeps.
@Suite struct TimelineTests {
    /// A result's four times when the worker's clock reads `offset` more than the coordinator's.
    static func times(offset: Int64, sent: Int64, out: Int64, work: Int64, back: Int64)
        -> (sent: Int64, arrived: Int64, received: Int64, reported: Int64) {
        (sent, sent + out + work + back, sent + out + offset, sent + out + work + offset)
    }

    @Test("equal transfers give the worker's offset exactly; unequal ones are off by at most half their difference, and the quickest of the last 16 results is used")
    func offsets() {
        var clocks = WorkerClocks()
        let offset: Int64 = 7_654_321_000_123
        let even = Self.times(offset: offset, sent: 1_000_000, out: 300_000, work: 2_000_000, back: 300_000)
        let first = clocks.offset(worker: 1, sent: even.sent, arrived: even.arrived, received: even.received,
                                  reported: even.reported)
        #expect(first.offset == offset && first.uncertainty == 300_000)
        // Slower and lopsided transfers afterwards: the first result's offset stays the one used...
        for step in 1...15 {
            let t = Self.times(offset: offset, sent: Int64(step) * 10_000_000, out: 900_000, work: 1_000_000,
                               back: 100_000)
            let got = clocks.offset(worker: 1, sent: t.sent, arrived: t.arrived, received: t.received,
                                    reported: t.reported)
            #expect(got.offset == offset && got.uncertainty == 300_000)
        }
        // ...until it is 16 results old; then the quickest kept one, off by half its transfers' difference.
        let t = Self.times(offset: offset, sent: 200_000_000, out: 900_000, work: 1_000_000, back: 100_000)
        let got = clocks.offset(worker: 1, sent: t.sent, arrived: t.arrived, received: t.received, reported: t.reported)
        #expect(got.offset == offset + 400_000 && abs(got.offset - offset) <= got.uncertainty)
        // Another worker's clock is its own.
        let other = Self.times(offset: -5_000, sent: 1_000, out: 10, work: 100, back: 10)
        #expect(clocks.offset(worker: 2, sent: other.sent, arrived: other.arrived, received: other.received,
                              reported: other.reported).offset == -5_000)
    }

    @Test("a timeline naming a kind no worker records, a layer beyond the model or a part beyond the parameters is refused, naming the span")
    func problems() {
        func report(_ kind: UInt8, _ index: UInt16) -> TimelineReport {
            TimelineReport(attempt: 1, received: 0, sent: 10, dropped: 0,
                           entries: [.init(kind: 0, thread: 0, index: 0, start: 0, duration: 1),
                                     .init(kind: kind, thread: 1, index: index, start: 1, duration: 1)])
        }
        #expect(Coordinator.problem(in: report(SpanKind.forward.rawValue, 2), layers: 3, parts: 2) == nil)
        #expect(Coordinator.problem(in: report(SpanKind.sendPart.rawValue, 1), layers: 3, parts: 2) == nil)
        #expect(Coordinator.problem(in: report(9, 0), layers: 3, parts: 2) == "span 1 of unknown kind 9")
        #expect(Coordinator.problem(in: report(SpanKind.forward.rawValue, 3), layers: 3, parts: 2)
            == "span 1 in layer 4 of a model of 3")
        #expect(Coordinator.problem(in: report(SpanKind.backward.rawValue, 3), layers: 3, parts: 2)
            == "span 1 in layer 4 of a model of 3")
        #expect(Coordinator.problem(in: report(SpanKind.sendPart.rawValue, 2), layers: 3, parts: 2)
            == "span 1 sending part 2 of 2")
    }
}
