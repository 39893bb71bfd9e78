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
