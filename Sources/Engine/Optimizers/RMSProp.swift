/// RMSProp (`torch.optim.RMSprop`): per-parameter step sizes from a running mean of squared gradients, optionally
/// centered (divides by an estimate of the variance instead) and with momentum.
package final class RMSProp: Optimizer {
    package struct Options: Sendable, Equatable {
        package var lr: Float = 0.01
        package var alpha: Float = 0.99
        package var eps: Float = 1e-8
        package var weightDecay: Float = 0
        package var momentum: Float = 0
        package var centered = false
        package init() {}
    }

    package let options: Options
    package let parameterCount: Int
    package var steps = 0
    package var threads = 1
    private let squareAverage: Buffer<Float>
    private let gradientAverage: Buffer<Float>
    private let momentumBuffer: Buffer<Float>

    package init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        squareAverage = Buffer(count: parameterCount)
        gradientAverage = Buffer(count: options.centered ? parameterCount : 0)
        momentumBuffer = Buffer(count: options.momentum > 0 ? parameterCount : 0)
    }

    package var state: [Buffer<Float>] {
        [squareAverage] + (options.centered ? [gradientAverage] : []) + (options.momentum > 0 ? [momentumBuffer] : [])
    }

    package func update(_ part: Range<Int>, parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                       scale: Float, learningRate lr: Float, checkFinite: Bool) -> Bool {
        precondition(part.lowerBound % 8 == 0, "an RMSProp update part starts on a block of eight")
        if checkFinite && !gradientsAreFinite(gradients + part.lowerBound, count: part.count) { return false }
        let o = options
        let square = squareAverage.pointer, mean = gradientAverage.pointer, buffer = momentumBuffer.pointer
        let (alpha, eps, wd, mu, centered) = (o.alpha, o.eps, o.weightDecay, o.momentum, o.centered)
        // Eight lanes at a time over the buffers' zero padding, as Adam (a scalar square root does not vectorise).
        forEachBlock(part.count, threads: threads) { block in
            let i = part.lowerBound + block
            let w = Vector8.load(p, i)
            let g = Vector8.load(gradients, i) * scale + wd * w
            // Running mean of g².
            let s2 = alpha * Vector8.load(square, i) + (1 - alpha) * g * g
            s2.store(square, i)
            var denominator: Vector8
            if centered {
                // Running mean of g, so that the denominator estimates the standard deviation.
                let previous = Vector8.load(mean, i)
                let average = previous + (1 - alpha) * (g - previous)
                average.store(mean, i)
                denominator = (s2 - average * average).squareRoot() + eps
            } else {
                denominator = s2.squareRoot() + eps
            }
            if mu > 0 {
                // Momentum on the normalised step.
                let velocity = mu * Vector8.load(buffer, i) + g / denominator
                velocity.store(buffer, i)
                (w - lr * velocity).store(p, i)
            } else {
                (w - lr * g / denominator).store(p, i)
            }
        }
        return true
    }
}
