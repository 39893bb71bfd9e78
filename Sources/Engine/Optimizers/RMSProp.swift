/// RMSProp (`torch.optim.RMSprop`): per-parameter step sizes from a running mean of squared gradients, optionally
/// centered (divides by an estimate of the variance instead) and with momentum.
public final class RMSProp: Optimizer {
    public struct Options: Sendable, Equatable {
        public var lr: Float = 0.01
        public var alpha: Float = 0.99
        public var eps: Float = 1e-8
        public var weightDecay: Float = 0
        public var momentum: Float = 0
        public var centered = false
        public init() {}
    }

    public let options: Options
    public let parameterCount: Int
    public private(set) var steps = 0
    private let squareAverage: Buffer<Float>
    private let gradientAverage: Buffer<Float>
    private let momentumBuffer: Buffer<Float>

    public init(_ options: Options, parameterCount: Int) {
        self.options = options
        self.parameterCount = parameterCount
        squareAverage = Buffer(count: parameterCount)
        gradientAverage = Buffer(count: options.centered ? parameterCount : 0)
        momentumBuffer = Buffer(count: options.momentum > 0 ? parameterCount : 0)
    }

    public var state: [Buffer<Float>] {
        [squareAverage] + (options.centered ? [gradientAverage] : []) + (options.momentum > 0 ? [momentumBuffer] : [])
    }

    public func step(parameters p: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     learningRate lr: Float) {
        let o = options
        let square = squareAverage.pointer, mean = gradientAverage.pointer, buffer = momentumBuffer.pointer
        for i in 0..<parameterCount {
            let g = gradients[i] + o.weightDecay * p[i]
            // Running mean of g².
            square[i] = o.alpha * square[i] + (1 - o.alpha) * g * g
            var denominator: Float
            if o.centered {
                // Running mean of g, so that the denominator estimates the standard deviation.
                mean[i] += (1 - o.alpha) * (g - mean[i])
                denominator = (square[i] - mean[i] * mean[i]).squareRoot() + o.eps
            } else {
                denominator = square[i].squareRoot() + o.eps
            }
            if o.momentum > 0 {
                // Momentum on the normalised step.
                buffer[i] = o.momentum * buffer[i] + g / denominator
                p[i] -= lr * buffer[i]
            } else {
                p[i] -= lr * g / denominator
            }
        }
        steps += 1
    }
}
