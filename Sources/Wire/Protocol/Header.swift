/// The first frame of every message: 80 bytes, little-endian.
///
/// | offset | field | |
/// | --- | --- | --- |
/// | 0 | magic `u32` | 0x4E525453, "STRN" |
/// | 4 | version `u16` | `Header.protocolVersion` |
/// | 6 | type `u16` | `MessageType` |
/// | 8 | job `u64` | the job's id (0 in hello) |
/// | 16 | step `u64` | optimizer step the message belongs to |
/// | 24 | worker `u32` | the worker's id given at join (0 before) |
/// | 28 | frames `u32` | payload frames after this one |
/// | 32 | fields `6 × u64` | type-specific values, see `MessageType` |
package struct Header: Sendable, Equatable {
    package static let magic: UInt32 = 0x4E52_5453
    package static let protocolVersion: UInt16 = 17
    /// Steps a header may carry, exclusive.
    package static let stepLimit: UInt64 = 1 << 62
    package static let byteCount = 80

    package var type: MessageType
    package var job: UInt64
    package var step: UInt64
    package var worker: UInt32
    package var frames: UInt32
    package var fields: [UInt64]

    package init(type: MessageType, job: UInt64 = 0, step: UInt64 = 0, worker: UInt32 = 0, frames: UInt32 = 0,
                fields: [UInt64] = []) {
        self.type = type
        self.job = job
        self.step = step
        self.worker = worker
        self.frames = frames
        self.fields = fields + Array(repeating: 0, count: max(0, 6 - fields.count))
    }

    func encoded(version: UInt16 = Header.protocolVersion) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        put(Self.magic)
        put(version)
        put(type.rawValue)
        put(job)
        put(step)
        put(worker)
        put(frames)
        for field in fields.prefix(6) { put(field) }
        return bytes
    }

    /// Reads a header frame; every field is checked before use.
    static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Header {
        guard bytes.count == byteCount else { throw .headerSize(bytes.count) }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        let magic = get(0, UInt32.self)
        guard magic == Self.magic else { throw .magic(magic) }
        let version = get(4, UInt16.self)
        guard version == protocolVersion else { throw .version(theirs: version, ours: protocolVersion) }
        let rawType = get(6, UInt16.self)
        guard let type = MessageType(rawValue: rawType) else { throw .unknownType(rawType) }
        // A step every receiver can hold as an Int and count on from: no run takes 2^62 steps.
        let step = get(16, UInt64.self)
        guard step < Header.stepLimit else { throw .badField(type, "step \(step) beyond 2^62") }
        return Header(type: type, job: get(8, UInt64.self), step: step, worker: get(24, UInt32.self),
                      frames: get(28, UInt32.self), fields: (0..<6).map { get(32 + 8 * $0, UInt64.self) })
    }
}

