import Engine
import Wire

/// Results and their parts, checked against the assignment they answer before anything of them is used.
extension CoordinatorCore {
    mutating func result(_ index: Int, _ header: Header, _ frame: GradientFrame, at now: ContinuousClock.Instant) {
        // Slow perhaps, but not stalled: it answers.
        table[index].unansweredSince = nil
        let member = table[index]
        if let slot = frame.regionSlot, !member.hasResultRegion {
            lose(index, .mismatched("a result in slot \(slot) of a result region it has not offered"))
            return
        }
        guard let step = round?.step, header.step == UInt64(step) else {
            if settings.verbose { emit(.log("dropped \(member.label)'s result for step \(header.step): not the current step")) }
            return
        }
        guard let assignment = round!.assignment(frame.attempt, of: index) else {
            if settings.verbose {
                emit(.log("dropped \(member.label)'s late result (attempt \(frame.attempt)) for step \(step): its "
                    + "micro-shards were given to another worker, or computed by one first"))
            }
            return
        }
        if let wrong = mismatch(of: frame, header, member: member, assignment: assignment, inParts: round!.inParts) {
            lose(index, .mismatched(wrong))
            return
        }
        guard replicaHolds(index, frame, step: step) else { return }
        if recheckNonFinite(frame, of: index, at: now) { return }
        // The round is changed where it lies (`round!`), never through a copy, which would copy its tables.
        let withdrawn = round!.complete(frame.attempt, with: frame, at: now)
        round!.slowestAnswer = max(round!.slowestAnswer, now - assignment.sentAt)
        table[index].sharedSamples += frame.samples
        table[index].sharedSeconds += max((now - assignment.sentAt) / .seconds(1), 1e-6)
        table[index].sharedComputeSeconds += frame.computing / .seconds(1)
        table[index].sharedSteps += 1
        measure(index, assignment, at: now)
        tooSlowStreak[member.identity] = nil
        // Sharded, its parts are checked by their owners later: cleared when a step with them is done.
        if !sharding { wrongValuesStreak[member.identity] = nil }
        if !round!.holds(index) { table[index].state = .ready }
        if let withdrawn {
            // Its twin answered first: the slower member's speed says so, and it must still answer something within
            // --worker-timeout of this assignment.
            measure(withdrawn.member, withdrawn, at: now)
            table[withdrawn.member].unansweredSince = min(table[withdrawn.member].unansweredSince ?? withdrawn.sentAt,
                                                          withdrawn.sentAt)
            if !round!.holds(withdrawn.member) { table[withdrawn.member].state = .ready }
        }
        // A result checking another's NaN or ∞: finite, it shows the other member's values wrong; not, the run did
        // diverge, and this result stops it.
        if let suspect = round!.rechecks[frame.attempt], !ResultCheck.holdsNonFinite(frame) {
            lose(suspect, .mismatched("a NaN or ∞ for micro-shards \(describe(assignment.ranges)) of step \(step), "
                + "which \(member.label) computed finite"))
        }
    }

    /// A result holding a NaN or ∞ where another member could compute the same micro-shards is not taken yet: the
    /// fastest other member computes them again, and the run is called diverged only if it finds one too. (Results in
    /// parts are updated part by part as they come, and a member's second such result this step stands.)
    private mutating func recheckNonFinite(_ frame: GradientFrame, of index: Int, at now: ContinuousClock.Instant) -> Bool {
        guard !round!.inParts, round!.rechecks[frame.attempt] == nil, !round!.suspects.contains(index) else { return false }
        let others = table.active.filter { $0 != index && !round!.suspects.contains($0) }
        guard let checker = others.max(by: { table[$0].speed < table[$1].speed }),
              ResultCheck.holdsNonFinite(frame),
              let (attempt, ranges, isNew) = round!.recheck(frame.attempt, by: checker, now: now) else { return false }
        let by = round!.outstanding[attempt].map { table[$0.member].label } ?? table[checker].label
        emit(.log("step \(round!.step): \(table[index].label)'s result for micro-shards \(describe(ranges)) holds a "
            + "NaN or ∞; \(by) computes them again before the run is called diverged"))
        if isNew { assign(checker, attempt: attempt, ranges: ranges) }
        if !round!.holds(index) { table[index].state = .ready }
        return true
    }

