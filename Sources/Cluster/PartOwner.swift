import CExactSum
import Engine
import Foundation
import Wire

/// The owner's role in the sharded layout (docs/scale-out.md), played by every worker and by the coordinator: for each
/// part it owns, it keeps every contribution's values as they come, and once the coordinator's order is in and every
/// contribution it names has come, adds them in micro-shard order (exact: `cexact_combine`, then the mean; fast: the
/// Floats' sum) and hands the part to `deliver`, which sends and applies it. A contribution whose values no
/// computation gives is not summed: `refute` is told, and the part waits for an order without it. Bookkeeping is
/// `OwnerRound`'s; this keeps the bytes and adds.
final class PartOwner {
    /// Where `deliver` finds a summed part: its values in `payload`, at the part's place (4 bytes a parameter), and,
    /// where the order asks the means packed, room for them at `packedAt`, after every part's Floats.
    struct Summed {
        let part: Int
        let range: Range<Int>
        let payload: SharedPayload
        let order: OrderedSum
        let step: UInt64
        let packedAt: Int
        var values: UnsafeMutablePointer<Float> { payload.bytes.assumingMemoryBound(to: Float.self) + range.lowerBound }

        /// The part's `meanPart` frames for each receiver, made once: its header, and its values read in place, as
        /// Floats or packed (as the order asks) from what `values` holds now.
        func meanFrames(job: UInt64, worker: UInt32) throws -> () throws -> [Message] {
            let n = range.count
            let header = try Codec.meanPartHeader(job: job, step: step, worker: worker, part: range,
                                                  learningRate: order.learningRate, optimizerStep: order.optimizerStep,
                                                  samples: order.samples, revision: order.revision,
                                                  packed: order.packsMeans)
            var (offset, byteCount) = (4 * range.lowerBound, 4 * n)
            if order.packsMeans {
                (offset, byteCount) = (packedAt, cexact_pack_floats(values, n, (payload.bytes + packedAt)
                    .assumingMemoryBound(to: UInt8.self)))
            }
            return { [try Message(copying: header.bytes), try Message(sharing: payload, byteCount: byteCount, from: offset)] }
        }
    }

    private let reduction: Reduction
    private let parts: PartSplit
    private var parameterCount: Int { parts.parameterCount }
    /// The sums' room in a step's memory: every parameter's Float, padded as optimizers read the last part.
    private var floatBytes: Int { 4 * Buffer<Float>.padded(parameterCount) }
    /// Whether the layout gives this owner a part now.
    private let owns: (Int) -> Bool
    private let refute: (_ contribution: OrderedContribution, _ part: Int, _ why: String, _ step: UInt64) throws -> Void
    private let deliver: (Summed) throws -> Void

    // The step's bookkeeping (which contributions came for which part, which parts are summed), the order as the
    // coordinator sent it (its micro-shard order, learning rate and optimizer step) and the contributions' parts by
    // (worker, attempt) → part → arrays.
    private var round = OwnerRound(step: 0, owning: [])
    /// Whether `round` is a step's (the first contribution or order makes it).
    private var begun = false
    private var order: OrderedSum?
    private var held: [Key: [Int: HeldPart]] = [:]
    private var step: UInt64 { UInt64(round.step) }
    /// The memory of the sums, one per step, reused once libzmq has let go of it (messages queued for a peer that is
    /// gone hold theirs until the coordinator's next list closes that connection).
    private var outgoing: [SharedPayload] = []
    private var outgoingTurn = 0
    private var outgoingStep: UInt64?
    /// A contribution's limbs of a part unpacked, and the part's running total (made on first use).
    private var madeLimbBuffers: (scratch: UnsafeMutableRawPointer, total: UnsafeMutableRawPointer)?
    private var limbBuffers: (scratch: UnsafeMutableRawPointer, total: UnsafeMutableRawPointer) {
        if let made = madeLimbBuffers { return made }
        let bytes = GradientFrame.exactBytesPerParameter * parts.size
        madeLimbBuffers = (.allocate(byteCount: bytes, alignment: 64), .allocate(byteCount: bytes, alignment: 64))
        return madeLimbBuffers!
    }
    private let pointers: UnsafeMutablePointer<UnsafePointer<Float>?>
    private let sums: UnsafeMutablePointer<UnsafeRawPointer?>

    struct Key: Hashable {
        let worker: UInt32
        let attempt: UInt64
    }

    /// A contribution's arrays of one part as they come, and how many its first header said there are.
    struct HeldPart {
        let arrays: Int
        var values: [Int: PartValues] = [:]

        /// Every array is in: packed limbs are one; Floats, as many as the header says.
        var isComplete: Bool {
            if values.count == 1, case .packedLimbs = values.first!.value { return true }
            return values.count == arrays
        }
    }

    init(parts: PartSplit, reduction: Reduction, owns: @escaping (Int) -> Bool,
         refute: @escaping (OrderedContribution, Int, String, UInt64) throws -> Void,
         deliver: @escaping (Summed) throws -> Void) {
        self.parts = parts
        self.reduction = reduction
        self.owns = owns
        self.refute = refute
        self.deliver = deliver
        pointers = .allocate(capacity: Codec.maximumPartArrays)
        sums = .allocate(capacity: Codec.maximumPartArrays)
    }

