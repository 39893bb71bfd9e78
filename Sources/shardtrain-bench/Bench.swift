import ArgumentParser
import Engine
import Foundation

/// Measurements for scripts/bench.sh; each prints one JSON object. Not a test: timings depend on the machine.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardtrain-bench",
        abstract: "Engine measurements for scripts/bench.sh (JSON on stdout).",
        subcommands: [TrainThroughput.self, GEMMLimit.self, XORTiming.self, WireRoundTrip.self, WireWorker.self]
    )

    /// The kernel shardtrain itself would run, so the figures are the program's.
    static func main() {
        BLASKernel.selectAtLaunch()
        main(nil)
    }
}

/// The benchmark's work units: mnist-mlp (784→512 ReLU→256 ReLU→10) and a wider net (1024→1024 ReLU→512 ReLU→100),
/// both with cross-entropy on seeded synthetic data.
enum BenchModel: String, ExpressibleByArgument, CaseIterable {
    case mnistMLP = "mnist-mlp"
    case wide

    var spec: ModelSpec {
        switch self {
        case .mnistMLP:
            ModelSpec(inputs: 784, layers: [LayerSpec(units: 512, activation: .relu),
                                            LayerSpec(units: 256, activation: .relu),
                                            LayerSpec(units: 10, activation: .softmax)])
        case .wide:
            ModelSpec(inputs: 1024, layers: [LayerSpec(units: 1024, activation: .relu),
                                             LayerSpec(units: 512, activation: .relu),
                                             LayerSpec(units: 100, activation: .softmax)])
        }
    }

    /// FLOPs of one sample's forward and backward pass (no input gradient for the first layer).
    var flopsPerSample: Double {
        let layers = spec.layout.layers
        let forward = layers.reduce(0) { $0 + 2.0 * Double($1.inputs * $1.outputs) }
        let weightGradients = forward
        let inputGradients = layers.dropFirst().reduce(0) { $0 + 2.0 * Double($1.inputs * $1.outputs) }
        return forward + weightGradients + inputGradients
    }

    /// Seeded synthetic samples: uniform features in [-1, 1), uniform class labels.
    func data(samples: Int) -> Dataset {
        var random = Xoshiro(seed: 1234)
        let inputs = spec.inputs, classes = spec.outputs
        let features = (0..<samples * inputs).map { _ in Float(random.nextUnitFloat() * 2 - 1) }
        let labels = (0..<samples).map { _ in Float(random.nextIndex(below: classes)) }
        return try! Dataset(name: "\(rawValue) synthetic", features: features, featureWidth: inputs, targets: labels,
                            targetWidth: 1)
    }
}

func emit(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

struct TrainThroughput: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Training samples per second.")
    @Option var model = BenchModel.mnistMLP
    @Option var batch = 256
    @Option var optimizer = "sgd"
    @Option var reduction = "exact"
    @Option var threads = 1
    @Option var microShard = 128
    @Option(help: "Measured epochs of 8 steps each, after one warm-up epoch.") var epochs = 6
    @Option(help: "onednn or openblas.") var gemm = "onednn"

    func run() throws {
        BLAS.setThreads(1)
        var options = TrainingOptions()
        options.threads = threads
        options.batchSize = batch
        options.microShardSize = microShard
        options.reduction = Reduction(rawValue: reduction)!
        options.library = GEMMLibrary(rawValue: gemm) ?? .oneDNN
        options.length = .epochs(epochs + 1)
        if optimizer == "sgd" {
            var sgd = SGD.Options()
            sgd.momentum = 0.9
            options.optimizer = .sgd(sgd)
        } else {
            options.optimizer = .adam(Adam.Options())
        }
        let trainer = Trainer(spec: model.spec, loss: .crossEntropy, options: options,
                              training: model.data(samples: batch * 8))
        var rates: [Double] = []
        try trainer.run { rates.append($0.samplesPerSecond) }
        let measured = rates.dropFirst().sorted()
        let median = measured[measured.count / 2]
        emit(["samples_per_second": median, "model": model.rawValue, "batch": batch, "optimizer": optimizer,
              "reduction": reduction,
              "threads": threads, "micro_shard": microShard, "kernel": BLAS.kernel,
              "gemm": options.library.description])
    }
}

