import CExactSum
import Synchronization

/// A decoded message: its header and its checked payload.
package struct Envelope {
    package let header: Header
    package let payload: Payload

    package init(header: Header, payload: Payload) {
        self.header = header
        self.payload = payload
    }
}

/// Checked payloads. Large ones keep their frame and are read in place.
package enum Payload {
    case hello(fields: [String: String])
    /// `weightsRegion`: where the coordinator's weights region is, for a worker on its machine.
    case job(description: [UInt8], parameterCount: Int, maximumMicroShards: Int, exact: Bool, heartbeat: Duration,
             weightsRegion: RegionOffer?)
    case weights(FloatFrame)
    /// The step's weights are in the coordinator's weights region.
    case weightsInRegion
    /// The step's weights are the `weightsPart`s of the step sent before.
    case weightsFromParts
    /// One part of the step's weights, from parameter `first` on.
    case weightsPart(first: Int, FloatFrame)
    /// `resultSlot`: the slot of the worker's `SharedRegion` its result may go to (nil: send the values);
    /// `inParts`: send the values in `gradientPart`s, their Floats packed if `packsFloats`.
    case assignment(epoch: UInt64, batch: UInt64, attempt: UInt64, ranges: [Range<Int>], resultSlot: Int?, inParts: Bool,
                    packsFloats: Bool, traced: Bool)
    /// Part of array `array` of `arrays` of a result, from parameter `first` on.
    case gradientPart(attempt: UInt64, array: Int, arrays: Int, first: Int, PartValues)
    case gradient(GradientFrame)
    case heartbeat
    case error(String)
    case shutdown(String, Disposition)
    /// `region`: the worker's result region; `readsWeightsRegion`: it mapped the coordinator's weights region.
    case ready(hasData: Bool, region: RegionOffer?, readsWeightsRegion: Bool, products: UInt64)
    case data(samples: Int, featureWidth: Int, targetWidth: Int, FloatFrame)
    /// Sharded layout: the step's weights are this worker's own, updated from the last step's means.
    /// `replicaKey` seeds the key the worker digests them with for this step's result (never 0).
    case weightsFromMeans(replicaKey: UInt64)
    /// Sharded layout: the weights, then `stateBuffers` optimizer state buffers, all Float32 of the parameters'
    /// layout, and the optimizer's step count.
    case weightsWithState(FloatFrame, stateBuffers: Int, optimizerSteps: Int, replicaKey: UInt64)
    case peers(PeerList)
    case sumOrder(OrderedSum)
    case meanPart(MeanPart)
    case refuted(worker: UInt32, attempt: UInt64, part: Int, reason: String)
    case spans(TimelineReport)
    case spotCheck(SpotCheck)
    case spotValues(SpotValues)
}

/// A result's values copied into 64-byte-aligned memory of 17 bytes per parameter, in a buffer a pool reuses: a
/// packed exact sum unpacked into `cexact_merge`'s layout, or micro-shards' Floats off their alignment. A result
/// stays held until its step's mean, so a coordinator needs a few at most, each megabytes.
package final class UnpackedSum: @unchecked Sendable {
    package let bytes: UnsafeMutableRawBufferPointer
    private static let pool = Mutex<[UnsafeMutableRawBufferPointer]>([])

    init(count: Int) {
        let size = GradientFrame.exactBytesPerParameter * count
        let reused = Self.pool.withLock { free -> UnsafeMutableRawBufferPointer? in
            guard let index = free.firstIndex(where: { $0.count == size }) else { return nil }
            return free.remove(at: index)
        }
        bytes = reused ?? .allocate(byteCount: size, alignment: 64)
    }

    deinit {
        // Kept for the next result (a few at most: a coordinator holds one per worker per step).
        let kept = Self.pool.withLock { free -> Bool in
            guard free.count < 4 else { return false }
            free.append(bytes)
            return true
        }
        if !kept { bytes.deallocate() }
    }
}

/// Where a process keeps a `SharedRegion` for the other side to map: a worker's result region (in `ready`), the
/// coordinator's weights region (in `job`).
package struct RegionOffer: Equatable, Sendable {
    package let pid: Int32
    package let descriptor: Int32
    package let token: UInt64

    package init(pid: Int32, descriptor: Int32, token: UInt64) {
        self.pid = pid
        self.descriptor = descriptor
        self.token = token
    }

    /// pid and descriptor in one word, as `job` carries them.
    var packed: UInt64 { UInt64(UInt32(bitPattern: pid)) << 32 | UInt64(UInt32(bitPattern: descriptor)) }

    init?(packed: UInt64, token: UInt64) {
        let pid = UInt32(packed >> 32), descriptor = UInt32(packed & 0xFFFF_FFFF)
        guard pid != 0, pid <= UInt32(Int32.max), descriptor <= UInt32(Int32.max) else { return nil }
        self.init(pid: Int32(pid), descriptor: Int32(descriptor), token: token)
    }
}

/// What a shutdown asks of a worker.
package enum Disposition: UInt64, Sendable {
    /// The run finished: exit 0.
    case finished = 0
    /// The run failed or was stopped: exit non-zero.
    case failed = 1
    /// This worker was declared lost; say hello again to rejoin.
    case rejoin = 2
}

