/// The six type-specific words of a header, by name, for each message type: `words` writes them and
/// `init(checking:)` reads and range-checks them, side by side, so a field is defined in one place. The table of
/// messages in docs/distributed.md is tested against `names`.
protocol HeaderFields {
    static var type: MessageType { get }
    /// The fields' names in order, as the protocol table lists them.
    static var names: [String] { get }
    var words: [UInt64] { get }
    init(checking words: [UInt64]) throws(WireError)
}

struct HelloFields: HeaderFields {
    static let type = MessageType.hello
    static let names = ["cores", "pid", "previous worker id"]
    var cores: UInt64, pid: UInt64, previousWorker: UInt64

    init(cores: Int, pid: Int32, previousWorker: UInt32) {
        (self.cores, self.pid, self.previousWorker) = (UInt64(cores), UInt64(UInt32(bitPattern: pid)), UInt64(previousWorker))
    }

    var words: [UInt64] { [cores, pid, previousWorker] }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[0] >= 1, f[0] <= 4096 else { throw .badField(.hello, "cores \(f[0]) is not 1…4096") }
        (cores, pid, previousWorker) = (f[0], f[1], f[2])
    }
}

struct JobFields: HeaderFields {
    static let type = MessageType.job
    static let names = ["parameter count", "micro-shards at most", "reduction", "heartbeat ms", "weights region",
                        "weights region token"]
    var parameterCount: Int, maximumMicroShards: Int, exact: Bool, heartbeatMilliseconds: UInt64
    var weightsRegion: RegionOffer?

    init(parameterCount: Int, maximumMicroShards: Int, exact: Bool, heartbeat: Duration, weightsRegion: RegionOffer?) {
        (self.parameterCount, self.maximumMicroShards, self.exact) = (parameterCount, maximumMicroShards, exact)
        heartbeatMilliseconds = UInt64(max(1, (heartbeat / .milliseconds(1)).rounded()))
        self.weightsRegion = weightsRegion
    }

    var words: [UInt64] {
        [UInt64(parameterCount), UInt64(maximumMicroShards), exact ? 0 : 1, heartbeatMilliseconds,
         weightsRegion?.packed ?? 0, weightsRegion?.token ?? 0]
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[0] >= 1, f[0] <= 1 << 31, f[1] >= 1, f[1] <= 1 << 20, f[2] <= 1, f[3] >= 1, f[3] <= 3_600_000 else {
            throw .badField(.job, "parameter count \(f[0]), micro-shards \(f[1]), reduction \(f[2]), heartbeat "
                + "\(f[3]) ms out of range")
        }
        guard f[4] == 0 || RegionOffer(packed: f[4], token: f[5]) != nil else {
            throw .badField(.job, "weights region \(f[4] >> 32)/\(f[4] & 0xFFFF_FFFF) out of range")
        }
        (parameterCount, maximumMicroShards, exact, heartbeatMilliseconds) = (Int(f[0]), Int(f[1]), f[2] == 0, f[3])
        weightsRegion = RegionOffer(packed: f[4], token: f[5])
    }
}

struct WeightsFields: HeaderFields {
    /// How the weights come: the word's values 0, 1 and 3 (2, their change from an earlier step's, is no longer
    /// sent: parts beat it where it paid, on slow links).
    /// Sharded layout: 4, the worker's own, updated from the last step's means; 5, the Floats followed by the
    /// optimizer's state buffers, for a worker that has not followed every update.
    enum Form: Equatable {
        case floats, inRegion, fromParts, fromMeans, withState
    }

    static let type = MessageType.weights
    static let names = ["parameter count", "form", "state buffers", "optimizer steps", "replica key"]
    var parameterCount: UInt64, form: Form
    var stateBuffers: UInt64 = 0, optimizerSteps: UInt64 = 0
    /// Sharded layout (forms 4 and 5): the seed of the key this worker digests its weights with for the step
    /// (`cdigest_make_key`), drawn for it alone; 0 otherwise.
    var replicaKey: UInt64 = 0
    /// Up to 3 today (Adam with AMSGrad; RMSProp centered with momentum), and room for one more.
    static let maximumStateBuffers: UInt64 = 4

    init(parameterCount: Int, form: Form, stateBuffers: Int = 0, optimizerSteps: Int = 0, replicaKey: UInt64 = 0) {
        self.parameterCount = UInt64(parameterCount)
        self.form = form
        (self.stateBuffers, self.optimizerSteps, self.replicaKey) = (UInt64(stateBuffers), UInt64(optimizerSteps), replicaKey)
    }

