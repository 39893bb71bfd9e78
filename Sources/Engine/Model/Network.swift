/// Statistics of one slice of a batch: everything the coordinator needs, as sums, so slices combine by adding.
package struct SliceStatistics: Sendable, Equatable {
    package var samples: Int
    package var lossSum: Double
    package var correct: Int

    package init(samples: Int = 0, lossSum: Double = 0, correct: Int = 0) {
        self.samples = samples
        self.lossSum = lossSum
        self.correct = correct
    }
}

/// A model with its loss and a workspace for up to `capacity` samples at a time.
///
/// Forward keeps each layer's pre-activation `z` and activation `a`; backward walks the layers from the loss to
/// the input by the chain rule. All memory is allocated here, once: a training step allocates nothing.
package final class Network {
    package let spec: ModelSpec
    package let layout: ParameterLayout
    package let loss: Loss
    /// Samples the workspace holds at once.
    package let capacity: Int

    /// Input rows the caller fills before `forward` (capacity × inputs).
    package let input: Buffer<Float>
    /// Target rows the caller fills before `gradientSum` (capacity × target width).
    package let targets: Buffer<Float>
    package let targetWidth: Int
    /// Width of the output layer.
    package let outputWidth: Int
    /// Called in `gradientSum` as each block of a layer's weight gradient is written (last layer and last rows first,
    /// `Products.weightGradient`), with the first parameter from which the gradient is now final: a worker sends
    /// those parts while backward goes on.
    package var onLayerGradient: ((_ finalFrom: Int) -> Void)?
    /// Set while a traced result is computed (`--trace`): each layer's forward and backward go in as spans.
    package var spans: SpanRecorder?

    // Per-layer views and activations, copied out of `spec` so the step's loops index plain arrays.
    private let dense: [ParameterLayout.Dense]
    private let activationOf: [Activation]
    private let preActivations: [Buffer<Float>]
    private let activations: [Buffer<Float>]
    // Two ping-pong buffers for the gradient flowing backward (capacity × widest layer).
    private let upstream: Buffer<Float>
    private let downstream: Buffer<Float>

    /// Where the products go: oneDNN or OpenBLAS, as the job says (see `GEMMLibrary`).
    package let products: Products

    package init(spec: ModelSpec, loss: Loss, targetWidth: Int, capacity: Int, library: GEMMLibrary) {
        precondition(capacity > 0 && !spec.layers.isEmpty, "a network needs layers and a positive capacity")
        self.spec = spec
        self.layout = spec.layout
        self.loss = loss
        self.capacity = capacity
        self.targetWidth = targetWidth
        products = Products(library: library)
        dense = layout.layers
        outputWidth = spec.outputs
        activationOf = spec.layers.map(\.activation)
        input = Buffer(count: capacity * spec.inputs)
        targets = Buffer(count: capacity * targetWidth)
        preActivations = spec.layers.map { Buffer(count: capacity * $0.units) }
        activations = spec.layers.map { Buffer(count: capacity * $0.units) }
        let widest = max(spec.inputs, spec.layers.map(\.units).max()!)
        upstream = Buffer(count: capacity * widest)
        downstream = Buffer(count: capacity * widest)
    }

    /// The output layer's activations after `forward` (rows × outputs).
    package var output: UnsafePointer<Float> { UnsafePointer(activations[activations.count - 1].pointer) }

    /// Runs the first `rows` input rows through every layer, keeping what backward needs.
    package func forward(rows: Int, parameters: UnsafePointer<Float>) {
        precondition(rows > 0 && rows <= capacity, "forward of \(rows) rows exceeds capacity \(capacity)")
        var x = UnsafePointer(input.pointer)
        for l in 0..<dense.count {
            let started = spans == nil ? 0 : SpanRecorder.now()
            let dense = self.dense[l]
            let z = preActivations[l].pointer, a = activations[l].pointer
            // z = x · Wᵀ, W stored [out, in] as nn.Linear.
            products(.none, .transposed, m: rows, n: dense.outputs, k: dense.inputs,
                 x, lda: dense.inputs, parameters + dense.weightOffset, ldb: dense.inputs,
                 beta: 0, z, ldc: dense.outputs)
            activationOf[l].forward(z: z, bias: parameters + dense.biasOffset, a: a,
                                              rows: rows, cols: dense.outputs)
            x = UnsafePointer(a)
            spans?.record(.forward, l, from: started)
        }
    }

    /// Loss sum and correct count of the first `rows` samples after `forward`, without gradients.
    package func evaluate(rows: Int) -> SliceStatistics {
        let (lossSum, correct) = loss.evaluate(output: lossInput, targets: targets.pointer, rows: rows,
                                               cols: outputWidth, targetWidth: targetWidth, gradient: nil)
        return SliceStatistics(samples: rows, lossSum: lossSum, correct: correct)
    }

    /// Forward and backward over the first `rows` samples: writes the gradient of the SUM of their losses into
    /// `gradient` (overwriting it; same layout as the parameters) and returns the slice's statistics.
    package func gradientSum(rows: Int, parameters: UnsafePointer<Float>,
                            gradient: UnsafeMutablePointer<Float>) -> SliceStatistics {
        forward(rows: rows, parameters: parameters)
        let last = dense.count - 1
        var dz = upstream.pointer, spare = downstream.pointer
        // The loss and the output activation's backward count as the last layer's backward.
        var started = spans == nil ? 0 : SpanRecorder.now()
        let (lossSum, correct) = loss.evaluate(output: lossInput, targets: targets.pointer, rows: rows,
                                               cols: outputWidth, targetWidth: targetWidth, gradient: dz)
        if !loss.readsLogits {
            activationOf[last].backward(gradient: dz, z: preActivations[last].pointer,
                                        a: activations[last].pointer, rows: rows, cols: outputWidth)
        }
        for l in stride(from: last, through: 0, by: -1) {
            let dense = self.dense[l]
            let x = l == 0 ? UnsafePointer(input.pointer) : UnsafePointer(activations[l - 1].pointer)
            // db = column sums of dz: first, so each block of dW below is final with everything after it.
            let db = gradient + dense.biasOffset
            db.update(repeating: 0, count: dense.outputs)
            for r in 0..<rows {
                let row = dz + r * dense.outputs
                for c in 0..<dense.outputs { db[c] += row[c] }
            }
            // dW = dzᵀ · x  [out, in], a block of output rows at a time from the last: a worker sends each block's
            // parts while the next is multiplied.
            products.weightGradient(of: dense, rows: rows, dz: dz, x: x, into: gradient + dense.weightOffset) { first in
                guard let onLayerGradient else { return }
                // A part sent here is a span of its own, not this layer's.
                spans?.record(.backward, l, from: started)
                onLayerGradient(dense.weightOffset + first * dense.inputs)
                if spans != nil { started = SpanRecorder.now() }
            }
            guard l > 0 else {
                if onLayerGradient == nil { spans?.record(.backward, l, from: started) }
                break
            }
            // dx = dz · W  [rows, in], then through the previous layer's activation.
            products(.none, .none, m: rows, n: dense.inputs, k: dense.outputs,
                 dz, lda: dense.outputs, parameters + dense.weightOffset, ldb: dense.inputs,
                 beta: 0, spare, ldc: dense.inputs)
            activationOf[l - 1].backward(gradient: spare, z: preActivations[l - 1].pointer,
                                         a: activations[l - 1].pointer, rows: rows, cols: dense.inputs)
            swap(&dz, &spare)
            spans?.record(.backward, l, from: started)
            if spans != nil { started = SpanRecorder.now() }
        }
        return SliceStatistics(samples: rows, lossSum: lossSum, correct: correct)
    }

    /// How often `gradientSum` calls `onLayerGradient`: once per block of every layer's weight gradient.
    package var gradientCallsPerSum: Int {
        dense.reduce(0) { $0 + Products.weightGradientBlockCount(of: $1) }
    }

    private var lossInput: UnsafePointer<Float> {
        let last = dense.count - 1
        return UnsafePointer(loss.readsLogits ? preActivations[last].pointer : activations[last].pointer)
    }
}
