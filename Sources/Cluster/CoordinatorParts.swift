import Engine
import Foundation
import Wire

/// Steps whose results arrive in parts (`--overlap`): the trainer updates each part of the parameters as soon as
/// every worker's values there are in, and its new weights go out at once, so they travel down while the rest of the
/// gradients still come up. What a step needs while its parts are updated.
struct PartStep {
    let order: StepOrder
    let parts: PartwiseRound
    /// The next step's weights, part by part, for the messages that carry them.
    let next: SharedPayload
    /// When the step began, and when its assignments went out.
    let begun: ContinuousClock.Instant
    var sent: ContinuousClock.Instant
    /// The part handed to the trainer to update: its new weights go out when the trainer asks for more.
    var applying: (part: Int, since: ContinuousClock.Instant)?
    /// Parts updated from values refused since, for the trainer to put back before they are updated again.
    var undoing: [Range<Int>] = []
}

/// Where a step in parts spent its time, for --verbose: when the first and last result parts came, and the time
/// spent summing, updating and sending parts.
struct PartTimings {
    var firstPart: ContinuousClock.Instant?
    var lastPart: ContinuousClock.Instant?
    var updating: Duration = .zero
}

/// The trainer's side of a step: a whole step is one part, handed over once every result is summed; in parts, each
/// part as soon as it is final. The trainer applies every update itself.
extension Coordinator: GradientSource {
    package func begin(_ order: StepOrder) throws {
        // A step given up half-way (the trainer stopped) lets go of what it held.
        endPartStep()
        choosePacking()
        // A sharded step given up half-way may still be digesting the weights about to change.
        awaitReplicaChecks()
        if settings.sharded, try shardsStep(order.step) {
            do {
                try beginSharded(order)
            } catch {
                awaitReplicaChecks()
                throw error
            }
        } else if settings.overlap {
            try beginParts(order)
        } else {
            wholeOrder = order
        }
    }

    package func next() throws -> StepEvent? {
        if sharded.order != nil {
            do {
                return try nextSharded()
            } catch {
                // The trainer unwinds: nothing may still read its buffers.
                awaitReplicaChecks()
                throw error
            }
        }
        guard settings.overlap else {
            guard let order = wholeOrder else { return nil }
            wholeOrder = nil
            try sumWholeStep(order)
            return .update(order.sum.wholeStep(mean: order.mean))
        }
        do {
            return try nextPartEvent()
        } catch {
            // The trainer undoes them: a checkpoint holds the state from before the step.
            if let step = partStep, step.parts.updatedCount > 0 {
                log("step \(step.order.step) stopped with \(step.parts.updatedCount) of \(step.parts.parts.count) parts "
                    + "of the weights updated; they are undone")
            }
            endPartStep()
            throw error
        }
    }

    /// Whether this step's results in parts and means go packed (`FloatPacking`), from how long the last one's own
    /// work took (from its hand-out to its last update: not the wait for workers before it, nor the checkpoint or
    /// validation after it).
    private func choosePacking() {
        guard settings.sharded || settings.overlap else { return }
        let (packs, verdict) = floatPacking.stepBegins(took: stepWork)
        (packsFloats, stepWork) = (packs, nil)
        // Said when first found and when it changes (every time with --verbose).
        guard let verdict, settings.verbose || verdict.packs != lastPackingVerdict else { return }
        lastPackingVerdict = verdict.packs
        let ms = { (d: Duration) in String(format: "%.1f ms", d / .milliseconds(1)) }
        log("results and means in parts go \(verdict.packs ? "packed" : "as Floats") for the next "
            + "\(FloatPacking.interval) steps: steps took \(ms(verdict.packed)) packed, \(ms(verdict.floats)) as Floats "
            + "(medians of \(FloatPacking.probe / 2) each)")
    }

    /// Hands the step's work out, results to come in parts.
    private func beginParts(_ order: StepOrder) throws {
        let begun = clock.now
        core.beginStep(step: order.step, epoch: order.epoch, batchIndex: order.batchIndex,
                       microShards: order.microShards, batchSamples: order.batch.count)
        let parts = PartwiseRound(parts: parts, microShards: order.microShards)
        core.partsComplete = { parts.hasEverything(of: $0) }
        // This step's weights, for a worker that does not hold them: those the last step's parts made, or a copy (the
        // parameters change part by part).
        let whole: SharedPayload
        if let made = partsMade, made.step == order.step {
            whole = made.weights
        } else {
            whole = idlePayload()
            whole.bytes.copyMemory(from: order.parameters.pointer, byteCount: whole.byteCount)
        }
        partsMade = nil
        stepWeights = .made(try Message(sharing: whole))
        partStep = PartStep(order: order, parts: parts, next: idlePayload(excluding: whole), begun: begun, sent: begun)
        try handOut()
        partStep!.sent = clock.now
    }

    /// The trainer has updated the part it was given, if any: its new weights go to every worker. Then the next part
    /// to put back or to update, waiting for results as long as none is; nil when the step is done.
    private func nextPartEvent() throws -> StepEvent? {
        guard partStep != nil else { return nil }
        if let (part, since) = partStep!.applying {
            partStep!.applying = nil
            try sendUpdated(part)
            if settings.verbose { partTimings.updating += clock.now - since }
        }
        while true {
            if !partStep!.undoing.isEmpty { return .undo(partStep!.undoing.removeFirst()) }
            if let round = core.round, let part = partStep!.parts.nextReadyPart(round) { return reduce(part, round) }
            if core.round!.isComplete && partStep!.parts.isUpdated {
                finishParts()
                return nil
            }
            try pump(timeout: settings.heartbeat / 4)
            if core.round!.waitingCount > 0 { try handOut() }
        }
    }

