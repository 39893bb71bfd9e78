/// The parameters and optimizer state of the parts a step has updated so far, as they were before it: a step that
/// stops half-way (a signal, too few workers, divergence) is undone, and a checkpoint written during one holds the
/// state before it.
final class StepBackup {
    private var copies: [Buffer<Float>] = []
    private(set) var parts: [Range<Int>] = []

    var isEmpty: Bool { parts.isEmpty }

    /// Notes that `part` of each buffer is about to be updated; before the step's first part, keeps them whole. In
    /// one pass at the first part rather than a part at a time: the first parts come while workers still compute,
    /// the last ones are on the step's critical path.
    func keep(_ part: Range<Int>, of buffers: [Buffer<Float>]) {
        if copies.count != buffers.count {
            copies = buffers.map { Buffer<Float>(count: $0.count) }
            parts.reserveCapacity(1024)
        }
        if parts.isEmpty {
            for (copy, buffer) in zip(copies, buffers) { copy.pointer.update(from: buffer.pointer, count: buffer.count) }
        }
        parts.append(part)
    }

    /// Exchanges the kept parts with the buffers' (twice is no change).
    func exchange(with buffers: [Buffer<Float>]) {
        for (copy, buffer) in zip(copies, buffers) {
            for part in parts {
                for i in part { swap(&copy.pointer[i], &buffer.pointer[i]) }
            }
        }
    }

    /// Puts `part` (kept whole by one `keep`) back and forgets it: its update never happened.
    func restore(_ part: Range<Int>, of buffers: [Buffer<Float>]) {
        guard let index = parts.firstIndex(of: part) else { return }
        for (copy, buffer) in zip(copies, buffers) {
            (buffer.pointer + part.lowerBound).update(from: copy.pointer + part.lowerBound, count: part.count)
        }
        parts.remove(at: index)
    }

    /// Puts the kept parts back and forgets them: the step never happened.
    func restore(_ buffers: [Buffer<Float>]) {
        for (copy, buffer) in zip(copies, buffers) {
            for part in parts { (buffer.pointer + part.lowerBound).update(from: copy.pointer + part.lowerBound, count: part.count) }
        }
        forget()
    }

    func forget() { parts.removeAll(keepingCapacity: true) }
}

extension Trainer {
    /// Runs `body` with the state from before the step in progress (a step updated part by part may be half done):
    /// what a checkpoint written in the middle of a step must hold.
    package func withStateBeforeStep<R>(_ body: () throws -> R) rethrows -> R {
        guard !stepBackup.isEmpty else { return try body() }
        let buffers = steppedBuffers
        stepBackup.exchange(with: buffers)
        defer { stepBackup.exchange(with: buffers) }
        return try body()
    }
}
