import CExactSum
import Engine
import Wire

/// A part's mean under the coordinator's spot check (docs/scale-out.md): the parameters drawn after the mean came,
/// the owner's values there, and each ordered contribution's answer.
struct PartCheck {
    let owner: Int
    let revision: Int
    let offsets: [Int]
    let claimed: [Float]
    /// The order's contributions, in micro-shard order, and the member that computed each.
    let contributions: [OrderedContribution]
    let members: [Int]
    var answers: [SpotValues.Values?]

    /// Parameters drawn from each part: a lie on k of a part's P parameters is caught with probability
    /// 1 − (1 − k/P)^32 a step, one on many of them at once.
    static let drawn = 32

    /// Whether contribution `i`'s answer has yet to come.
    func awaits(_ i: Int) -> Bool { if case .none = answers[i] { true } else { false } }

    /// The first contribution whose answer has not come.
    var missing: Int? { answers.indices.first(where: awaits) }
}

extension Coordinator {
    /// A part's mean is in (copied where the trainer reads it, not yet applied): each contribution's member is asked
    /// for its values at parameters drawn now, which the owner could not know when it sent the mean.
    func startCheck(part: Int, owner: Int, revision: Int, step: Int) throws {
        guard let order = sharded.order, let ordered = sharded.ordered else { return }
        let range = parts[part]
        var random = SystemRandomNumberGenerator(), drawn = Set<Int>()
        while drawn.count < min(PartCheck.drawn, range.count) { drawn.insert(Int.random(in: 0..<range.count, using: &random)) }
        let offsets = drawn.sorted()
        let check = PartCheck(owner: owner, revision: revision, offsets: offsets,
                              claimed: offsets.map { order.mean[range.lowerBound + $0] },
                              contributions: ordered.contributions, members: ordered.members,
                              answers: Array(repeating: nil, count: ordered.contributions.count))
        sharded.checks[part] = check
        try perform(zip(check.contributions, check.members).map { c, member in
            .send(member: member, .spotCheck(SpotCheck(attempt: c.attempt, revision: revision, part: part,
                                                       offsets: offsets), step: step))
        })
    }

    /// A contributor's answer. Heard only from the member the check asked, for the check in force; when every
    /// answer is in, the part is applied if the owner's values are the contributions' sum, and the owner is lost,
    /// named, if not.
    func spotValuesArrived(_ answer: SpotValues, step: Int, from identity: [UInt8]) throws {
        guard let member = core.table.index(of: identity), core.table[member].isActive else { return }
        core.table[member].lastHeard = clock.now
        guard sharded.step?.step == step, var check = sharded.checks[answer.part], check.revision == answer.revision,
              let i = check.contributions.indices.first(where: {
                  check.members[$0] == member && check.contributions[$0].attempt == answer.attempt && check.awaits($0)
              }) else { return }
        if let wrong = unanswerable(answer, check.contributions[i], count: check.offsets.count) {
            return try perform(core.lost(member, .mismatched("a spot check of part \(answer.part) answered with \(wrong)")))
        }
        check.answers[i] = answer.values
        sharded.checks[answer.part] = check
        guard check.missing == nil else { return }
        sharded.checks[answer.part] = nil
        if let lie = disagreement(check, samples: sharded.order!.batch.count) {
            let name = "w\(core.table[check.owner].id)"
            return try perform(core.lost(check.owner, .mismatched("\(name), owner of part \(answer.part), sent a mean "
                + "whose parameter \(parts[answer.part].lowerBound + lie.offset) "
                + "is \(lie.claimed); its \(check.contributions.count) contributions give \(lie.sum)")))
        }
        guard var bookkeeping = sharded.step else { return }
        let actions = bookkeeping.passed(part: answer.part)
        sharded.step = bookkeeping
        if actions.contains(.apply(part: answer.part)) { sharded.ready.append(answer.part) }
    }

    /// Why `answer` cannot be contribution `c`'s values: not held, or not in the form its result took.
    private func unanswerable(_ answer: SpotValues, _ c: OrderedContribution, count: Int) -> String? {
        guard answer.count == count else { return "\(answer.count) values where \(count) were asked" }
        switch (answer.values, job.options.reduction) {
        case (.notHeld, _): return "no values: it no longer holds attempt \(answer.attempt), which the order names"
        case (.limbs, .exact): return nil
        case (.floats(let arrays, _), .fast) where arrays == 1: return nil
        case (.floats(let arrays, _), .exact) where arrays == c.microShards: return nil
        case (.floats(let arrays, _), _): return "\(arrays) arrays of Floats for \(c.microShards) micro-shards"
        case (.limbs, .fast): return "exact limbs in a fast run"
        }
    }

    /// The first drawn parameter whose owner's value is not the contributions' sum as the owner adds them (exact:
    /// `cexact_combine` of every limb and Float, then the mean; fast: the Floats in micro-shard order), or nil.
    /// A NaN at the part's first parameter is an owner's word that a sum saw a NaN or ∞ (the run then stops as
    /// diverged), so it is not compared.
    private func disagreement(_ check: PartCheck, samples: Int) -> (offset: Int, claimed: Float, sum: Float)? {
        let k = check.offsets.count
        var ours = [Float](repeating: 0, count: k)
        var limbs: [[UInt8]] = [], floats: [[Float]] = []
        for answer in check.answers {
            switch answer! {
            case .limbs(let bytes): limbs.append(bytes)
            case .floats(let arrays, let values):
                for a in 0..<arrays { floats.append(Array(values[a * k ..< (a + 1) * k])) }
            case .notHeld: return nil
            }
        }
        switch job.options.reduction {
        case .fast:
            ours = floats[0]
            for array in floats.dropFirst() { for j in 0..<k { ours[j] += array[j] } }
        case .exact:
            combine(limbs: limbs, floats: floats, samples: samples, into: &ours)
        }
        for j in 0..<k where check.claimed[j].bitPattern != ours[j].bitPattern {
            if check.claimed[j].isNaN && (ours[j].isNaN || check.offsets[j] == 0) { continue }
            return (check.offsets[j], check.claimed[j], ours[j])
        }
        return nil
    }

    /// The exact mean of the answered limbs and Floats, as an owner's `cexact_combine` makes it.
    private func combine(limbs: [[UInt8]], floats: [[Float]], samples: Int, into ours: inout [Float]) {
        let k = ours.count
        var high: UInt64 = 0, low: UInt64 = 0, window: Int8 = 0, finite: Int32 = 0
        let limbPointers = limbs.map { bytes in
            let copy = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            copy.copyMemory(from: bytes, byteCount: bytes.count)
            return copy
        }
        let floatPointers = floats.map { values in
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: k)
            copy.initialize(from: values, count: k)
            return copy
        }
        defer {
            for p in limbPointers { p.deallocate() }
            for p in floatPointers { p.deallocate() }
        }
        var sums = limbPointers.map { UnsafeRawPointer?($0) }
        var gradients = floatPointers.map { UnsafePointer<Float>?($0) }
        ours.withUnsafeMutableBufferPointer { out in
            _ = cexact_combine(&high, &low, &window, 1, &sums, Int32(sums.count), &gradients, Int32(gradients.count),
                               out.baseAddress, Double(samples), &finite, k, 0, k)
        }
    }
}
