/// Row-major Float rows of one width, wherever they lie: an array in memory, or the data of files mapped read-only
/// (`.npy` float32), one after another, so a data set bigger than memory trains with only the rows a step touches
/// resident. A view can pick rows in another order (a validation split) without copying them.
package final class FloatRows: @unchecked Sendable, Equatable {
    package let width: Int
    /// The rows, in chunks: each a base and a row count. Immutable after init; what they point into is kept alive by
    /// `owners` (an array's storage, mapped files).
    private let chunks: [(base: UnsafePointer<Float>, rows: Int)]
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
        self.init(chunks: [(UnsafePointer(storage.pointer), values.count / max(width, 1))], width: width,
                  owners: [storage], ownedBytes: 4 * values.count)
    }

    /// Rows in `chunks`, in order, kept alive by `owners`.
    package init(chunks: [(base: UnsafePointer<Float>, rows: Int)], width: Int, owners: [AnyObject], ownedBytes: Int,
                 order: [Int]? = nil) {
        self.width = width
        self.chunks = chunks
        self.owners = owners
        self.ownedBytes = ownedBytes
        self.order = order
        var starts = [0]
        for chunk in chunks { starts.append(starts.last! + chunk.rows) }
        self.starts = starts
    }

    /// Rows in all.
    package var count: Int { order?.count ?? starts.last! }

    /// The first of row `index`'s `width` values.
    package func row(_ index: Int) -> UnsafePointer<Float> {
        let physical = order?[index] ?? index
        if chunks.count == 1 { return chunks[0].base + physical * width }
        // The last chunk starting at or before the row (few chunks: one per file).
        var low = 0, high = chunks.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if starts[middle] <= physical { low = middle } else { high = middle - 1 }
        }
        return chunks[low].base + (physical - starts[low]) * width
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

    /// Runs `body` over the values in row order, in runs as long as the layout allows (whole chunks when in order).
    package func forEachRun(_ body: (UnsafeBufferPointer<Float>) -> Void) {
        if order == nil {
            for chunk in chunks { body(UnsafeBufferPointer(start: chunk.base, count: chunk.rows * width)) }
        } else {
            for index in 0..<count { body(UnsafeBufferPointer(start: row(index), count: width)) }
        }
    }

    package static func == (a: FloatRows, b: FloatRows) -> Bool {
        guard a.width == b.width, a.count == b.count else { return false }
        for index in 0..<a.count where !UnsafeBufferPointer(start: a.row(index), count: a.width)
            .elementsEqual(UnsafeBufferPointer(start: b.row(index), count: b.width)) {
            return false
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
