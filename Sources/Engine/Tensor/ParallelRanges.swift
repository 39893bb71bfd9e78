import Dispatch

/// Calls `body` with disjoint runs of `0..<count` covering it, on `threads` threads when there is enough work (a run
/// per thread, at least 65,536 elements each; every run but the last a whole number of `alignment`s). For
/// elementwise passes — updates, means, checks — whose bits do not depend on the split.
@inline(__always)
package func forEachRange(_ count: Int, threads: Int, alignment: Int = 16, _ body: (Range<Int>) -> Void) {
    forEachPart(count, threads: threads, alignment: alignment) { _, range in body(range) }
}

/// Whether `test` holds for any run of `0..<count` (split as `forEachRange` splits it; each run is tested whole).
package func anyRange(_ count: Int, threads: Int, alignment: Int = 16, _ test: (Range<Int>) -> Bool) -> Bool {
    withUnsafeTemporaryAllocation(of: Bool.self, capacity: maximumParts) { found in
        found.initialize(repeating: false)
        forEachPart(count, threads: threads, alignment: alignment) { part, range in found[part] = test(range) }
        return found.contains(true)
    }
}

/// Runs the most passes split over threads (a pass records one result per run in a buffer of this many).
package let maximumParts = 8

/// As `forEachRange`, with each run's index (below `maximumParts`), so a pass can record a result per run.
@inline(__always)
package func forEachPart(_ count: Int, threads: Int, alignment: Int, _ body: (Int, Range<Int>) -> Void) {
    let parts = max(1, min(threads, maximumParts, count / 65_536))
    guard parts > 1 else {
        body(0, 0..<count)
        return
    }
    let units = (count + alignment - 1) / alignment
    withoutActuallyEscaping(body) { body in
        let work = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let first = units * part / parts * alignment, end = min(count, units * (part + 1) / parts * alignment)
            if first < end { work.value(part, first..<end) }
        }
    }
}
