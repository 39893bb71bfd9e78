/// Row-major Float rows of one width, wherever they lie: an array in memory, or the data of files mapped read-only
/// (`.npy` float32, or IDX unsigned bytes read as byte / 255), one after another, so a data set bigger than memory trains
/// with only the rows a step touches resident. A view can pick rows in another order (a validation split) without
/// copying them.
package final class FloatRows: @unchecked Sendable, Equatable {
    /// How a chunk's values are stored.
    package enum Element: Sendable {
        case float32
        /// Unsigned bytes, each value the byte divided by 255 (in Float, as an image's pixels are read into memory).
        case unsignedByteOver255
    }

    /// Rows one after another at `base`, each `width` values of `element`.
    package struct Chunk {
        package let base: UnsafeRawPointer
        package let rows: Int
        package let element: Element

        package init(base: UnsafeRawPointer, rows: Int, element: Element = .float32) {
            (self.base, self.rows, self.element) = (base, rows, element)
        }
    }

    package let width: Int
    /// Immutable after init; what they point into is kept alive by `owners` (an array's storage, mapped files).
    private let chunks: [Chunk]
    /// Where each chunk's rows start, in rows, with the total last: for the chunk holding a row.
    private let starts: [Int]
    private let owners: [AnyObject]
    /// The physical row of each logical row, or nil for all in order.
    private let order: [Int]?
    /// Bytes of the rows held in this process's own memory (mapped files' pages are the kernel's to drop and reread).
    package let ownedBytes: Int

    /// `values.count / width` rows held in memory.
    package convenience init(_ values: [Float], width: Int) {
        let storage = ArrayStorage(values)
        self.init(chunks: [Chunk(base: storage.pointer, rows: values.count / max(width, 1))], width: width,
                  owners: [storage], ownedBytes: 4 * values.count)
    }

    /// Rows in `chunks`, in order, kept alive by `owners`.
    package init(chunks: [Chunk], width: Int, owners: [AnyObject], ownedBytes: Int, order: [Int]? = nil) {
        self.width = width
        self.chunks = chunks
        self.owners = owners
        self.ownedBytes = ownedBytes
        self.order = order
        var starts = [0]
        for chunk in chunks { starts.append(starts.last! + chunk.rows) }
        self.starts = starts
    }

    /// `parts`' rows one after another (files of one data set); each keeps its storage alive.
    package convenience init(concatenating parts: [FloatRows]) {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.width == parts[0].width && $0.order == nil },
                     "rows of one width, in their own order")
        self.init(chunks: parts.flatMap(\.chunks), width: parts[0].width, owners: parts,
                  ownedBytes: parts.reduce(0) { $0 + $1.ownedBytes })
    }

    /// Rows in all.
    package var count: Int { order?.count ?? starts.last! }

    /// Copies row `index`'s `width` values into `target` (bytes become Floats on the way).
    @inline(__always)
    package func copyRow(_ index: Int, into target: UnsafeMutablePointer<Float>) {
        let (chunk, row) = locate(index)
        switch chunk.element {
        case .float32:
            target.update(from: chunk.base.assumingMemoryBound(to: Float.self) + row * width, count: width)
        case .unsignedByteOver255:
            let bytes = chunk.base.assumingMemoryBound(to: UInt8.self) + row * width
            for i in 0..<width { target[i] = Float(bytes[i]) / 255 }
        }
    }

    /// The chunk holding logical row `index`, and the row's place in it.
    private func locate(_ index: Int) -> (Chunk, Int) {
        let physical = order?[index] ?? index
        if chunks.count == 1 { return (chunks[0], physical) }
        // The last chunk starting at or before the row (few chunks: one per file).
        var low = 0, high = chunks.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if starts[middle] <= physical { low = middle } else { high = middle - 1 }
        }
        return (chunks[low], physical - starts[low])
    }

    /// The rows at `indices`, in that order, without copying them.
    package func selecting(_ indices: [Int]) -> FloatRows {
        FloatRows(chunks: chunks, width: width, owners: owners, ownedBytes: ownedBytes,
                  order: indices.map { order?[$0] ?? $0 })
    }

    /// Every value, row after row, into an array (a data message to a worker without the files).
    package var array: [Float] {
        var values: [Float] = []
        values.reserveCapacity(count * width)
        forEachRun { values.append(contentsOf: $0) }
        return values
    }

    /// Runs `body` over the values in row order, in runs as long as the layout allows (whole Float chunks when in
    /// order; otherwise rows copied, bytes made Floats, a few thousand values at a time).
    package func forEachRun(_ body: (UnsafeBufferPointer<Float>) -> Void) {
        if order == nil, chunks.allSatisfy({ $0.element == .float32 }) {
            for chunk in chunks {
                body(UnsafeBufferPointer(start: chunk.base.assumingMemoryBound(to: Float.self), count: chunk.rows * width))
            }
            return
        }
        let rowsAtOnce = max(1, 4096 / max(width, 1))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rowsAtOnce * width)
        defer { scratch.deallocate() }
        var index = 0
        while index < count {
            let rows = min(rowsAtOnce, count - index)
            for r in 0..<rows { copyRow(index + r, into: scratch + r * width) }
            body(UnsafeBufferPointer(start: scratch, count: rows * width))
            index += rows
        }
    }

    package static func == (a: FloatRows, b: FloatRows) -> Bool {
        guard a.width == b.width, a.count == b.count else { return false }
        let left = UnsafeMutablePointer<Float>.allocate(capacity: max(a.width, 1) * 2)
        defer { left.deallocate() }
        let right = left + max(a.width, 1)
        for index in 0..<a.count {
            a.copyRow(index, into: left)
            b.copyRow(index, into: right)
            guard UnsafeBufferPointer(start: left, count: a.width).elementsEqual(
                UnsafeBufferPointer(start: right, count: b.width)) else { return false }
        }
        return true
    }
}

/// An array's values at a stable address for as long as this lives.
private final class ArrayStorage {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(count, 1))
        values.withUnsafeBufferPointer { if count > 0 { pointer.initialize(from: $0.baseAddress!, count: count) } }
    }

    deinit { pointer.deallocate() }
}
