import Engine
import Wire

/// The weights a worker holds and the step they are of, taking each form the coordinator sends them in: whole, part
/// by part for the next step (kept apart, since this step's micro-shards may
/// still come), or in the coordinator's shared region.
final class WorkerWeights {
    private(set) var parameters: Buffer<Float>
    /// The step whose weights `parameters` hold (nil: none usable).
    private(set) var step: UInt64?
    private let incoming: IncomingWeights
    /// The coordinator's weights region, mapped read-only (nil: weights come as messages).
    private let region: SharedRegion?

    init(parts: PartSplit, region: SharedRegion?) {
        parameters = Buffer<Float>(count: parts.parameterCount)
        incoming = IncomingWeights(parts: parts)
        self.region = region
    }

    /// Sharded layout: `parameters` now hold step `step`'s weights, made here from the means of the step before (or
    /// sent whole with the optimizer's state).
    func holdOwn(step: UInt64) { self.step = step }

    /// Sharded layout: `made` holds step `step`'s weights; they are held from now, and `made` gets the old buffer.
    func adopt(_ made: inout Buffer<Float>, step: UInt64) {
        swap(&parameters, &made)
        self.step = step
    }

    /// Takes `payload`, one of the weights' messages, of step `step`. Returns the problem to report to the coordinator
    /// (the weights are then unusable until whole ones come), or nil; throws when it can never work.
    func take(_ payload: Payload, step: UInt64) throws -> String? {
        switch payload {
        case .weights(let frame):
            frame.copy(into: parameters.pointer)
        case .weightsPart(let first, let frame):
            incoming.take(frame, from: first, step: step)
            return nil
        case .weightsFromParts:
            self.step = nil
            if let problem = incoming.missing(step: step) { return problem }
            swap(&parameters, &incoming.weights)
            incoming.clear()
        case .weightsInRegion:
            guard let region else {
                throw ClusterError("the coordinator said step \(step)'s weights are in a shared region this worker has "
                    + "not mapped")
            }
            UnsafeMutableRawPointer(parameters.pointer).copyMemory(from: region.slot(0).baseAddress!,
                                                                   byteCount: 4 * parameters.count)
        default:
            preconditionFailure("not a weights message: \(payload)")
        }
        self.step = step
        return nil
    }
}

extension Payload {
    /// Whether this is one of the forms the weights come in.
    var carriesWeights: Bool {
        switch self {
        case .weights, .weightsPart, .weightsFromParts, .weightsInRegion: true
        default: false
        }
    }
}
