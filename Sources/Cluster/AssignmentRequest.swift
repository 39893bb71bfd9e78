/// An assignment as a worker received it: micro-shards `ranges` of batch `batch` of epoch `epoch`, at step `step`.
struct AssignmentRequest {
    var step: UInt64, epoch: UInt64, batch: UInt64, attempt: UInt64
    var ranges: [Range<Int>]
    /// The slot of this worker's result region to leave the result in (nil: in a message).
    var resultSlot: Int?
    var inParts: Bool
    /// In parts: their Floats go packed (`cexact_pack_floats`), as the coordinator found faster.
    var packsFloats = false
    /// Send a `spans` report of this result with it, just before its last message (`--trace`).
    var traced = false
    /// When the assignment was in (`SpanRecorder.now()`), for the report.
    var received: UInt64 = 0

    var microShards: Int { ranges.reduce(0) { $0 + $1.count } }
}
