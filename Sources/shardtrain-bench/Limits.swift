import ArgumentParser
import Engine

/// What bounds a step: the products at the GEMM library's speed, and the optimizer's pass over every parameter.
struct GEMMLimit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sgemm", abstract: "sgemm GFLOP/s on a model's own GEMM shapes at a batch size.")
    @Option var model = BenchModel.mnistMLP
    @Option var batch = 256
    @Option var threads = 1
    @Option var seconds = 1.0
    @Option(help: "openblas or onednn.") var library = "openblas"
    @Option(help: "shared (the limit): every product on the same few buffers; step: on a step's own operands.")
    var operands = "shared"

    func validate() throws {
        guard operands == "shared" || operands == "step" else { throw ValidationError("--operands: shared or step") }
        guard GEMMLibrary(rawValue: library) != nil else { throw ValidationError("--library: openblas or onednn") }
        guard library == "openblas" || threads == 1 else { throw ValidationError("oneDNN runs one thread here") }
    }

    func run() {
        BLAS.setThreads(threads)
        let products = Products(library: GEMMLibrary(rawValue: library)!)
        let layers = model.spec.layout.layers
        let step = operands == "step" ? stepOperandProducts(products, layers, batch: batch)
            : sharedOperandProducts(products, layers, batch: batch)
        step()
        let (steps, elapsed) = repeatFor(seconds: seconds, step)
        let gflops = model.flopsPerSample * Double(batch) * Double(steps) / elapsed / 1e9
        emit(["gflops": gflops, "limit_samples_per_second": gflops * 1e9 / model.flopsPerSample,
              "flops_per_sample": model.flopsPerSample, "model": model.rawValue, "batch": batch, "threads": threads,
              "operands": operands, "kernel": BLAS.kernel, "gemm": products.library.description])
    }
}

/// The optimizer's update of every parameter of a model, alone and repeated, so its buffers stay in cache: the
/// least an update costs inside a step, where the products push them out.
struct UpdateAlone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Milliseconds of one optimizer update of a model's parameters.")
    @Option var model = BenchModel.mnistMLP
    @Option var optimizer = "sgd"
    @Option var seconds = 1.0

    func run() {
        let count = model.spec.layout.parameterCount
        let optimizer = benchOptimizer(self.optimizer).make(parameterCount: count)
        let parameters = Buffer<Float>(count: count), gradients = Buffer<Float>(count: count)
        model.spec.initialise(parameters, seed: 1)
        for i in 0..<count { gradients[i] = Float(i % 13) * 1e-3 - 6e-3 }
        let step = { _ = optimizer.step(parameters: parameters.pointer, gradients: gradients.pointer, scale: 1 / 128,
                                        learningRate: 1e-3, checkFinite: true) }
        step()
        let (steps, elapsed) = repeatFor(seconds: seconds, step)
        emit(["update_ms": elapsed / Double(steps) * 1e3, "parameters": count, "model": model.rawValue,
              "optimizer": self.optimizer])
    }
}

/// Runs `body` until `seconds` have passed; the runs and the seconds they took.
func repeatFor(seconds: Double, _ body: () -> Void) -> (Int, Double) {
    let clock = ContinuousClock()
    var runs = 0
    let start = clock.now
    while (clock.now - start) < .seconds(seconds) {
        body()
        runs += 1
    }
    return (runs, (clock.now - start) / .seconds(1))
}

/// The products of one training step, as Network issues them, on a few shared buffers: the GEMMs' own limit.
func sharedOperandProducts(_ products: Products, _ layers: [ParameterLayout.Dense], batch: Int) -> () -> Void {
    let widest = layers.map { $0.inputs * $0.outputs }.max()!
    let rows = batch * layers.map { max($0.inputs, $0.outputs) }.max()!
    let a = Buffer<Float>(count: max(rows, widest)), w = Buffer<Float>(count: widest)
    let c = Buffer<Float>(count: max(rows, widest))
    for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
    for i in 0..<w.count { w[i] = Float(i % 5) * 0.1 }
    return {
        for d in layers {
            products(.none, .transposed, m: batch, n: d.outputs, k: d.inputs, a.pointer, lda: d.inputs,
                     w.pointer, ldb: d.inputs, beta: 0, c.pointer, ldc: d.outputs)
            products.weightGradient(of: d, rows: batch, dz: a.pointer, x: a.pointer, into: w.pointer)
        }
        for d in layers.dropFirst() {
            products(.none, .none, m: batch, n: d.inputs, k: d.outputs, a.pointer, lda: d.outputs,
                     w.pointer, ldb: d.inputs, beta: 0, c.pointer, ldc: d.inputs)
        }
    }
}

/// The same products where a training step has their operands (one parameter buffer, one gradient buffer, each
/// layer's activations, two buffers for the gradient flowing back) and in its order: the products' cost in a step,
/// the caches' share included.
func stepOperandProducts(_ products: Products, _ layers: [ParameterLayout.Dense], batch: Int) -> () -> Void {
    let count = layers.last!.biasOffset + layers.last!.outputs
    let parameters = Buffer<Float>(count: count), gradient = Buffer<Float>(count: count)
    for i in 0..<count { parameters[i] = Float(i % 5) * 0.01 }
    let widest = max(layers[0].inputs, layers.map(\.outputs).max()!)
    let input = Buffer<Float>(count: batch * layers[0].inputs)
    let activations = layers.map { Buffer<Float>(count: batch * $0.outputs) }
    let upstream = Buffer<Float>(count: batch * widest), downstream = Buffer<Float>(count: batch * widest)
    for i in 0..<input.count { input[i] = Float(i % 7) * 0.1 }
    for i in 0..<upstream.count { upstream[i] = Float(i % 3) * 0.01 }
    return {
        var x = UnsafePointer(input.pointer)
        for (l, d) in layers.enumerated() {
            products(.none, .transposed, m: batch, n: d.outputs, k: d.inputs, x, lda: d.inputs,
                     parameters.pointer + d.weightOffset, ldb: d.inputs, beta: 0, activations[l].pointer,
                     ldc: d.outputs)
            x = UnsafePointer(activations[l].pointer)
        }
        var dz = upstream.pointer, spare = downstream.pointer
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let d = layers[l]
            let x = l == 0 ? UnsafePointer(input.pointer) : UnsafePointer(activations[l - 1].pointer)
            products.weightGradient(of: d, rows: batch, dz: dz, x: x, into: gradient.pointer + d.weightOffset)
            guard l > 0 else { break }
            products(.none, .none, m: batch, n: d.inputs, k: d.outputs, dz, lda: d.outputs,
                     parameters.pointer + d.weightOffset, ldb: d.inputs, beta: 0, spare, ldc: d.inputs)
            swap(&dz, &spare)
        }
    }
}
