/// A source that finishes a step's gradient part by part — a coordinator whose workers send their sums in parts —
/// so the trainer updates each part of the parameters as soon as its sum is final, and the new weights of the first
/// parts can travel while later parts still arrive.
package protocol PartwiseGradientSource: GradientSource {
    /// Whether this run's steps go part by part.
    var updatesInParts: Bool { get }
    /// As `accumulate`, but calls `update` once for each part of the parameters (together they cover every
    /// parameter once, each part starting on a multiple of 8) as soon as the sum there is final, with the
    /// gradients to update it from: exact mode writes the part's mean into `mean` and passes it with scale 1 and
    /// whether the mean is finite; fast mode passes the sum's own Floats and 1 / samples. The counts go into `sum`.
    /// `undo` puts a part updated this step back as it was (values found wrong after it was updated from them); the
    /// source then updates it once more.
    func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                    parameters: Buffer<Float>, into sum: GradientSum, mean: UnsafeMutablePointer<Float>,
                    update: (_ part: Range<Int>, _ gradients: UnsafePointer<Float>, _ scale: Float, _ finite: Bool) throws -> Void,
                    undo: (_ part: Range<Int>) -> Void)
        throws
}

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
    /// The buffers a step changes: the parameters, then the optimizer's state.
    var steppedBuffers: [Buffer<Float>] { [parameters] + optimizer.state }

    /// Runs `body` with the state from before the step in progress (a step updated part by part may be half done):
    /// what a checkpoint written in the middle of a step must hold.
    package func withStateBeforeStep<R>(_ body: () throws -> R) rethrows -> R {
        guard !stepBackup.isEmpty else { return try body() }
        let buffers = steppedBuffers
        stepBackup.exchange(with: buffers)
        defer { stepBackup.exchange(with: buffers) }
        return try body()
    }

    /// One step whose parts are updated as `source` finishes them. Anything thrown undoes the parts already updated.
    func takePartwiseStep(_ source: PartwiseGradientSource, batch: Int, indices: UnsafeBufferPointer<Int>,
                          microShards: Int, learningRate: Float) throws {
        let exact = sum.reduction == .exact
        let buffers = steppedBuffers
        var updated = 0
        do {
            try source.accumulate(step: step, epoch: epoch, batchIndex: batch, batch: indices, microShards: microShards,
                                  parameters: parameters, into: sum, mean: gradient.pointer) { part, gradients, scale, finite in
                stepBackup.keep(part, of: buffers)
                updated += part.count
                guard finite, optimizer.update(part, parameters: parameters.pointer, gradients: gradients, scale: scale,
                                               learningRate: learningRate, checkFinite: !exact) else {
                    throw divergence(learningRate, gradients: gradients, range: part)
                }
            } undo: { part in
                stepBackup.restore(part, of: buffers)
                updated -= part.count
            }
            guard !sum.overflowed else { throw divergence(learningRate) }
        } catch {
            stepBackup.restore(buffers)
            throw error
        }
        precondition(updated == parameters.count, "a partwise step updated \(updated) of \(parameters.count) parameters")
        stepBackup.forget()
        optimizer.steps = optimizer.steps + 1  // not `+=`: see `Optimizer.step`
    }
}
