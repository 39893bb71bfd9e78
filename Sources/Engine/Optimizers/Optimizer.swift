/// Updates the flat parameter buffer from the flat mean-gradient buffer, as `torch.optim` does.
///
/// State (moments, momentum buffers) is flat and laid out like the parameters, so it saves and ships as buffers.
package protocol Optimizer: AnyObject {
    /// Steps taken so far (set when resuming from a checkpoint).
    var steps: Int { get set }
    /// The optimizer's state buffers, each laid out like the parameters.
    var state: [Buffer<Float>] { get }
    /// Threads an update may use (elementwise, so any number gives the same bits).
    var threads: Int { get set }
    var parameterCount: Int { get }
    /// Step `steps + 1`'s update of the parameters in `part` (a multiple of 8 from the start) with this step's
    /// learning rate, from the gradient `gradients[i] · scale` (scale 1 for a mean, 1 / samples for a sum); the
    /// pointers are to the whole buffers. Every part of a step is updated once, in any order, then `steps` moves on:
    /// the bits are those of one update of the whole buffer, since each parameter's update reads only its own values.
    ///
    /// With `checkFinite`, returns false when a gradient is NaN or infinite: the run has diverged and must stop,
    /// and the update may have been applied in part (SGD and Adam check in the same pass as they update). Without it,
    /// returns true: the caller has checked.
    func update(_ part: Range<Int>, parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                scale: Float, learningRate: Float, checkFinite: Bool) -> Bool
}

extension Optimizer {
    /// One update of every parameter, and the step counted.
    @discardableResult
    package func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, scale: Float,
                     learningRate: Float, checkFinite: Bool) -> Bool {
        let updated = update(0..<parameterCount, parameters: parameters, gradients: gradients, scale: scale,
                             learningRate: learningRate, checkFinite: checkFinite)
        // Not `+=`: through the protocol that is a coroutine, which allocates its frame in a debug build.
        steps = steps + 1
        return updated
    }

    @discardableResult
    package func step(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, scale: Float,
                     learningRate: Float) -> Bool {
        step(parameters: parameters, gradients: gradients, scale: scale, learningRate: learningRate,
             checkFinite: false)
    }

    /// For updates without a fused check: whether `gradients` are all finite, on the update's threads.
    func gradientsAreFinite(_ gradients: UnsafePointer<Float>, count: Int) -> Bool {
        !anyRange(count, threads: threads) { range in
            !GradientSum.allFinite(gradients + range.lowerBound, count: range.count)
        }
    }
}

/// An optimizer and its hyper-parameters, with `torch.optim`'s names and defaults.
package enum OptimizerConfig: Sendable, Equatable {
    case sgd(SGD.Options)
    case rmsprop(RMSProp.Options)
    case adam(Adam.Options)

    /// The base learning rate.
    package var learningRate: Float {
        get {
            switch self {
            case .sgd(let o): o.lr
            case .rmsprop(let o): o.lr
            case .adam(let o): o.lr
            }
        }
        set {
            switch self {
            case .sgd(var o): o.lr = newValue; self = .sgd(o)
            case .rmsprop(var o): o.lr = newValue; self = .rmsprop(o)
            case .adam(var o): o.lr = newValue; self = .adam(o)
            }
        }
    }

    /// A fresh optimizer for `count` parameters.
    package func make(parameterCount count: Int) -> Optimizer {
        switch self {
        case .sgd(let o): SGD(o, parameterCount: count)
        case .rmsprop(let o): RMSProp(o, parameterCount: count)
        case .adam(let o): Adam(o, parameterCount: count)
        }
    }
}