struct GEMMLimit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sgemm", abstract: "sgemm GFLOP/s on a model's own GEMM shapes at a batch size.")
    @Option var model = BenchModel.mnistMLP
    @Option var batch = 256
    @Option var threads = 1
    @Option var seconds = 1.0
    @Option(help: "openblas or onednn.") var library = "openblas"

    func validate() throws {
        guard GEMMLibrary(rawValue: library) != nil else { throw ValidationError("--library: openblas or onednn") }
        guard library == "openblas" || threads == 1 else { throw ValidationError("oneDNN runs one thread here") }
    }

    func run() {
        BLAS.setThreads(threads)
        let products = Products(library: GEMMLibrary(rawValue: library)!)
        let layers = model.spec.layout.layers
        let widest = layers.map { $0.inputs * $0.outputs }.max()!
        let rows = batch * layers.map { max($0.inputs, $0.outputs) }.max()!
        let a = Buffer<Float>(count: max(rows, widest)), w = Buffer<Float>(count: widest)
        let c = Buffer<Float>(count: max(rows, widest))
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.1 }
        for i in 0..<w.count { w[i] = Float(i % 5) * 0.1 }
        // The products of one training step, as Network issues them.
        func step() {
            for d in layers {
                products(.none, .transposed, m: batch, n: d.outputs, k: d.inputs, a.pointer, lda: d.inputs,
                     w.pointer, ldb: d.inputs, beta: 0, c.pointer, ldc: d.outputs)
                products(.transposed, .none, m: d.outputs, n: d.inputs, k: batch, a.pointer, lda: d.outputs,
                     a.pointer, ldb: d.inputs, beta: 0, w.pointer, ldc: d.inputs)
            }
            for d in layers.dropFirst() {
                products(.none, .none, m: batch, n: d.inputs, k: d.outputs, a.pointer, lda: d.outputs,
                     w.pointer, ldb: d.inputs, beta: 0, c.pointer, ldc: d.inputs)
            }
        }
        step()
        let clock = ContinuousClock()
        var steps = 0
        let start = clock.now
        while (clock.now - start) < .seconds(seconds) {
            step()
            steps += 1
        }
        let elapsed = (clock.now - start) / .seconds(1)
        let flops = model.flopsPerSample * Double(batch) * Double(steps)
        let gflops = flops / elapsed / 1e9
        emit(["gflops": gflops, "limit_samples_per_second": gflops * 1e9 / model.flopsPerSample,
              "flops_per_sample": model.flopsPerSample, "model": model.rawValue, "batch": batch, "threads": threads,
              "kernel": BLAS.kernel, "gemm": products.library.description])
    }
}

struct XORTiming: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "xor", abstract: "The seed's XOR run, µs per epoch.")
    @Option var repeats = 20

    func run() throws {
        BLAS.setThreads(1)
        var sgd = SGD.Options()
        sgd.lr = 0.5
        var options = TrainingOptions()
        options.batchSize = 4
        options.length = .epochs(1000)
        options.optimizer = .sgd(sgd)
        options.seed = 7
        let spec = ModelSpec(inputs: 2, layers: [LayerSpec(units: 3, activation: .relu),
                                                 LayerSpec(units: 1, activation: .sigmoid)])
        var best = Double.infinity
        let clock = ContinuousClock()
        for _ in 0..<repeats {
            let trainer = Trainer(spec: spec, loss: .mse, options: options, training: Synthetic.xor())
            let start = clock.now
            try trainer.run { _ in }
            best = min(best, (clock.now - start) / .microseconds(1) / 1000)
        }
        emit(["us_per_epoch": best, "epochs": 1000])
    }
}