    var words: [UInt64] {
        let code: UInt64 = switch form {
        case .floats: 0
        case .inRegion: 1
        case .fromParts: 3
        case .fromMeans: 4
        case .withState: 5
        }
        return [parameterCount, code, stateBuffers, optimizerSteps, replicaKey]
    }

    init(checking f: [UInt64]) throws(WireError) {
        parameterCount = f[0]
        switch f[1] {
        case 0: form = .floats
        case 1: form = .inRegion
        case 3: form = .fromParts
        case 4: form = .fromMeans
        case 5: form = .withState
        default:
            throw .badField(.weights, "form \(f[1]) is not 0 (Floats), 1 (region), 3 (parts), 4 (means) or 5 (with "
                + "the optimizer's state)")
        }
        guard f[2] <= Self.maximumStateBuffers, f[2] == 0 || form == .withState, f[3] < 1 << 40 else {
            throw .badField(.weights, "\(f[2]) state buffers (at most \(Self.maximumStateBuffers), only with form 5) or optimizer steps \(f[3])")
        }
        guard f[4] != 0 || (form != .fromMeans && form != .withState), f[4] == 0 || form == .fromMeans || form == .withState
        else {
            throw .badField(.weights, "replica key \(f[4]) with form \(f[1]): forms 4 and 5 carry one, never 0, and no other form does")
        }
        (stateBuffers, optimizerSteps, replicaKey) = (f[2], f[3], f[4])
    }
}

struct AssignmentFields: HeaderFields {
    static let type = MessageType.assignment
    static let names = ["epoch", "batch", "attempt", "result slot + 1", "in parts (1) or packed Floats (3)", "traced"]
    var epoch: UInt64, batch: UInt64, attempt: UInt64, resultSlot: Int?, inParts: Bool, packsFloats: Bool, traced: Bool

    init(epoch: UInt64, batch: UInt64, attempt: UInt64, resultSlot: Int?, inParts: Bool, packsFloats: Bool = false,
         traced: Bool = false) {
        (self.epoch, self.batch, self.attempt, self.resultSlot, self.inParts) = (epoch, batch, attempt, resultSlot, inParts)
        (self.packsFloats, self.traced) = (packsFloats, traced)
    }

    var words: [UInt64] {
        [epoch, batch, attempt, resultSlot.map { UInt64($0) + 1 } ?? 0, inParts ? (packsFloats ? 3 : 1) : 0, traced ? 1 : 0]
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[3] <= UInt64(SharedRegion.resultSlots), f[4] <= 1 || f[4] == 3, f[3] == 0 || f[4] == 0, f[5] <= 1 else {
            throw .badField(.assignment, "result slot \(f[3]) beyond the region's \(SharedRegion.resultSlots), "
                + "or parts word \(f[4]) not 0, 1 or 3, or trace flag \(f[5]) not 0 or 1, or both a slot and parts")
        }
        (epoch, batch, attempt, resultSlot, inParts) = (f[0], f[1], f[2], f[3] == 0 ? nil : Int(f[3]) - 1, f[4] != 0)
        (packsFloats, traced) = (f[4] == 3, f[5] == 1)
    }
}

/// A result's flags word: these bits, the slot of its result region in bit 3, the count of micro-shards' Floats in
/// bits 5-7 and the exact loss's window in bits 8-15.
struct GradientFlags: OptionSet {
    let rawValue: UInt64
    static let fast = GradientFlags(rawValue: 1)
    static let overflowed = GradientFlags(rawValue: 2)
    static let inRegion = GradientFlags(rawValue: 4)
    static let packed = GradientFlags(rawValue: 16)
    static let inParts = GradientFlags(rawValue: 1 << 16)
    /// The flags above, together.
    static let all: GradientFlags = [.fast, .overflowed, .inRegion, .packed, .inParts]
    /// Every bit a flags word may have set: the flags, the slot, the Floats' count, the loss window and (bits 32-63)
    /// the worker's computing time in µs.
    static let legal: UInt64 = 0xFFFF_FFFF_0001_FFFF
}

struct GradientFields: HeaderFields {
    static let type = MessageType.gradient
    static let names = ["samples", "correct", "loss high", "loss low", "flags", "attempt"]
    var samples: UInt64, correct: UInt64, lossHigh: Int64, lossLow: Int64
    var flags: GradientFlags, regionSlot: Int?, floatShards: Int, lossWindow: Int8
    var attempt: UInt64
    /// How long the worker computed the result, in µs (at most 2^32 − 1: 71 minutes): what `--log-every`'s
    /// stragglers line splits a worker's time by.
    var computeMicroseconds: UInt64 = 0

    var exact: Bool { !flags.contains(.fast) }

