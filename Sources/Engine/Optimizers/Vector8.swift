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

/// Calls `body` with the start of every 8-element block of a padded buffer of `count` elements.
@inline(__always)
func forEachBlock(_ count: Int, _ body: (Int) -> Void) {
    var i = 0
    let end = Buffer<Float>.padded(count)
    while i < end {
        body(i)
        i += 8
    }
}
