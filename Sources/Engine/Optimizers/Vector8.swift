import Dispatch

/// Eight Floats: the optimizers' unit of work.
typealias Vector8 = SIMD8<Float>

extension SIMD8 where Scalar == Float {
    @inline(__always)
    static func load(_ base: UnsafePointer<Float>, _ index: Int) -> Self {
        UnsafeRawPointer(base + index).loadUnaligned(as: Self.self)
    }

    @inline(__always)
    static func load(_ base: UnsafeMutablePointer<Float>, _ index: Int) -> Self { load(UnsafePointer(base), index) }

    @inline(__always)
    func store(_ base: UnsafeMutablePointer<Float>, _ index: Int) {
        UnsafeMutableRawPointer(base + index).storeBytes(of: self, as: Self.self)
    }
}

/// Calls `body` with disjoint runs of `0..<count` covering it, on `threads` threads when there is enough work
/// (a run per thread, at least 65,536 elements each; every run but the last a whole number of `alignment`s). The
/// updates are elementwise, so the bits do not depend on the split.
@inline(__always)
func forEachRange(_ count: Int, threads: Int, alignment: Int = 16, _ body: (Range<Int>) -> Void) {
    let parts = max(1, min(threads, 8, count / 65_536))
    guard parts > 1 else {
        body(0..<count)
        return
    }
    let units = (count + alignment - 1) / alignment
    withoutActuallyEscaping(body) { body in
        let work = UncheckedSendable(body)
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let first = units * part / parts * alignment, end = min(count, units * (part + 1) / parts * alignment)
            if first < end { work.value(first..<end) }
        }
    }
}

/// Calls `body` with the start of every 8-element block of a padded buffer of `count` elements, on `threads`
/// threads (see `forEachRange`).
@inline(__always)
func forEachBlock(_ count: Int, threads: Int = 1, _ body: (Int) -> Void) {
    forEachRange(Buffer<Float>.padded(count), threads: threads) { range in
        var i = range.lowerBound
        while i < range.upperBound {
            body(i)
            i += 8
        }
    }
}
