import Engine
import Platform
extension Job {
    /// The job as a job file (JSON, which is YAML) that parses back to an equal `Job`: every value explicit, every
    /// Float written as its exact decimal, data paths absolute. This is what a coordinator sends its workers.
    package var canonicalText: String {
        func number(_ value: Float) -> String { "\(Double(value))" }
        func number(_ value: Double) -> String { "\(value)" }
        func string(_ text: String) -> String {
            "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let layers = model.layers.map { layer -> String in
            var entry = "{\"units\": \(layer.units), \"activation\": \"\(layer.activation)\""
            if case .leakyReLU(let slope) = layer.activation { entry += ", \"negative_slope\": \(number(slope))" }
            return entry + "}"
        }
        let optimizer: String
        switch options.optimizer {
        case .sgd(let o):
            optimizer = "{\"name\": \"sgd\", \"lr\": \(number(o.lr)), \"momentum\": \(number(o.momentum)), "
                + "\"dampening\": \(number(o.dampening)), \"nesterov\": \(o.nesterov), "
                + "\"weight_decay\": \(number(o.weightDecay))}"
        case .rmsprop(let o):
            optimizer = "{\"name\": \"rmsprop\", \"lr\": \(number(o.lr)), \"alpha\": \(number(o.alpha)), "
                + "\"eps\": \(number(o.eps)), \"weight_decay\": \(number(o.weightDecay)), "
                + "\"momentum\": \(number(o.momentum)), \"centered\": \(o.centered)}"
        case .adam(let o):
            optimizer = "{\"name\": \"\(o.decoupledWeightDecay ? "adamw" : "adam")\", \"lr\": \(number(o.lr)), "
                + "\"betas\": [\(number(o.beta1)), \(number(o.beta2))], \"eps\": \(number(o.eps)), "
                + "\"weight_decay\": \(number(o.weightDecay)), \"amsgrad\": \(o.amsgrad)}"
        }
        let s = options.schedule
        var schedule: String
        switch s.shape {
        case .constant: schedule = "{\"name\": \"constant\""
        case .step(let size, let gamma): schedule = "{\"name\": \"step\", \"step_size\": \(size), \"gamma\": \(number(gamma))"
        case .exponential(let gamma): schedule = "{\"name\": \"exponential\", \"gamma\": \(number(gamma))"
        case .cosine(let period, let minimum):
            schedule = "{\"name\": \"cosine\", \"t_max\": \(period), \"eta_min\": \(number(minimum))"
        }
        schedule += ", \"warmup\": \(s.warmup), \"warmup_start_factor\": \(number(s.warmupStartFactor)), "
            + "\"unit\": \"\(s.unit.rawValue)\"}"
        let seedText = dataSeed.map { ", \"seed\": \($0)" } ?? ""
        let dataText: String
        switch data {
        case .xor: dataText = "{\"builtin\": \"xor\"}"
        case .spirals(let n, let c, let noise):
            dataText = "{\"builtin\": \"spirals\", \"samples\": \(n), \"classes\": \(c), \"noise\": \(number(noise))\(seedText)}"
        case .blobs(let n, let c, let f, let noise):
            dataText = "{\"builtin\": \"blobs\", \"samples\": \(n), \"classes\": \(c), \"features\": \(f), "
                + "\"noise\": \(number(noise))\(seedText)}"
        case .regression(let n, let f, let noise):
            dataText = "{\"builtin\": \"regression\", \"samples\": \(n), \"features\": \(f), \"noise\": \(number(noise))\(seedText)}"
        case .npy(let features, let targets):
            dataText = "{\"features\": \(string(features)), \"targets\": \(string(targets))}"
        case .csv(let path, let target):
            dataText = "{\"csv\": \(string(path)), \"target\": \(string(target))}"
        case .idx(let images, let labels):
            dataText = "{\"images\": \(string(images)), \"labels\": \(string(labels))}"
        }
        // The one-value settings, from their table, with the text's line breaks where they always were.
        var settings = ""
        for setting in JobSetting.allCases {
            guard let text = setting.text(of: self) else { continue }
            settings += text + (setting.endsCanonicalLine ? ",\n " : ", ")
        }
        return """
            {"model": {"inputs": \(model.inputs), "layers": [\(layers.joined(separator: ", "))]},
             "loss": "\(loss.rawValue)", "optimizer": \(optimizer), "schedule": \(schedule),
             \(settings)"data": \(dataText)}
            """
    }
}
