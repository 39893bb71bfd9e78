/// A fixed-size, zero-initialised, 64-byte-aligned buffer of trivial values that owns its memory.
///
/// Parameters, gradients, optimizer moments and every training workspace live in these: one allocation when a
/// model or trainer is built, none in a training step. Access goes through raw pointers, so hot loops see no
/// copy-on-write or exclusivity checks.
package final class Buffer<Element: BitwiseCopyable> {
    /// Number of elements.
    package let count: Int
    /// The first element. Valid for `count` elements for the buffer's lifetime.
    package let pointer: UnsafeMutablePointer<Element>

    /// Allocates `count` elements, every byte zero, plus zero padding up to `Buffer.padded(count)` elements so that
    /// vector loops may run over whole 16-element blocks.
    package init(count: Int) {
        precondition(count >= 0, "Buffer count must be non-negative, got \(count)")
        self.count = count
        let capacity = Self.padded(count)
        let bytes = capacity * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: capacity)
    }

    /// `count` rounded up to a whole number of 16-element blocks (at least one).
    package static func padded(_ count: Int) -> Int { max(16, (count + 15) & ~15) }

    /// Whether `count` values elsewhere (a message's) may be handed to loops that read `padded(count)` of them, as
    /// optimizers read gradients: only when that is no more than there are.
    package static func readsWhole(_ count: Int) -> Bool { padded(count) == count }

    /// Allocates a buffer holding a copy of `values`.
    package convenience init(_ values: [Element]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// The elements as a buffer pointer (no copy).
    package var elements: UnsafeMutableBufferPointer<Element> { .init(start: pointer, count: count) }

    /// A copy of the elements as an array (for tests, reports and files; never in a training step).
    package var array: [Element] { Array(elements) }

    /// Sets every element to zero bits.
    package func zero() {
        UnsafeMutableRawPointer(pointer).initializeMemory(as: UInt8.self, repeating: 0,
                                                           count: count * MemoryLayout<Element>.stride)
    }

    package subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }
}
