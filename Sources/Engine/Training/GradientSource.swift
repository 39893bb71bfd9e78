/// One step as the trainer asks a source for its gradient.
package struct StepOrder {
    package let step: Int
    package let epoch: Int
    /// The batch's number in `epoch`.
    package let batchIndex: Int
    /// The batch's sample indices, in epoch order.
    package let batch: UnsafeBufferPointer<Int>
    package let microShards: Int
    package let parameters: Buffer<Float>
    /// Empty and `holdsInputs`: the step's counts and loss go in, and a source may sum the gradients there. What a
    /// source hands over stays untouched until its next step.
    package let sum: GradientSum
    /// Room for a mean gradient, laid out as the parameters.
    package let mean: UnsafeMutablePointer<Float>
    /// The step's learning rate, and the optimizer the trainer updates with (read only: its state and step count
    /// are what a worker that applies the updates itself starts from, in the sharded layout).
    package let learningRate: Float
    package let optimizer: Optimizer
}

/// A part of the parameters whose gradient is final for the step.
package struct ReadyPart {
    /// A multiple of 8 from the start; a step's parts cover every parameter once.
    package let range: Range<Int>
    /// `gradients[i] · scale` is parameter `i`'s mean gradient (the pointer is to the whole buffer's start): exact
    /// mode hands a mean and scale 1, fast mode a sum and 1 / samples.
    package let gradients: UnsafePointer<Float>
    package let scale: Float
    /// False when the source saw a NaN or ∞ in the part's gradient: the run has diverged. (Fast sums are checked by
    /// the optimizer as it updates.)
    package let finite: Bool
    /// The step's only part, and nothing follows it: no undo and no stop, so it needs no copy of the state before.
    package let closesStep: Bool

    package init(range: Range<Int>, gradients: UnsafePointer<Float>, scale: Float, finite: Bool, closesStep: Bool) {
        self.range = range
        self.gradients = gradients
        self.scale = scale
        self.finite = finite
        self.closesStep = closesStep
    }
}

/// What the trainer does next in a step.
package enum StepEvent {
    /// Update these parameters from their final gradient.
    case update(ReadyPart)
    /// Put back a part updated earlier in this step, as it was before (its values were found wrong after it was
    /// updated from them): it comes again as an `update`.
    case undo(Range<Int>)
}

/// Where a step's gradients come from: this process's threads, or worker processes. The trainer begins a step, then
/// pulls events until there are none, and applies each itself: a source never touches the parameters or the
/// optimizer. Each `next` after an `update` tells the source that the update is applied, so it may send the new
/// weights of that part on. Anything thrown ends the step, and the trainer undoes what it had updated.
package protocol GradientSource: AnyObject {
    func begin(_ order: StepOrder) throws
    /// The step's next event; nil once every parameter is updated and the step's counts and loss are in `sum`.
    func next() throws -> StepEvent?
}

extension GradientSum {
    /// Every parameter as one part, from this sum whole: exact mode writes the mean into `mean` (one division, which
    /// checks it); fast mode hands its own Floats, scaled.
    package func wholeStep(mean: UnsafeMutablePointer<Float>) -> ReadyPart {
        switch reduction {
        case .exact:
            let finite = writeMean(into: mean)
            return ReadyPart(range: 0..<count, gradients: mean, scale: 1, finite: finite, closesStep: true)
        case .fast:
            return ReadyPart(range: 0..<count, gradients: floats, scale: 1 / Float(samples), finite: !overflowed,
                             closesStep: true)
        }
    }
}

/// Micro-shards computed on this process's threads, summed whole.
final class LocalGradientSource: GradientSource {
    let slices: ParallelSlices
    let data: Dataset
    private var order: StepOrder?

    init(_ slices: ParallelSlices, data: Dataset) {
        self.slices = slices
        self.data = data
    }

    func begin(_ order: StepOrder) { self.order = order }

    func next() -> StepEvent? {
        guard let order else { return nil }
        self.order = nil
        slices.accumulate(batch: order.batch, microShards: 0 ..< order.microShards, data: data,
                          parameters: order.parameters.pointer, into: order.sum)
        return .update(order.sum.wholeStep(mean: order.mean))
    }
}
