import ArgumentParser
import Engine
import Foundation

/// Measurements for scripts/bench.sh; each prints one JSON object. Not a test: timings depend on the machine.
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shardtrain-bench",
        abstract: "Engine measurements for scripts/bench.sh (JSON on stdout).",
        subcommands: [TrainThroughput.self, GEMMLimit.self, UpdateAlone.self, XORTiming.self, WireRoundTrip.self, WireWorker.self,
                      PackingSize.self, TraceCost.self]
    )

    /// The kernel shardtrain itself would run, so the figures are the program's.
    static func main() {
        BLASKernel.selectAtLaunch()
        main(nil)
    }
}

/// The benchmark's work units: mnist-mlp (784→512 ReLU→256 ReLU→10), mnist-wide, and a wider net (1024→1024 ReLU→512 ReLU→100),
/// both with cross-entropy on seeded synthetic data.
enum BenchModel: String, ExpressibleByArgument, CaseIterable {
    case mnistMLP = "mnist-mlp"
    /// mnist-mlp with two 1,024-unit hidden layers (1,863,690 parameters), as scripts/bench-hosts.sh's `mnist-wide`.
    case mnistWide = "mnist-wide"
    case wide

    var spec: ModelSpec {
        switch self {
        case .mnistMLP:
            ModelSpec(inputs: 784, layers: [LayerSpec(units: 512, activation: .relu),
                                            LayerSpec(units: 256, activation: .relu),
                                            LayerSpec(units: 10, activation: .softmax)])
        case .mnistWide:
            ModelSpec(inputs: 784, layers: [LayerSpec(units: 1024, activation: .relu),
                                            LayerSpec(units: 1024, activation: .relu),
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

/// The benchmark's optimizers: SGD with momentum 0.9, or Adam with PyTorch's defaults.
func benchOptimizer(_ name: String) -> OptimizerConfig {
    guard name == "sgd" else { return .adam(Adam.Options()) }
    var sgd = SGD.Options()
    sgd.momentum = 0.9
    return .sgd(sgd)
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
        options.optimizer = benchOptimizer(optimizer)
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
