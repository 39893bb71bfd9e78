/// A worker's timeline of one result (`--trace`): what it spent the result's time on, on its own clock. The receiver
/// places it on its clock with the assignment's and the result's times (docs/watching.md); kinds, layers and parts
/// are the receiver's to check against its job.
package struct TimelineReport: Equatable, Sendable {
    package struct Entry: Equatable, Sendable {
        package var kind: UInt8
        /// 0: the worker's messaging thread; k: its k-th computing thread.
        package var thread: UInt8
        /// The layer, part or count the kind names.
        package var index: UInt16
        /// Nanoseconds after `received`.
        package var start: UInt64
        package var duration: UInt32

        package init(kind: UInt8, thread: UInt8, index: UInt16, start: UInt64, duration: UInt32) {
            (self.kind, self.thread, self.index, self.start, self.duration) = (kind, thread, index, start, duration)
        }
    }

    package var attempt: UInt64
    /// When the assignment was in, and when this report went (just before the result's last message), in nanoseconds
    /// of the worker's clock.
    package var received: UInt64, sent: UInt64
    /// Spans the worker recorded but did not keep (its recorders were full).
    package var dropped: UInt64
    package var entries: [Entry]

    package init(attempt: UInt64, received: UInt64, sent: UInt64, dropped: UInt64, entries: [Entry]) {
        (self.attempt, self.received, self.sent, self.dropped, self.entries) = (attempt, received, sent, dropped, entries)
    }

    /// Entries a report may carry: 512 KiB, inside the smallest frame a coordinator accepts (1 MiB).
    package static let maximumEntries = 1 << 15
    static let entryBytes = 16
}

struct SpansFields: HeaderFields {
    static let type = MessageType.spans
    static let names = ["attempt", "received ns", "sent ns", "spans", "spans dropped"]
    var attempt: UInt64, received: UInt64, sent: UInt64, count: UInt64, dropped: UInt64

    var words: [UInt64] { [attempt, received, sent, count, dropped] }

    init(attempt: UInt64, received: UInt64, sent: UInt64, count: Int, dropped: UInt64) {
        (self.attempt, self.received, self.sent, self.count, self.dropped) = (attempt, received, sent, UInt64(count), dropped)
    }

    init(checking f: [UInt64]) throws(WireError) {
        // A worker's clock counts nanoseconds since its machine booted: far below 2^62 (146 years).
        guard f[2] < 1 << 62 else { throw .badField(.spans, "sent at \(f[2]) ns, beyond 2^62") }
        guard f[1] <= f[2], f[2] - f[1] < 1 << 50 else {
            throw .badField(.spans, "received at \(f[1]) ns, after its report was sent at \(f[2]) ns or 13 days "
                + "before it")
        }
        guard f[3] <= UInt64(TimelineReport.maximumEntries), f[4] < 1 << 32 else {
            throw .badField(.spans, "\(f[3]) spans (at most \(TimelineReport.maximumEntries)) or \(f[4]) dropped "
                + "(under 2^32)")
        }
        (attempt, received, sent, count, dropped) = (f[0], f[1], f[2], f[3], f[4])
    }
}

extension Codec {
    package static func spans(_ report: TimelineReport, job: UInt64, step: UInt64, worker: UInt32) throws -> [Message] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(report.entries.count * TimelineReport.entryBytes)
        for entry in report.entries {
            bytes += [entry.kind, entry.thread]
            withUnsafeBytes(of: entry.index.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: entry.duration.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: entry.start.littleEndian) { bytes += $0 }
        }
        let fields = SpansFields(attempt: report.attempt, received: report.received, sent: report.sent,
                                 count: report.entries.count, dropped: report.dropped)
        return [try Message(copying: header(fields, job: job, step: step, worker: worker).encoded()),
                try Message(copying: bytes)]
    }

    /// Entries laid out as `spans` writes them, each inside the report's time.
    static func spans(_ f: SpansFields, _ frame: Message) throws(WireError) -> Payload {
        let count = Int(f.count), size = TimelineReport.entryBytes
        guard frame.count == count * size else {
            throw .payloadSize(type: .spans, bytes: frame.count, expected: "\(count * size) (\(count) spans)")
        }
        var entries: [TimelineReport.Entry] = []
        entries.reserveCapacity(count)
        let length = f.sent - f.received
        try read(frame) { raw throws(WireError) in
            for i in 0..<count {
                let at = i * size
                let entry = TimelineReport.Entry(
                    kind: raw[at], thread: raw[at + 1],
                    index: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at + 2, as: UInt16.self)),
                    start: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)),
                    duration: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)))
                guard entry.start <= length, UInt64(entry.duration) <= length - entry.start else {
                    throw .badField(.spans, "span \(i) from \(entry.start) ns for \(entry.duration) ns ends after the "
                        + "result's \(length) ns")
                }
                entries.append(entry)
            }
        }
        return .spans(TimelineReport(attempt: f.attempt, received: f.received, sent: f.sent, dropped: f.dropped,
                                     entries: entries))
    }
}
