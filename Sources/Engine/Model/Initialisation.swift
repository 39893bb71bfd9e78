extension ModelSpec {
    /// Fills `parameters` with initial weights: He-uniform for the ReLU family, Xavier-uniform otherwise, biases 0.
    ///
    /// The uniform forms need only the generator and a square root, both exact, so a seed gives the same weights on
    /// every platform. Bounds: He `√(6 / ((1 + slope²)·fan_in))`, Xavier `√(6 / (fan_in + fan_out))`, as
    /// `torch.nn.init.kaiming_uniform_` and `xavier_uniform_` define them.
    package func initialise(_ parameters: Buffer<Float>, seed: UInt64) {
        precondition(parameters.count == layout.parameterCount, "parameter buffer does not fit the model")
        var random = Xoshiro(seed: seed, stream: RandomStream.initialisation)
        for (layer, dense) in zip(layers, layout.layers) {
            let bound: Float
            switch layer.activation {
            case .relu, .gelu:
                bound = (6 / Float(dense.inputs)).squareRoot()
            case .leakyReLU(let slope):
                bound = (6 / ((1 + slope * slope) * Float(dense.inputs))).squareRoot()
            default:
                bound = (6 / Float(dense.inputs + dense.outputs)).squareRoot()
            }
            let weights = parameters.pointer + dense.weightOffset
            for i in 0..<dense.weightCount { weights[i] = (2 * random.nextUnitFloat() - 1) * bound }
            (parameters.pointer + dense.biasOffset).update(repeating: 0, count: dense.outputs)
        }
    }
}

/// Stream numbers that keep the generator's uses independent of one another.
enum RandomStream {
    static let initialisation: UInt64 = 1
    static let shuffle: UInt64 = 2  // + epoch << 8
    static let validationSplit: UInt64 = 3
    static let syntheticData: UInt64 = 4

    static func shuffle(epoch: Int) -> UInt64 { shuffle &+ (UInt64(epoch) << 8) }
}