    /// Updates `member`'s speed (micro-shards per second, a moving average) from `assignment`, answered or
    /// withdrawn now.
    private mutating func measure(_ member: Int, _ assignment: StepRound.Assignment, at now: ContinuousClock.Instant) {
        let microShards = assignment.ranges.reduce(0) { $0 + $1.count }
        let speed = Double(microShards) / max((now - assignment.sentAt) / .seconds(1), 1e-6)
        let old = table[member].speed
        table[member].speed = old == 1.0 ? speed : 0.7 * old + 0.3 * speed
    }

    /// Why `frame` cannot be `member`'s answer to `assignment`; nil if it can.
    private func mismatch(of frame: GradientFrame, _ header: Header, member: Member, assignment: StepRound.Assignment,
                          inParts: Bool) -> String? {
        guard frame.regionSlot == assignment.resultSlot || frame.regionSlot == nil else {
            return "a result in slot \(frame.regionSlot!) of its region, where the assignment named "
                + (assignment.resultSlot.map { "slot \($0)" } ?? "none")
        }
        guard header.worker == member.id, frame.samples == assignment.samples,
              frame.exact == (admission.reduction == .exact) else {
            return "\(frame.samples) samples, \(frame.exact ? "exact" : "fast"), for micro-shards "
                + "\(describe(assignment.ranges)) of \(assignment.samples) samples"
        }
        guard frame.inParts == inParts else {
            return frame.inParts ? "a result in parts where its values were asked for in the message"
                : "a result's values in its message where they were asked for in parts"
        }
        guard !frame.inParts || partsComplete(frame.attempt) else {
            return "a result whose parts did not all come before it"
        }
        let microShards = assignment.ranges.reduce(0) { $0 + $1.count }
        guard frame.floatShards == 0 || frame.floatShards == microShards else {
            return "\(frame.floatShards) micro-shards' Floats for micro-shards \(describe(assignment.ranges))"
        }
        return ResultCheck.implausibility(frame, microShards: microShards, samples: assignment.samples)
    }

    /// A part of a result: checked against its assignment, then handed to the shell to keep.
    mutating func part(_ index: Int, _ header: Header, _ order: PartOrder) {
        let member = table[index]
        guard let round, round.inParts, header.step == UInt64(round.step) else {
            // Once per result (its first part comes last), not once per part.
            if settings.verbose && order.first == 0 {
                emit(.log("dropped \(member.label)'s result parts for step \(header.step): not the current step's"))
            }
            return
        }
        guard let assignment = round.assignment(order.attempt, of: index) else { return }  // given to another since
        let microShards = assignment.ranges.reduce(0) { $0 + $1.count }
        let exact = admission.reduction == .exact
        var limbs = false
        if case .packedLimbs = order.values { limbs = true }
        // Fast: one sum's Floats. Exact: each of one or two micro-shards' Floats, or the sum's limbs packed.
        let expected = limbs ? 1 : exact ? microShards : 1
        guard header.worker == member.id, order.arrays == expected, exact || !limbs, limbs || !exact || microShards <= 2
        else {
            lose(index, .mismatched("parts of \(order.arrays) arrays\(limbs ? " of packed limbs" : "") for micro-shards "
                + "\(describe(assignment.ranges)), where \(admission.reduction) mode takes "
                + (exact && microShards > 2 ? "their sum's limbs, packed" : "\(expected)")))
            return
        }
        var checked = order
        checked.microShards = microShards
        emit(.takePart(member: index, checked))
    }
}
