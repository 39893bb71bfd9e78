import Engine
import Foundation
import Platform

/// Sizes checked before anything is allocated or generated: counts that would overflow, and the memory a job needs
/// against the memory there is. A job that cannot fit is refused in one line saying both, never aborted by the
/// allocator.
package enum ResourceCheck {
    /// Beyond these no run is meaningful, and products of them stay far from Int's range.
    package static let maximumEpochs = 1_000_000_000
    package static let maximumSteps = 1 << 40
    package static let maximumSize = 1 << 40

    /// Refuses lengths, sizes and models whose counts overflow or that cannot fit in memory; `samples` and the
    /// widths are the data's when known (nil: from the job, as for a built-in set before it is generated).
    package static func check(_ job: Job, samples: Int? = nil, featureWidth: Int? = nil, targetWidth: Int? = nil,
                             featureBytes: Int? = nil, available: Double? = ResourceCheck.availableBytes()) throws {
        let options = job.options
        switch options.length {
        case .epochs(let n) where n > maximumEpochs:
            throw InputError("epochs \(n) is beyond \(maximumEpochs); give fewer epochs")
        case .steps(let n) where n > maximumSteps:
            throw InputError("steps \(n) is beyond \(maximumSteps); give fewer steps")
        default: break
        }
        for (key, value) in [("batch_size", options.batchSize), ("micro_shard", options.microShardSize),
                             ("threads", options.threads)] where value > maximumSize {
            throw InputError("\(key) \(value) is beyond \(maximumSize)")
        }
        // A built-in set's width counts before it is generated (a job may leave model.inputs to the data).
        let inputs = Double(max(job.model.inputs, featureWidth ?? job.data.declaredFeatureWidth ?? 0, 1))
        var widths = [inputs]
        for (index, layer) in job.model.layers.enumerated() where Double(layer.units) > Double(maximumSize) {
            throw InputError("model.layers[\(index)].units \(layer.units) is beyond \(maximumSize)")
        }
        widths += job.model.layers.map { Double($0.units) }
        let parameters = zip(widths, widths.dropFirst()).reduce(0.0) { $0 + ($1.0 + 1) * $1.1 }
        guard parameters < Double(Int32.max) * 64 else {
            throw InputError("the model has \(Self.count(parameters)) parameters; shardtrain trains at most "
                + "\(Self.count(Double(Int32.max) * 64)); make the layers narrower or fewer")
        }
        guard let available else { return }
        let needed = estimate(job, parameters: parameters, widths: widths,
                              samples: Double(samples ?? job.data.declaredSamples ?? 0),
                              targetWidth: Double(targetWidth ?? 1), featureBytes: featureBytes.map(Double.init))
        guard needed.total <= available else {
            throw InputError("the job needs about \(bytes(needed.total)) of memory (\(needed.parts)) but "
                + "\(bytes(available)) is available here; lower batch_size, micro_shard, threads, the model's "
                + "width or the data's size")
        }
    }

    /// Bytes one process needs at most (the in-process trainer, or a worker with its two gradient sums).
    /// `featureBytes`: what the loaded features hold in this process's memory (mapped files hold none), when known.
    static func estimate(_ job: Job, parameters: Double, widths: [Double], samples: Double, targetWidth: Double,
                         featureBytes: Double? = nil) -> (total: Double, parts: String) {
        let options = job.options
        let exact = options.reduction == .exact
        // Weights, two gradient sums (exact: 17-byte fixed-point limbs), optimizer state (up to three moments).
        // Exact mode in-process also keeps a lone micro-shard's Floats.
        let model = parameters * Double(4 + 2 * GradientSum.bytesPerParameter(options.reduction) + 12 + (exact ? 4 : 0))
        // Per thread: activations and pre-activations of every layer, the input, targets and two backward buffers
        // for as many samples as a slice holds; exact mode also keeps four micro-shard gradients.
        var slice = Double(exact ? min(options.microShardSize, options.batchSize) : options.batchSize)
        if samples > 0 { slice = min(slice, samples) }  // a batch never holds more than the data
        let rows = widths[0] + targetWidth + 2 * widths.dropFirst().reduce(0, +) + 2 * (widths.max() ?? 0)
        let workspace = Double(options.threads) * (slice * (4 * rows + 8) + parameters * 4 * (exact ? 4 : 1))
        // The samples (features and targets) and the epoch's shuffled order.
        let data = (featureBytes ?? samples * widths[0] * 4) + samples * (targetWidth * 4 + 8)
        let parts = "model and optimizer \(bytes(model)), workspaces \(bytes(workspace)), data \(bytes(data))"
        return (model + workspace + data, parts)
    }

    /// The memory this process may still use: the smaller of the machine's available memory and what its cgroup
    /// (a container's limit, v2 or v1) leaves, not counting the file cache it holds (the kernel drops that first);
    /// nil when neither can be read.
    package static func availableBytes() -> Double? {
        var best: Double?
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") {
            best = kilobytes * 1024
        }
        if let limit = readNumber("/sys/fs/cgroup/memory.max"), let used = readNumber("/sys/fs/cgroup/memory.current") {
            let cache = statistic("/sys/fs/cgroup/memory.stat", "file") ?? 0
            best = min(best ?? .infinity, max(0, limit - (used - cache)))
        }
        // v1: the memory controller's folder for this process, from /proc/self/cgroup ("N:memory:/path").
        if let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.split(separator: ":").dropFirst().first == "memory" }),
           let path = line.split(separator: ":", maxSplits: 2).last {
            // In a container without a cgroup namespace of its own, its cgroup is mounted at the root instead.
            var folder = "/sys/fs/cgroup/memory" + (path == "/" ? "" : String(path))
            if readNumber(folder + "/memory.limit_in_bytes") == nil { folder = "/sys/fs/cgroup/memory" }
            // No limit reads as a number near 2^63.
            if let limit = readNumber(folder + "/memory.limit_in_bytes"), limit < 1e18,
               let used = readNumber(folder + "/memory.usage_in_bytes") {
                let cache = statistic(folder + "/memory.stat", "total_cache") ?? 0
                best = min(best ?? .infinity, max(0, limit - (used - cache)))
            }
        }
        return best
    }

    /// A `key value` line's value in a cgroup's memory.stat.
    private static func statistic(_ path: String, _ key: String) -> Double? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").lazy.compactMap { line -> Double? in
            let fields = line.split(separator: " ")
            return fields.count == 2 && fields[0] == key ? Double(fields[1]) : nil
        }.first
    }

    private static func readNumber(_ path: String) -> Double? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Double(text.trimmingCharacters(in: .whitespacesAndNewlines))  // "max" (no limit) reads as nil
    }

    static func bytes(_ value: Double) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"]
        var scaled = value, unit = 0
        while scaled >= 1000 && unit < units.count - 1 { scaled /= 1000; unit += 1 }
        return unit == 0 ? "\(Int(scaled)) bytes" : String(format: "%.1f %@", scaled, units[unit])
    }

    static func count(_ value: Double) -> String { value < 1e6 ? "\(Int(value))" : String(format: "%.3g", value) }
}