    /// Whether the step in parts has something for the trainer: the poll loop returns early for it.
    var hasPartEvent: Bool {
        if sharded.order != nil { return awaitingMeans && !sharded.ready.isEmpty }
        guard let step = partStep, let round = core.round else { return false }
        return !step.undoing.isEmpty || step.parts.nextReadyPart(round) != nil
    }

    /// The gradient of `part`, every micro-shard's values there in, for the trainer to update.
    private func reduce(_ part: Int, _ round: StepRound) -> StepEvent {
        let step = partStep!, order = step.order, exact = job.options.reduction == .exact
        partStep!.applying = (part, clock.now)
        let (gradients, finite) = step.parts.reduce(part, round, reduction: job.options.reduction,
                                                    samples: order.batch.count, sum: order.sum, mean: order.mean)
        let range = step.parts.parts[part]
        // The gradients as a whole buffer's: the part's, moved back to where parameter 0 would be.
        return .update(ReadyPart(range: range, gradients: gradients - range.lowerBound,
                                 scale: exact ? 1 : 1 / Float(order.batch.count), finite: finite, closesStep: false))
    }

    /// Sends the new weights of `part`, which the trainer has updated, to every active worker.
    private func sendUpdated(_ part: Int) throws {
        let step = partStep!, range = step.parts.parts[part]
        (step.next.bytes + 4 * range.lowerBound).copyMemory(from: step.order.parameters.pointer + range.lowerBound,
                                                             byteCount: 4 * range.count)
        try perform(core.partUpdated(part, nextStep: step.order.step + 1))
        // Updating many parts takes a while (seconds for a large model in a debug build): the workers, waiting, must
        // still hear from this coordinator, or they would take it for gone.
        try perform(core.heartbeats(at: clock.now))
    }

    /// Every part is updated and every result in: the step's counts go to the trainer's sum.
    private func finishParts() {
        let step = partStep!
        let round = core.endStep()
        // In micro-shard order, as a whole step adds them: fast loss sums are Doubles.
        for result in round.orderedResults {
            let frame = result.frame
            step.order.sum.addStatistics(samples: frame.samples, correct: frame.correct, lossWords: frame.lossWords,
                                         overflowed: frame.overflowed)
        }
        partsMade = (step.order.step + 1, step.next)
        let gathered = clock.now
        lastTimings = StepTimings(send: (step.sent - step.begun) / .seconds(1), wait: (gathered - step.sent) / .seconds(1),
                                  reduce: 0)
        stepWork = gathered - step.begun
        trace(round, begun: step.begun, sent: step.sent, gathered: gathered, reduced: gathered)
        if settings.verbose { logPartsStep(round, sent: step.sent) }
        endPartStep()
    }

    /// --verbose: the step's timings and shares, and when its parts came.
    private func logPartsStep(_ round: StepRound, sent: ContinuousClock.Instant) {
        logStep(round)
        let ms = { (d: Duration) in String(format: "%.3f", d / .milliseconds(1)) }
        if let first = partTimings.firstPart, let last = partTimings.lastPart {
            log("step \(round.step) in parts: the first came \(ms(first - sent)) ms after the assignments, the last "
                + "\(ms(last - sent)) ms; summing, updating and sending parts took \(ms(partTimings.updating)) ms")
        }
    }

    /// Lets go of the step in parts' memory and weights, if there is one.
    func endPartStep() {
        guard let step = partStep else { return }
        step.parts.recycle(into: &partStores)
        core.partsComplete = { _ in false }
        stepWeights = .none
        partTimings = PartTimings()
        partStep = nil
    }

    /// A part of a result the core checked: kept until the part is summed.
    func keepPart(_ member: Int, _ order: PartOrder) throws {
        if sharded.order != nil { return try keepOwnPart(member, order) }
        guard let step = partStep else { return }
        // Kept even for a part updated already (from a worker lost since, who computed the same micro-shards): the part
        // is updated again from them if another worker's values there are refused.
        if settings.verbose {
            let now = clock.now
            if partTimings.firstPart == nil { partTimings.firstPart = now }
            partTimings.lastPart = now
        }
        if let wrong = step.parts.take(order.values, attempt: order.attempt, array: order.array, arrays: order.arrays,
                                       first: order.first, microShards: order.microShards, pool: &partStores) {
            try perform(core.lost(member, .mismatched(wrong)))
        }
    }

    /// An attempt taken back from a worker: its values are let go, and when the worker is lost for what it sent, the
    /// parts already updated from them are undone, to be updated again from the micro-shards' new answers (and from
    /// the other attempts' values there, kept for this). The weights those parts sent on are then wrong: every worker
    /// gets the next step's weights whole. An attempt of the same worker answered in full earlier in the step passed
    /// every check, and stays.
    func forgetParts(of attempts: [UInt64], valuesRefused: Bool, by label: String) {
        guard let step = partStep else { return }
        var undone = Set<Int>()
        for attempt in attempts { undone.formUnion(step.parts.forget(attempt, into: &partStores)) }
        guard valuesRefused, !undone.isEmpty else { return }
        for part in undone.sorted() {
            partStep!.undoing.append(step.parts.parts[part])
            step.parts.reopen(part)
        }
        core.partsUndone()
        log("step \(step.order.step): \(undone.count) of \(step.parts.parts.count) parts of the weights held "
            + "\(label)'s refused values; they are undone and will be updated again without them")
    }
}
