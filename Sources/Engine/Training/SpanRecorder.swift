import Dispatch

/// What a span of a worker's timeline (`--trace`) covers; `index` says which layer, part or count.
package enum SpanKind: UInt8, Sendable, CaseIterable {
    /// The assignment is in, and the worker waits for what it needs to start: its result buffer (libzmq still sending
    /// the last result) or, sharded, the last step's means.
    case waiting = 0
    /// A layer's forward pass over one micro-shard (fast mode: the slice); index: the layer.
    case forward = 1
    /// A layer's backward pass: its gradient, and the gradient flowing to the layer below; index: the layer.
    case backward = 2
    /// Exact mode: micro-shards' gradients added into the limbs; index: how many.
    case exactSum = 3
    /// One part of the result handed to its socket (packed first, where it goes packed); index: the part.
    case sendPart = 4
    /// An exact sum's limbs packed to go whole (not in parts).
    case packResult = 5

    /// The span's name in a trace.
    package func name(index: Int) -> String {
        switch self {
        case .waiting: "waiting to start"
        case .forward: "forward layer \(index + 1)"
        case .backward: "backward layer \(index + 1)"
        case .exactSum: "exact sum of \(index) micro-shard\(index == 1 ? "" : "s")"
        case .sendPart: "send part \(index)"
        case .packResult: "pack result"
        }
    }
}

/// One span on one thread, in nanoseconds of the recorder's clock.
package struct Span: Sendable, Equatable {
    package var kind: SpanKind
    /// 0: the worker's messaging thread; k: its k-th computing thread.
    package var thread: UInt8
    package var index: UInt16
    package var start: UInt64
    package var end: UInt64

    package init(kind: SpanKind, thread: UInt8, index: UInt16, start: UInt64, end: UInt64) {
        (self.kind, self.thread, self.index, self.start, self.end) = (kind, thread, index, start, end)
    }
}

/// A thread's spans, written into memory allocated once: tracing a step allocates nothing and costs two clock reads
/// a span. Owned by one thread at a time (a computing thread while it computes, the messaging thread after).
package final class SpanRecorder {
    /// The clock spans are read from: CLOCK_MONOTONIC, in nanoseconds.
    @inline(__always) package static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    package let thread: UInt8
    package let capacity: Int
    private let storage: UnsafeMutablePointer<Span>
    package private(set) var count = 0
    /// Spans past `capacity`, not kept.
    package private(set) var dropped = 0

    package init(thread: UInt8, capacity: Int = 4096) {
        self.thread = thread
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
    }

    deinit { storage.deallocate() }

    /// Keeps a span of `kind` from `start` (a `now()`) to now.
    @inline(__always) package func record(_ kind: SpanKind, _ index: Int, from start: UInt64) {
        guard count < capacity else {
            dropped += 1
            return
        }
        storage[count] = Span(kind: kind, thread: thread, index: UInt16(truncatingIfNeeded: index), start: start,
                              end: Self.now())
        count += 1
    }

    package func reset() { (count, dropped) = (0, 0) }

    package var spans: UnsafeBufferPointer<Span> { UnsafeBufferPointer(start: storage, count: count) }
}
