/// One dense layer of a model: `output = activation(W·x + b)` with `units` outputs.
public struct LayerSpec: Sendable, Equatable {
    public var units: Int
    public var activation: Activation

    public init(units: Int, activation: Activation) {
        self.units = units
        self.activation = activation
    }
}

/// A sequence of dense layers on `inputs` features.
public struct ModelSpec: Sendable, Equatable {
    public var inputs: Int
    public var layers: [LayerSpec]

    public init(inputs: Int, layers: [LayerSpec]) {
        self.inputs = inputs
        self.layers = layers
    }

    /// Width of the model's output.
    public var outputs: Int { layers.last?.units ?? inputs }

    /// Where each layer's weight and bias sit in the flat parameter buffer.
    public var layout: ParameterLayout { ParameterLayout(self) }
}

/// The placement of every layer's parameters in one contiguous Float buffer; gradients and optimizer state
/// use the same layout.
///
/// Layer `l` holds its weight as PyTorch's `nn.Linear` does, `[out, in]` row-major, followed by its bias `[out]`.
/// Saved names follow an `nn.Sequential` in which every activation is a module of its own, so linear layer `l` is
/// module `2·l`: `0.weight`, `0.bias`, `2.weight`, …
public struct ParameterLayout: Sendable, Equatable {
    /// One dense layer's view into the flat buffer.
    public struct Dense: Sendable, Equatable {
        public let inputs: Int
        public let outputs: Int
        public let weightOffset: Int
        public var weightCount: Int { inputs * outputs }
        public var biasOffset: Int { weightOffset + weightCount }
        /// Module index in the equivalent `nn.Sequential`.
        public let moduleIndex: Int
    }

    public let layers: [Dense]
    public let parameterCount: Int

    public init(_ spec: ModelSpec) {
        var offset = 0
        var layers: [Dense] = []
        var width = spec.inputs
        for (index, layer) in spec.layers.enumerated() {
            let dense = Dense(inputs: width, outputs: layer.units, weightOffset: offset, moduleIndex: 2 * index)
            layers.append(dense)
            offset = dense.biasOffset + layer.units
            width = layer.units
        }
        self.layers = layers
        parameterCount = offset
    }

    /// Every tensor as (name, shape, offset, count), in buffer order.
    public var tensors: [(name: String, shape: [Int], offset: Int, count: Int)] {
        layers.flatMap { dense in
            [("\(dense.moduleIndex).weight", [dense.outputs, dense.inputs], dense.weightOffset, dense.weightCount),
             ("\(dense.moduleIndex).bias", [dense.outputs], dense.biasOffset, dense.outputs)]
        }
    }
}
