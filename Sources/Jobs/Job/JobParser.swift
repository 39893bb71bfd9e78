import Engine
import Platform
import Yams

/// Turns the job file's mappings into a `Job`, one section at a time.
struct JobParser {
    let file: String
    let folder: String

    static let topKeys = ["model", "loss", "optimizer", "schedule", "data"] + JobSetting.allCases.map(\.key)

    func job(_ top: inout JobReader) throws -> Job {
        guard var modelReader = try top.mapping("model") else {
            throw InputError("\(file): the job needs a 'model' with 'layers'")
        }
        let model = try self.model(&modelReader)
        guard let lossName = try top.string("loss") else {
            throw InputError("\(file): the job needs a 'loss': \(Loss.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let loss = Loss(rawValue: lossName) else {
            throw top.fail("loss", nil, "unknown loss '\(lossName)'; use "
                + Loss.allCases.map(\.rawValue).joined(separator: ", "))
        }
        var options = TrainingOptions()
        if let optimizerNode = top.node("optimizer") {
            options.optimizer = try optimizer(optimizerNode)
        }
        if top.has("epochs") && top.has("steps") {
            throw InputError("\(file): give either 'epochs' or 'steps', not both")
        }
        if var scheduleReader = try top.mapping("schedule") {
            options.schedule = try schedule(&scheduleReader)
        }
        guard var dataReader = try top.mapping("data") else {
            throw InputError("\(file): the job needs 'data', e.g. {builtin: xor} or {features: x.npy, targets: y.npy}")
        }
        let (data, dataSeed) = try self.data(&dataReader)
        var job = Job(model: model, loss: loss, options: options, data: data)
        job.dataSeed = dataSeed
        for setting in JobSetting.allCases { try setting.read(&top, into: &job) }
        try top.finish(known: Self.topKeys)
        return job
    }

    private func model(_ reader: inout JobReader) throws -> ModelSpec {
        let inputs = try reader.int("inputs", minimum: 1) ?? 0
        guard let layersNode = reader.node("layers"), let items = layersNode.sequence, !items.isEmpty else {
            throw reader.fail("layers", nil, "expected a list of layers, e.g. [{units: 3, activation: relu}]")
        }
        var layers: [LayerSpec] = []
        for (index, item) in items.enumerated() {
            var layer = try JobReader(item, file: file, path: "model.layers[\(index)]")
            guard let units = try layer.int("units", minimum: 1) else {
                throw layer.fail("units", item, "missing; every layer needs a number of units")
            }
            let name = try layer.string("activation") ?? "identity"
            let slope = try layer.double("negative_slope")
            let activation: Activation
            switch name {
            case "relu": activation = .relu
            case "leaky_relu": activation = .leakyReLU(negativeSlope: Float(slope ?? 0.01))
            case "sigmoid": activation = .sigmoid
            case "tanh": activation = .tanh
            case "gelu": activation = .gelu
            case "identity", "linear", "none": activation = .identity
            case "softmax": activation = .softmax
            default:
                throw layer.fail("activation", item, "unknown activation '\(name)'; use relu, leaky_relu, sigmoid, "
                    + "tanh, gelu, identity or softmax")
            }
            if slope != nil, name != "leaky_relu" {
                throw layer.fail("negative_slope", item, "only leaky_relu takes a negative_slope")
            }
            try layer.finish(known: ["units", "activation", "negative_slope"])
            layers.append(LayerSpec(units: units, activation: activation))
        }
        try reader.finish(known: ["inputs", "layers"])
        return ModelSpec(inputs: inputs, layers: layers)
    }

    private func optimizer(_ node: Node) throws -> OptimizerConfig {
        if node.scalar != nil, let name = node.string {
            return try Self.defaultOptimizer(name) ?? { throw unknownOptimizer(name, node) }()
        }
        var reader = try JobReader(node, file: file, path: "optimizer")
        guard let name = try reader.string("name") else { throw reader.fail("name", node, "missing: sgd, rmsprop, adam or adamw") }
        guard var config = Self.defaultOptimizer(name) else { throw unknownOptimizer(name, node) }
        let positive = Double.leastNonzeroMagnitude ... Double.greatestFiniteMagnitude
        switch config {
        case .sgd(var o):
            o.lr = try reader.float("lr", in: positive) ?? o.lr
            o.momentum = try reader.float("momentum", in: 0...1) ?? o.momentum
            o.dampening = try reader.float("dampening", in: 0...1) ?? o.dampening
            o.nesterov = try reader.bool("nesterov") ?? o.nesterov
            o.weightDecay = try reader.float("weight_decay", in: 0...1e6) ?? o.weightDecay
            if o.nesterov && (o.momentum == 0 || o.dampening != 0) {
                throw reader.fail("nesterov", node, "needs momentum > 0 and dampening 0 (as torch.optim.SGD)")
            }
            try reader.finish(known: ["name", "lr", "momentum", "dampening", "nesterov", "weight_decay"])
            config = .sgd(o)
        case .rmsprop(var o):
            o.lr = try reader.float("lr", in: positive) ?? o.lr
            o.alpha = try reader.float("alpha", in: 0...1) ?? o.alpha
            o.eps = try reader.float("eps", in: 0...1) ?? o.eps
            o.weightDecay = try reader.float("weight_decay", in: 0...1e6) ?? o.weightDecay
            o.momentum = try reader.float("momentum", in: 0...1) ?? o.momentum
            o.centered = try reader.bool("centered") ?? o.centered
            try reader.finish(known: ["name", "lr", "alpha", "eps", "weight_decay", "momentum", "centered"])
            config = .rmsprop(o)
        case .adam(var o):
            o.lr = try reader.float("lr", in: positive) ?? o.lr
            if let betas = reader.node("betas") {
                guard let pair = betas.sequence?.compactMap({ $0.float }), pair.count == 2,
                      pair.allSatisfy({ (0..<1).contains($0) }) else {
                    throw reader.fail("betas", betas, "expected two numbers in [0, 1), e.g. [0.9, 0.999]")
                }
                o.beta1 = Float(pair[0])
                o.beta2 = Float(pair[1])
            }
            o.eps = try reader.float("eps", in: 0...1) ?? o.eps
            o.weightDecay = try reader.float("weight_decay", in: 0...1e6) ?? o.weightDecay
            o.amsgrad = try reader.bool("amsgrad") ?? o.amsgrad
            try reader.finish(known: ["name", "lr", "betas", "eps", "weight_decay", "amsgrad"])
            config = .adam(o)
        }
        return config
    }

    /// An optimizer with `torch.optim`'s defaults, by job-file name.
    static func defaultOptimizer(_ name: String) -> OptimizerConfig? {
        switch name {
        case "sgd": .sgd(SGD.Options())
        case "rmsprop": .rmsprop(RMSProp.Options())
        case "adam": .adam(Adam.Options())
        case "adamw": .adam(Adam.Options.adamW)
        default: nil
        }
    }

    private func unknownOptimizer(_ name: String, _ node: Node) -> InputError {
        InputError("\(JobReader.location(file, node))optimizer: unknown optimizer '\(name)'; use sgd, rmsprop, adam or adamw")
    }

    private func schedule(_ reader: inout JobReader) throws -> Schedule {
        var schedule = Schedule()
        let name = try reader.string("name") ?? "constant"
        switch name {
        case "constant":
            schedule.shape = .constant
        case "step":
            guard let size = try reader.int("step_size", minimum: 1) else {
                throw reader.fail("step_size", nil, "missing; a step schedule needs step_size")
            }
            schedule.shape = .step(stepSize: size, gamma: try reader.double("gamma", in: 0...1) ?? 0.1)
        case "exponential":
            guard let gamma = try reader.double("gamma", in: 0...1) else {
                throw reader.fail("gamma", nil, "missing; an exponential schedule needs gamma")
            }
            schedule.shape = .exponential(gamma: gamma)
        case "cosine":
            guard let period = try reader.int("t_max", minimum: 1) else {
                throw reader.fail("t_max", nil, "missing; a cosine schedule needs t_max (epochs or steps to anneal over)")
            }
            schedule.shape = .cosine(period: period, minimum: try reader.double("eta_min", in: 0...1e6) ?? 0)
        default:
            throw reader.fail("name", nil, "unknown schedule '\(name)'; use constant, step, exponential or cosine")
        }
        schedule.warmup = try reader.int("warmup", minimum: 0) ?? 0
        schedule.warmupStartFactor = try reader.double("warmup_start_factor", in: 1e-12...1) ?? schedule.warmupStartFactor
        if let unit = try reader.string("unit") {
            guard let value = Schedule.Unit(rawValue: unit) else {
                throw reader.fail("unit", nil, "unknown unit '\(unit)'; use epoch or step")
            }
            schedule.unit = value
        }
        try reader.finish(known: ["name", "step_size", "gamma", "t_max", "eta_min", "warmup", "warmup_start_factor",
                                  "unit"])
        return schedule
    }

    private func data(_ reader: inout JobReader) throws -> (DataSource, UInt64?) {
        let seed = try reader.int("seed", minimum: 0).map(UInt64.init)
        let source: DataSource
        let known: [String]
        if let builtin = try reader.string("builtin") {
            switch builtin {
            case "xor":
                source = .xor
                known = ["builtin"]
            case "spirals":
                source = .spirals(samples: try reader.int("samples", minimum: 2) ?? 1000,
                                  classes: try reader.int("classes", minimum: 2) ?? 2,
                                  noise: try reader.double("noise", in: 0...100) ?? 0.05)
                known = ["builtin", "samples", "classes", "noise", "seed"]
            case "blobs":
                source = .blobs(samples: try reader.int("samples", minimum: 2) ?? 1000,
                                classes: try reader.int("classes", minimum: 2) ?? 3,
                                features: try reader.int("features", minimum: 1) ?? 2,
                                noise: try reader.double("noise", in: 0...100) ?? 1)
                known = ["builtin", "samples", "classes", "features", "noise", "seed"]
            case "regression":
                source = .regression(samples: try reader.int("samples", minimum: 2) ?? 1000,
                                     features: try reader.int("features", minimum: 1) ?? 4,
                                     noise: try reader.double("noise", in: 0...100) ?? 0.1)
                known = ["builtin", "samples", "features", "noise", "seed"]
            default:
                throw reader.fail("builtin", nil, "unknown data set '\(builtin)'; use xor, spirals, blobs or regression")
            }
        } else if let features = try reader.string("features") {
            guard let targets = try reader.string("targets") else {
                throw reader.fail("targets", nil, "missing; npy data needs both features and targets files")
            }
            source = .npy(features: resolve(features), targets: resolve(targets))
            known = ["features", "targets"]
        } else if let images = try reader.string("images") {
            guard let labels = try reader.string("labels") else {
                throw reader.fail("labels", nil, "missing; IDX data needs both images and labels files")
            }
            source = .idx(images: resolve(images), labels: resolve(labels))
            known = ["images", "labels"]
        } else if let csv = try reader.string("csv") {
            guard let target = try reader.string("target") else {
                throw reader.fail("target", nil, "missing; name the CSV column that holds the targets")
            }
            source = .csv(path: resolve(csv), target: target)
            known = ["csv", "target"]
        } else {
            throw InputError("\(file): data needs one of builtin (xor, spirals, blobs, regression), "
                + "features + targets (.npy), csv + target, or images + labels (MNIST's IDX files)")
        }
        try reader.finish(known: known)
        return (source, seed)
    }

    private func resolve(_ path: String) -> String {
        path.hasPrefix("/") || folder.isEmpty ? path : "\(folder)/\(path)"
    }
}