/// What a message is. New types take new numbers; a receiver refuses numbers it does not know, by name.
package enum MessageType: UInt16, Sendable, CaseIterable {
    /// Worker → coordinator on join. Fields: cores, pid, the worker id it had before when it joins again (0 for a
    /// new worker). Frame: text `key=value` lines: blas, build, host, name.
    case hello = 1
    /// Coordinator → worker. Fields: parameter count, micro-shards per batch at most, reduction (0 exact, 1 fast),
    /// heartbeat interval in milliseconds, the coordinator's weights region (pid << 32 | descriptor, then its token;
    /// 0 when it has none). Frame: the job description (opaque bytes to this layer).
    case job = 2
    /// Coordinator → worker: the weights for `step`. Fields: parameter count; their form: 0 as Floats, 1 in the
    /// coordinator's weights region, 3 the `weightsPart`s of `step` sent before (every one); 2, once their change
    /// from an earlier step's, is refused. Frame: `count` little-endian Float32, empty when they are in the region or
    /// in parts.
    case weights = 3
    /// Coordinator → worker: micro-shards to compute for `step`. Fields: epoch, batch, attempt (unique within the
    /// step; the gradient echoes it, so a late answer to a range since given to another worker is recognised), the
    /// result slot (0: send the values; k: slot k − 1 of the worker's result region), 1 to send the values in
    /// `gradientPart`s (then the gradient's frame is empty), 1 to send a `spans` report with the result.
    /// Frame: ranges as `(start u32, end u32)` pairs, ascending and disjoint.
    case assignment = 4
    /// Worker → coordinator: the gradient sum for `step`. Fields: samples, correct, loss (two i64 limbs, or a
    /// Float64 and 0 for fast), flags (bit 0: fast, bit 1: overflowed, bit 2: the values are in the result region,
    /// bit 3: its slot, bit 4: packed, bits 5-7: exact values sent as that many micro-shards' Floats, bits 8-15:
    /// the exact loss's window as an i8, bit 16: the values came before in `gradientPart`s), the assignment's attempt.
    /// Frame: exact: parameter count `i64` high limbs, as many low limbs, then as many `i8` windows, or the same
    /// packed (`cexact_pack`: never longer than unpacked), or each micro-shard's parameter count Float32 in turn;
    /// fast: parameter count Float32; empty when the values are in the region.
    case gradient = 5
    /// Either way, no payload: liveness, every heartbeat interval (a worker also sends them while computing).
    case heartbeat = 6
    /// Either way: something went wrong. Frame: one line of text.
    case error = 7
    /// Coordinator → worker: stop. Field: 0 the run finished, 1 it failed or was stopped, 2 join again (this
    /// worker was declared lost). Frame: the reason.
    case shutdown = 8
    /// Worker → coordinator after a job: field 0 is 1 if its own copy of the data matched the job's fingerprint,
    /// 0 if it needs the data sent; fields 1-3, a worker with a result region (`SharedRegion`): its pid, the
    /// region's descriptor and its token (0 when it has none); field 4, 1 if it mapped the coordinator's weights
    /// region; field 5, exact mode: the fingerprint of its matrix products of the job (0 in fast mode). No payload.
    case ready = 9
    /// Coordinator → worker: the training samples, once. Fields: samples, feature width, target width. Frame:
    /// `samples × feature width` Float32 features, then `samples × target width` Float32 targets.
    case data = 10
    /// Coordinator → worker: one part of `step`'s weights, sent as soon as the optimizer has updated it, while the
    /// rest of the gradients still arrive. Fields: the part's first parameter (a multiple of the job's part size,
    /// `PartSplit`, announced with the job), its parameter count (the part size, or what is left). Frame: that many Float32.
    case weightsPart = 11
    /// Worker → coordinator: one part of one array of its result for `step`, so the coordinator can update that
    /// part as soon as every worker's is in. Fields: the attempt, the array (fast: 0, the sum; exact: the
    /// assignment's k-th micro-shard's Floats), the arrays in all, the part's first parameter and its count as in
    /// `weightsPart`, the form (0 Floats; 1 an exact sum's limbs packed as `cexact_pack_range` packs them, the only
    /// array; 2 the same of a sum that saw a NaN or ∞). Frame: that many Float32, or the packed limbs. The `gradient`
    /// message with the counts follows the last part.
    case gradientPart = 12
    /// Coordinator → worker, sharded layout (docs/scale-out.md): the members a step's parts go between. Fields: peer
    /// count, part count. Frame: lines `peer ID ENDPOINT [KEY]`, then `owners ID ID …`, one owner per part (0: the
    /// coordinator).
    case peers = 13
    /// Coordinator → owner, sharded layout: what step `step` sums. Fields: revision, samples, contributions, learning
    /// rate (Float32 bits), optimizer step. Frame: per contribution, worker u32, first micro-shard u32, micro-shards
    /// u32, attempt u64.
    case sumOrder = 14
    /// Owner → every worker and the coordinator (the coordinator, for its own parts → every worker), sharded layout:
    /// one part of step `step`'s gradient, for each to apply. Fields: the part's first parameter and count as in
    /// `weightsPart`, learning rate (Float32 bits), optimizer step, the step's samples, the revision of the order it
    /// sums. Frame: that many Float32 (exact: the mean; fast: the sum).
    case meanPart = 15
    /// Owner → coordinator, sharded layout: a contribution to one of its parts is no possible sum of its
    /// micro-shards. Fields: the worker that sent it, its attempt, the part. Frame: why, one line.
    case refuted = 16
    /// Worker → coordinator, asked for by an assignment's trace flag, just before the result's last message: the
    /// worker's timeline of it. Fields: the attempt, when the assignment was in and when this report went (ns of the
    /// worker's clock), the span count, the spans it could not keep. Frame: per span, kind u8 (0 waiting to start,
    /// 1 forward, 2 backward, 3 exact sum, 4 send part, 5 pack result), thread u8, index u16 (layer, part or
    /// micro-shards), duration u32 ns, start u64 ns after the assignment was in.
    case spans = 17
    /// Coordinator → worker, sharded layout: its values at a few parameters of one part, to check the part's mean.
    /// Fields: the attempt, the order's revision, the part, the parameter count (1-64). Frame: the parameters'
    /// offsets in the part, u16, ascending.
    case spotCheck = 18
    /// Worker → coordinator: the answer to a `spotCheck`. Fields: as the check's, then the form (0 Floats, 1 exact
    /// limbs, 2 this worker no longer holds the attempt's result) and the arrays (Floats: as in `gradientPart`;
    /// limbs 1; not held 0). Frame: each array's Float32 at the offsets in turn, or the limbs in the `gradient`
    /// frame's layout of that many parameters, or empty.
    case spotValues = 19

    /// Payload frames the type carries.
    var payloadFrames: Int { self == .heartbeat || self == .ready ? 0 : 1 }
}