/// A result part's values: Floats (a fast sum's, or one exact micro-shard's), or an exact sum's limbs packed as
/// `cexact_pack_range` packs them (unpacked, and checked, where they are used; `diverged`: the sum saw a NaN or ∞ —
/// at least the part that holds one says so — so its limbs mean nothing and the step stops the run).
package enum PartValues {
    case floats(FloatFrame)
    case packedLimbs(Message, diverged: Bool)
}

/// A frame of little-endian Float32 values, read in place.
package struct FloatFrame {
    package let message: Message
    package let count: Int

    /// Copies the values into `destination` (`count` elements).
    package func copy(into destination: UnsafeMutablePointer<Float>) {
        message.withUnsafeBytes { UnsafeMutableRawPointer(destination).copyMemory(from: $0.baseAddress!, byteCount: count * 4) }
    }

    /// The values where they lie, when aligned for Floats (libzmq's frames are, in practice); valid while the frame
    /// is kept. Nil: `copy(into:)` them.
    package var inPlace: UnsafePointer<Float>? {
        let bytes = message.withUnsafeBytes { $0.baseAddress }
        guard let bytes, Int(bitPattern: bytes) % MemoryLayout<Float>.alignment == 0 else { return nil }
        return bytes.assumingMemoryBound(to: Float.self)
    }
}

/// A worker's gradient sum: statistics from the header, values read in place from the frame.
package struct GradientFrame {
    package let samples: Int
    package let correct: Int
    /// Exact: the loss sum's (high, low) limbs and their window; fast: the loss sum's Float64 bits in `high`.
    package let lossHigh: Int64
    package let lossLow: Int64
    package let lossWindow: Int8
    package let exact: Bool
    package let overflowed: Bool
    /// The assignment's attempt this answers.
    package let attempt: UInt64
    /// Exact: `parameterCount` Int64 high limbs, as many low limbs, then as many Int8 windows
    /// (`exactBytesPerParameter` bytes each), or `floatShards` micro-shards' gradient sums of `parameterCount`
    /// Float32 each; fast: `parameterCount` Float32. Empty when the values are in a slot of the worker's result
    /// region.
    package let message: Message
    /// The slot of the worker's `SharedRegion` holding the values, when they are there.
    package let regionSlot: Int?
    /// Whether the frame carried the values packed (`cexact_pack`); they are then read from their unpacked copy.
    package let packed: Bool
    /// Whether the values came before in `gradientPart`s (the frame then holds no values: nothing, or the replica's digests).
    package let inParts: Bool
    /// Exact: 0 when the values are the sum's limbs; otherwise the assignment's micro-shards (at most
    /// `maximumFloatShards`), each one's Float gradient sum in turn — what a worker sends when that is no more
    /// bytes than limbs, saving it the pass into them and the coordinator their check.
    package let floatShards: Int
    /// How long the worker says it computed the result.
    package let computing: Duration
    /// Sharded layout: the digest of each part of the weights and then of each optimizer state buffer the worker
    /// computed from, as the step began, under the key the coordinator drew for it this step (`cdigest`); empty
    /// otherwise.
    package let replicaDigests: [UInt64]
    /// The values when not in the frame itself: in the region (`inRegion`) or copied, and what keeps them.
    private var otherValues: (bytes: UnsafeRawBufferPointer, owner: AnyObject)?

    /// Bytes per parameter of an exact frame: two Int64 limbs and a window byte.
    package static let exactBytesPerParameter = Int(CEXACT_BYTES_PER_PARAMETER)
    /// The most micro-shards an exact result may carry as Floats: as many as fit in the limbs' bytes.
    package static let maximumFloatShards = 4

    init(samples: Int, correct: Int, lossHigh: Int64, lossLow: Int64, lossWindow: Int8, exact: Bool,
         overflowed: Bool, attempt: UInt64, message: Message, regionSlot: Int?, packed: Bool = false,
         floatShards: Int = 0, inParts: Bool = false, copy: UnpackedSum? = nil, replicaDigests: [UInt64] = [],
         computing: Duration = .zero) {
        self.inParts = inParts
        self.replicaDigests = replicaDigests
        self.computing = computing
        self.samples = samples
        self.correct = correct
        self.lossHigh = lossHigh
        self.lossLow = lossLow
        self.lossWindow = lossWindow
        self.exact = exact
        self.overflowed = overflowed
        self.attempt = attempt
        self.message = message
        self.regionSlot = regionSlot
        self.packed = packed
        self.floatShards = floatShards
        otherValues = copy.map { (UnsafeRawBufferPointer($0.bytes), $0) }
    }

    /// This frame reading its values from `region`'s slot (which must be `regionSlot`'s, of the frame's size).
    package func inRegion(_ region: SharedRegion) -> GradientFrame {
        var frame = self
        frame.otherValues = (UnsafeRawBufferPointer(region.slot(regionSlot!)), region)
        return frame
    }

    package func withValues<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let otherValues { return try body(otherValues.bytes) }
        return try message.withUnsafeBytes(body)
    }
}