    deinit {
        if let made = madeLimbBuffers { [made.scratch, made.total].forEach { $0.deallocate() } }
        pointers.deallocate()
        sums.deallocate()
    }

    /// The parts the layout gives this owner now.
    private var ownedParts: [Int] { parts.indices.filter(owns) }

    /// The layout changed: parts moved here from a lost owner may be ready to sum.
    func layoutChanged() throws {
        try perform(round.own(ownedParts))
    }

    /// A part of a contribution, from any worker. Kept even for a part not (yet) this owner's, or one summed already:
    /// the word that the part moved here, or an order revision naming it, may come after.
    func contribution(_ worker: UInt32, step: UInt64, attempt: UInt64, array: Int, arrays: Int, first: Int,
                      values: PartValues) throws {
        guard advance(to: step) else { return }
        let part = parts.part(startingAt: first), key = Key(worker: worker, attempt: attempt)
        held[key, default: [:]][part, default: HeldPart(arrays: arrays)].values[array] = values
        if held[key]![part]!.isComplete {
            try perform(round.arrived(Contribution(member: Int(worker), attempt: attempt), part: part))
        }
    }

    /// The coordinator's order for `step`.
    func ordered(_ new: OrderedSum, step: UInt64) throws {
        guard advance(to: step), new.revision > (order?.revision ?? -1) else { return }
        order = new
        let contributions = new.contributions.map { Contribution(member: Int($0.worker), attempt: $0.attempt) }
        try perform(round.ordered(SumOrder(step: round.step, revision: new.revision, contributions: contributions,
                                           samples: new.samples)))
    }

    /// Whether `attempt` of step `step` sent every part this owner owns (a result's counts come after its parts).
    func holdsOwnedParts(attempt: UInt64, step: UInt64) -> Bool {
        // Attempts are numbered afresh each step, and once within one.
        let held = step == self.step ? self.held.first(where: { $0.key.attempt == attempt })?.value : nil
        return parts.indices.allSatisfy { !owns($0) || held?[$0]?.isComplete == true }
    }

    /// Whether messages of `step` are to be kept: a later step forgets what an earlier one held.
    private func advance(to step: UInt64) -> Bool {
        if step > self.step || !begun {
            round = OwnerRound(step: Int(step), owning: ownedParts)
            (order, begun) = (nil, true)
            held.removeAll()
        }
        return step == self.step
    }

    private func perform(_ actions: [OwnerRound.Action]) throws {
        for action in actions {
            switch action {
            case .sum(let part, _, _):
                // Summed in the order's micro-shard order (fast sums' bits depend on it), not the action's.
                guard let order, owns(part) else { continue }
                try sum(part, order)
            }
        }
    }

    /// `c`'s values for `part` are no possible sum: not summed; the coordinator loses its sender and orders the step
    /// again without it, and the part waits for that order with the other contributions kept.
    private func refuse(_ c: OrderedContribution, part: Int, _ wrong: String) throws {
        held[Key(worker: c.worker, attempt: c.attempt)] = nil
        try refute(c, part, wrong, step)
        try reopen(part)
    }

    /// `part` waits again, with the contributions held for it, for an order it can sum.
    private func reopen(_ part: Int) throws {
        let still = held.compactMap { key, parts in
            parts[part]?.isComplete == true ? Contribution(member: Int(key.worker), attempt: key.attempt) : nil
        }
        try perform(round.reopen(part, holding: Set(still)))
    }

    /// The memory this step's sums are written to (with room for them packed, if `packs`): one libzmq holds no more,
    /// or new memory.
    private func stepPayload(packs: Bool) -> SharedPayload {
        let byteCount = floatBytes + (packs ? parts.packedRoom : 0)
        if outgoingStep != step || outgoing[outgoingTurn].byteCount < byteCount {
            outgoingStep = step
            if let free = outgoing.firstIndex(where: { $0.isIdle && $0.byteCount >= byteCount }) {
                outgoingTurn = free
            } else {
                let payload = SharedPayload(byteCount: byteCount)
                // The padding after the sums, which optimizers read with the last part, holds zeros.
                (payload.bytes + 4 * parameterCount).initializeMemory(as: UInt8.self, repeating: 0,
                                                                      count: floatBytes - 4 * parameterCount)
                outgoing.append(payload)
                outgoingTurn = outgoing.count - 1
            }
        }
        return outgoing[outgoingTurn]
    }

