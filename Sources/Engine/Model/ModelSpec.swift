/// One dense layer of a model: `output = activation(W·x + b)` with `units` outputs.
package struct LayerSpec: Sendable, Equatable {
    package var units: Int
    package var activation: Activation

    package init(units: Int, activation: Activation) {
        self.units = units
        self.activation = activation
    }
}

/// A sequence of dense layers on `inputs` features.
package struct ModelSpec: Sendable, Equatable {
    package var inputs: Int
    package var layers: [LayerSpec]

    package init(inputs: Int, layers: [LayerSpec]) {
        self.inputs = inputs
        self.layers = layers
    }

    /// Width of the model's output.
    package var outputs: Int { layers.last?.units ?? inputs }

    /// Where each layer's weight and bias sit in the flat parameter buffer.
    package var layout: ParameterLayout { ParameterLayout(self) }
}

/// The placement of every layer's parameters in one contiguous Float buffer; gradients and optimizer state
/// use the same layout.
///
/// Layer `l` holds its weight as PyTorch's `nn.Linear` does, `[out, in]` row-major, followed by its bias `[out]`.
/// Saved names follow an `nn.Sequential` in which every activation is a module of its own, so linear layer `l` is
/// module `2·l`: `0.weight`, `0.bias`, `2.weight`, …
package struct ParameterLayout: Sendable, Equatable {
    /// One dense layer's view into the flat buffer.
    package struct Dense: Sendable, Equatable {
        package let inputs: Int
        package let outputs: Int
        package let weightOffset: Int
        package var weightCount: Int { inputs * outputs }
        package var biasOffset: Int { weightOffset + weightCount }
        /// Module index in the equivalent `nn.Sequential`.
        package let moduleIndex: Int
    }

    package let layers: [Dense]
    package let parameterCount: Int

    package init(_ spec: ModelSpec) {
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
    package var tensors: [(name: String, shape: [Int], offset: Int, count: Int)] {
        layers.flatMap { dense in
            [("\(dense.moduleIndex).weight", [dense.outputs, dense.inputs], dense.weightOffset, dense.weightCount),
             ("\(dense.moduleIndex).bias", [dense.outputs], dense.biasOffset, dense.outputs)]
        }
    }
}