    init(samples: Int, correct: Int, lossHigh: Int64, lossLow: Int64, lossWindow: Int8, exact: Bool, overflowed: Bool,
         attempt: UInt64, regionSlot: Int?, packed: Bool, floatShards: Int, inParts: Bool, computeMicroseconds: UInt64 = 0) {
        precondition((0...7).contains(floatShards), "\(floatShards) Float micro-shards do not fit the flags' three bits")
        (self.samples, self.correct, self.lossHigh, self.lossLow) = (UInt64(samples), UInt64(correct), lossHigh, lossLow)
        flags = [exact ? [] : .fast, overflowed ? .overflowed : [], regionSlot == nil ? [] : .inRegion,
                 packed ? .packed : [], inParts ? .inParts : []]
        (self.regionSlot, self.floatShards, self.lossWindow, self.attempt) = (regionSlot, floatShards, lossWindow, attempt)
        self.computeMicroseconds = min(computeMicroseconds, UInt64(UInt32.max))
    }

    var words: [UInt64] {
        let word = flags.rawValue | UInt64(regionSlot ?? 0) << 3 | UInt64(floatShards) << 5
            | UInt64(UInt8(bitPattern: lossWindow)) << 8 | computeMicroseconds << 32
        return [samples, correct, UInt64(bitPattern: lossHigh), UInt64(bitPattern: lossLow), word, attempt]
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[4] & ~GradientFlags.legal == 0 else {
            throw .badField(.gradient, "flags \(f[4]) beyond bits 0 (fast), 1 (overflowed), 2-3 (in the result "
                + "region, its slot), 4 (packed), 5-7 (micro-shard Floats), 8-15 (loss window), 16 (in parts) and 32-63 "
                + "(computing µs)")
        }
        flags = GradientFlags(rawValue: f[4]).intersection(.all)
        regionSlot = flags.contains(.inRegion) ? Int(f[4] >> 3 & 1) : nil
        floatShards = Int(f[4] >> 5 & 7)
        lossWindow = Int8(truncatingIfNeeded: f[4] >> 8)
        computeMicroseconds = f[4] >> 32
        (samples, correct, lossHigh, lossLow, attempt) = (f[0], f[1], Int64(bitPattern: f[2]), Int64(bitPattern: f[3]), f[5])
        try check()
    }

    /// The flags agree with each other and the counts with each other.
    private func check() throws(WireError) {
        let packed = flags.contains(.packed)
        if flags.contains(.inParts) {
            guard regionSlot == nil, !packed, floatShards == 0 else {
                throw .badField(.gradient, "values in parts and also in the frame, packed, as Floats or in the region")
            }
        }
        if packed {
            guard exact, regionSlot == nil, floatShards == 0 else {
                throw .badField(.gradient, "packed values of a fast sum, in the result region or as Floats")
            }
        }
        guard floatShards <= GradientFrame.maximumFloatShards, floatShards == 0 || exact else {
            let limit = exact ? "(at most \(GradientFrame.maximumFloatShards))" : "in a fast sum"
            throw .badField(.gradient, "\(floatShards) micro-shards' Floats \(limit)")
        }
        guard samples >= 1, samples <= 1 << 40, correct <= samples else {
            throw .badField(.gradient, "samples \(samples) and correct \(correct) are inconsistent")
        }
        // A fast loss sum that is not finite comes with the overflowed flag (the run diverged); values that are not
        // finite are the update's to find, which stops the run as diverged, as an exact sum's Floats do.
        if !exact && !flags.contains(.overflowed) {
            let loss = Double(bitPattern: UInt64(bitPattern: lossHigh))
            guard loss.isFinite else {
                throw .badField(.gradient, "loss sum \(loss) is not finite and the overflowed flag is not set")
            }
        }
    }
}

struct ReadyFields: HeaderFields {
    static let type = MessageType.ready
    static let names = ["has the data", "result region pid", "result region descriptor", "result region token",
                        "maps the weights region", "products fingerprint"]
    var hasData: Bool, region: RegionOffer?, readsWeightsRegion: Bool, products: UInt64

    init(hasData: Bool, region: RegionOffer?, readsWeightsRegion: Bool, products: UInt64) {
        (self.hasData, self.region, self.readsWeightsRegion, self.products) = (hasData, region, readsWeightsRegion, products)
    }

    var words: [UInt64] {
        [hasData ? 1 : 0, region.map { UInt64($0.pid) } ?? 0, region.map { UInt64($0.descriptor) } ?? 0,
         region?.token ?? 0, readsWeightsRegion ? 1 : 0, products]
    }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[0] <= 1 else { throw .badField(.ready, "has-data flag \(f[0]) is not 0 or 1") }
        guard f[1] <= UInt64(Int32.max), f[2] <= UInt64(Int32.max), f[4] <= 1 else {
            throw .badField(.ready, "result region pid \(f[1]) or descriptor \(f[2]), or weights flag \(f[4]), "
                + "out of range")
        }
        hasData = f[0] == 1
        region = f[1] == 0 ? nil : RegionOffer(pid: Int32(f[1]), descriptor: Int32(f[2]), token: f[3])
        (readsWeightsRegion, products) = (f[4] == 1, f[5])
    }
}