    /// Adds `part` of the ordered contributions, in micro-shard order, and delivers it.
    private func sum(_ part: Int, _ order: OrderedSum) throws {
        guard try allHeld(part, order) else { return }
        let range = parts[part], n = range.count
        let payload = stepPayload(packs: order.packsMeans)
        let out = payload.bytes.assumingMemoryBound(to: Float.self) + range.lowerBound
        var floats = 0, limbs = 0, diverged = false
        var copies: [UnsafeMutablePointer<Float>] = []
        defer { for copy in copies { copy.deallocate() } }
        for c in order.contributions {
            let arrays = held[Key(worker: c.worker, attempt: c.attempt)]![part]!.values
            for array in arrays.keys.sorted() {
                switch arrays[array]! {
                case .packedLimbs(let message, let saw):
                    if let wrong = addLimbs(message, count: n, first: limbs == 0, microShards: c.microShards,
                                            diverged: saw) {
                        return try refuse(c, part: part, wrong)
                    }
                    (limbs, diverged) = (limbs + 1, diverged || saw)
                case .floats(let frame):
                    // Read where it lies when aligned; copied otherwise.
                    if let values = frame.inPlace {
                        pointers[floats] = values
                    } else {
                        let copy = UnsafeMutablePointer<Float>.allocate(capacity: n)
                        frame.copy(into: copy)
                        copies.append(copy)
                        pointers[floats] = UnsafePointer(copy)
                    }
                    floats += 1
                }
            }
        }
        switch reduction {
        case .fast:
            // In micro-shard order, as a whole sum adds them.
            out.update(from: pointers[0]!, count: n)
            for k in 1..<max(1, floats) {
                let values = pointers[k]!
                for i in 0..<n { out[i] += values[i] }
            }
        case .exact:
            let (high, low, windows) = limbArrays(of: limbBuffers.total, count: n)
            var finite: Int32 = 0
            let largest = cexact_combine(high, low, windows, limbs == 0 ? 1 : 0, nil, 0, pointers, Int32(floats), out,
                                         Double(order.samples), &finite, n, 0, n)
            // A sum that saw a NaN or ∞ means nothing: every receiver finds the NaN and the coordinator stops the run
            // as diverged, as it does with the star.
            if diverged || finite != 1 || largest >= 0x7F80_0000 { out[0] = .nan }
        }
        // The contributions stay held until the step ends: a later order revision has the part added again.
        try deliver(Summed(part: part, range: range, payload: payload, order: order, step: step,
                           packedAt: floatBytes + parts.packedOffset(of: part)))
    }

    /// Whether every contribution the order names holds `part`, in as many arrays as it takes; if one is gone (refuted
    /// on another part) the part waits again, and one of the wrong shape is refused.
    private func allHeld(_ part: Int, _ order: OrderedSum) throws -> Bool {
        for c in order.contributions {
            guard let arrays = held[Key(worker: c.worker, attempt: c.attempt)]?[part]?.values else {
                try reopen(part)
                return false
            }
            let packed = arrays.values.contains { if case .packedLimbs = $0 { true } else { false } }
            let expected = packed ? 1 : (reduction == .fast ? 1 : c.microShards)
            let wrong = packed && reduction == .fast ? "packed limbs, where fast mode sends Floats"
                : arrays.count != expected ? "\(arrays.count) arrays where its \(c.microShards) micro-shards take "
                    + "\(expected)\(packed ? " (packed limbs are one)" : "")" : nil
            if let wrong {
                try refuse(c, part: part, wrong)
                return false
            }
        }
        return true
    }

    /// Unpacks a contribution's packed limbs of a part of `count` parameters and adds them into the part's total, or
    /// (`first`) makes the total of them. Packed limbs go one contribution at a time through one part-sized buffer,
    /// so both stay in cache (unpacking every contribution first and adding them together read each one's 17 bytes a
    /// parameter back from memory). Returns why they are no possible sum of `microShards` micro-shards, or nil.
    private func addLimbs(_ message: Message, count n: Int, first: Bool, microShards: Int, diverged: Bool) -> String? {
        let (scratch, total) = limbBuffers, target = first ? total : scratch
        var bounds = cexact_unpacked_bounds()
        let ok = message.withUnsafeBytes { bytes in
            cexact_unpack_bounded(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count, n, target,
                                  &bounds) == 1
        }
        guard ok else { return "packed limbs that do not unpack to \(n) parameters" }
        // A diverged sum's limbs mean nothing (the mean says so); any other's must be a possible sum.
        let unpacked = UnsafeRawBufferPointer(start: target, count: GradientFrame.exactBytesPerParameter * n)
        if !diverged, let wrong = ResultCheck.unpackedImplausibility(unpacked, bounds: bounds, microShards: microShards) {
            return wrong
        }
        if !first {
            let (high, low, windows) = limbArrays(of: total, count: n)
            sums[0] = UnsafeRawPointer(scratch)
            cexact_combine(high, low, windows, 0, sums, 1, nil, 0, nil, 1, nil, n, 0, n)
        }
        return nil
    }

    /// The high limbs, low limbs and windows of a sum of `count` parameters at `sum` (`cexact_merge`'s layout).
    private func limbArrays(of sum: UnsafeMutableRawPointer, count: Int)
        -> (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<Int8>) {
        let high = sum.assumingMemoryBound(to: UInt64.self)
        return (high, high + count, (sum + cexact_windows_offset(count)).assumingMemoryBound(to: Int8.self))
    }
}