extension DataSource {
    /// The files the samples are read from (none for a built-in set).
    package var files: [String] {
        switch self {
        case .xor, .spirals, .blobs, .regression: []
        case .npy(let features, let targets): [features, targets]
        case .csv(let path, _): [path]
        case .idx(let images, let labels): [images, labels]
        }
    }

    /// Why these files should not be read as data (not regular files, or larger than `limit` bytes together);
    /// nil when they may. A worker asks this of paths a coordinator named before opening any.
    package func unreadableFiles(limit: Double?) -> String? {
        var total = 0.0
        for path in files {
            var info = stat()
            guard stat(path, &info) == 0 else { return "\(path) does not exist here" }
            guard info.st_mode & S_IFMT == S_IFREG else { return "\(path) is not a regular file" }
            total += Double(info.st_size)
        }
        if let limit, total > limit { return "its files hold \(ResourceCheck.bytes(total)), more than is available" }
        return nil
    }

    /// The sample count a built-in set declares (nil for files, whose size is known once read).
    var declaredSamples: Int? {
        switch self {
        case .xor: 4
        case .spirals(let samples, _, _), .blobs(let samples, _, _, _), .regression(let samples, _, _): samples
        case .npy, .csv, .idx: nil
        }
    }

    /// The feature width a built-in set declares (nil for files).
    var declaredFeatureWidth: Int? {
        switch self {
        case .xor, .spirals: 2
        case .blobs(_, _, let features, _), .regression(_, let features, _): features
        case .npy, .csv, .idx: nil
        }
    }
}