struct DataFields: HeaderFields {
    static let type = MessageType.data
    static let names = ["samples", "feature width", "target width"]
    var samples: UInt64, featureWidth: UInt64, targetWidth: UInt64

    init(samples: Int, featureWidth: Int, targetWidth: Int) {
        (self.samples, self.featureWidth, self.targetWidth) = (UInt64(samples), UInt64(featureWidth), UInt64(targetWidth))
    }

    var words: [UInt64] { [samples, featureWidth, targetWidth] }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[0] >= 1, f[1] >= 1, f[2] >= 1, f[0] < 1 << 40, f[1] < 1 << 24, f[2] < 1 << 24 else {
            throw .badField(.data, "samples \(f[0]), widths \(f[1]) and \(f[2]) out of range")
        }
        (samples, featureWidth, targetWidth) = (f[0], f[1], f[2])
    }
}

struct ShutdownFields: HeaderFields {
    static let type = MessageType.shutdown
    static let names = ["disposition"]
    var disposition: Disposition

    init(disposition: Disposition) { self.disposition = disposition }

    var words: [UInt64] { [disposition.rawValue] }

    init(checking f: [UInt64]) throws(WireError) {
        guard let disposition = Disposition(rawValue: f[0]) else {
            throw .badField(.shutdown, "disposition \(f[0]) is not 0, 1 or 2")
        }
        self.disposition = disposition
    }
}

struct WeightsPartFields: HeaderFields {
    static let type = MessageType.weightsPart
    static let names = ["first parameter", "parameter count"]
    var first: UInt64, count: UInt64

    init(part: Range<Int>) { (first, count) = (UInt64(part.lowerBound), UInt64(part.count)) }

    var words: [UInt64] { [first, count] }

    init(checking f: [UInt64]) throws(WireError) { (first, count) = (f[0], f[1]) }
}

struct GradientPartFields: HeaderFields {
    /// What a part's frame holds: the word's values 0 to 3.
    enum Form: UInt64 {
        case floats = 0, packedLimbs = 1, packedLimbsDiverged = 2, packedFloats = 3
    }

    static let type = MessageType.gradientPart
    static let names = ["attempt", "array", "arrays", "first parameter", "parameter count", "form"]
    var attempt: UInt64, array: UInt64, arrays: UInt64, first: UInt64, count: UInt64, form: Form

    init(attempt: UInt64, array: Int, arrays: Int, part: Range<Int>, form: Form) {
        (self.attempt, self.array, self.arrays) = (attempt, UInt64(array), UInt64(arrays))
        (first, count, self.form) = (UInt64(part.lowerBound), UInt64(part.count), form)
    }

    var words: [UInt64] { [attempt, array, arrays, first, count, form.rawValue] }

    init(checking f: [UInt64]) throws(WireError) {
        guard f[2] >= 1, f[2] <= UInt64(Codec.maximumPartArrays), f[1] < f[2], let form = Form(rawValue: f[5]),
              form == .floats || form == .packedFloats || f[2] == 1 else {
            throw .badField(.gradientPart, "array \(f[1]) of \(f[2]) (at most \(Codec.maximumPartArrays)), form \(f[5]) "
                + "(0 Floats, 1 packed limbs, 2 those of a diverged sum, 3 packed Floats; limbs the only array)")
        }
        (attempt, array, arrays, first, count, self.form) = (f[0], f[1], f[2], f[3], f[4], form)
    }
}

extension MessageType {
    /// The names of this type's header fields, in order.
    var fieldNames: [String] {
        switch self {
        case .hello: HelloFields.names
        case .job: JobFields.names
        case .weights: WeightsFields.names
        case .assignment: AssignmentFields.names
        case .gradient: GradientFields.names
        case .heartbeat, .error: []  // no fields
        case .shutdown: ShutdownFields.names
        case .ready: ReadyFields.names
        case .data: DataFields.names
        case .weightsPart: WeightsPartFields.names
        case .gradientPart: GradientPartFields.names
        case .peers: PeersFields.names
        case .sumOrder: SumOrderFields.names
        case .meanPart: MeanPartFields.names
        case .refuted: RefutedFields.names
        case .spans: SpansFields.names
        case .spotCheck: SpotCheckFields.names
        case .spotValues: SpotValuesFields.names
        }
    }
}
