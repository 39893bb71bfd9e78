import Engine
import Foundation
import Wire

/// Steps whose results arrive in parts (`--overlap`): the coordinator updates each part of the parameters as soon as
/// every worker's values there are in and sends its new weights at once, so they travel down while the rest of the
/// gradients still come up. What a step needs while its parts are updated.
struct PartStep {
    let step: Int
    let batchSamples: Int
    let parts: PartwiseRound
    let sum: GradientSum
    let mean: UnsafeMutablePointer<Float>
    let parameters: Buffer<Float>
    /// The next step's weights, part by part, for the messages that carry them.
    let next: SharedPayload
    let update: (Range<Int>, UnsafePointer<Float>, Float, Bool) throws -> Void
    let undo: (Range<Int>) -> Void
}

/// Where a step in parts spent its time, for --verbose: when the first and last result parts came, and the time
/// spent summing, updating and sending parts.
struct PartTimings {
    var firstPart: ContinuousClock.Instant?
    var lastPart: ContinuousClock.Instant?
    var updating: Duration = .zero
}

extension Coordinator: PartwiseGradientSource {
    package var updatesInParts: Bool { settings.overlap }

    package func accumulate(step: Int, epoch: Int, batchIndex: Int, batch: UnsafeBufferPointer<Int>, microShards: Int,
                           parameters: Buffer<Float>, into sum: GradientSum, mean: UnsafeMutablePointer<Float>,
                           update: (Range<Int>, UnsafePointer<Float>, Float, Bool) throws -> Void,
                           undo: (Range<Int>) -> Void) throws {
        let begun = clock.now
        core.beginStep(step: step, epoch: epoch, batchIndex: batchIndex, microShards: microShards,
                       batchSamples: batch.count)
        let parts = PartwiseRound(parameterCount: parameters.count, microShards: microShards)
        core.partsComplete = { parts.hasEverything(of: $0) }
        defer { core.partsComplete = { _ in false } }
        // This step's weights, for a worker that does not hold them: those the last step's parts made, or a copy (the
        // parameters change part by part).
        let whole: SharedPayload
        if let made = partsMade, made.step == step {
            whole = made.weights
        } else {
            whole = idlePayload()
            whole.bytes.copyMemory(from: parameters.pointer, byteCount: whole.byteCount)
        }
        partsMade = nil
        defer { parts.recycle(into: &partStores) }
        let weights = try Message(sharing: whole)
        stepWeights = { _ in weights }
        defer { stepWeights = nil }
        let next = idlePayload(excluding: whole)
        var sent = begun
        do {
            try withoutActuallyEscaping(update) { update in try withoutActuallyEscaping(undo) { undo in
                partStep = PartStep(step: step, batchSamples: batch.count, parts: parts, sum: sum, mean: mean, parameters: parameters,
                                    next: next, update: update, undo: undo)
                defer { partStep = nil }
                try handOut()
                sent = clock.now
                while !core.round!.isComplete || !parts.isUpdated {
                    try pump(timeout: settings.heartbeat / 4)
                    try updateReadyParts()
                    if core.round!.waitingCount > 0 { try handOut() }
                }
            } }
        } catch {
            // The trainer undoes them: a checkpoint holds the state from before the step.
            if parts.updatedCount > 0 {
                log("step \(step) stopped with \(parts.updatedCount) of \(parts.parts.count) parts of the weights "
                    + "updated; they are undone")
            }
            throw error
        }
        let (round, _) = core.endStep()
        // In micro-shard order, as a whole step adds them: fast loss sums are Doubles.
        for result in round.orderedResults {
            let frame = result.frame
            sum.addStatistics(samples: frame.samples, correct: frame.correct, lossWords: frame.lossWords,
                              overflowed: frame.overflowed)
        }
        partsMade = (step + 1, next)
        let gathered = clock.now
        lastTimings = StepTimings(send: (sent - begun) / .seconds(1), wait: (gathered - sent) / .seconds(1), reduce: 0)
        if settings.verbose { logPartsStep(round, sent: sent) }
        partTimings = PartTimings()
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

    /// A part of a result the core checked: kept, and the parts every micro-shard has now reached updated.
    func keepPart(_ member: Int, _ order: PartOrder) throws {
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
            return
        }
        // A NaN or ∞ among fast values is the run diverging, as among an exact micro-shard's Floats: the update
        // checks them as it reads them and the step stops the run.
        try updateReadyParts()
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
        for part in undone {
            step.undo(step.parts.parts[part])
            step.parts.reopen(part)
        }
        core.partsUndone()
        log("step \(step.step): \(undone.count) of \(step.parts.parts.count) parts of the weights held "
            + "\(label)'s refused values; they are undone and will be updated again without them")
    }

    /// Updates every part whose values are all in, and sends each one's new weights to every active worker.
    func updateReadyParts() throws {
        guard let step = partStep else { return }
        let begun = clock.now
        defer { if settings.verbose { partTimings.updating += clock.now - begun } }
        let exact = job.options.reduction == .exact
        let samples = step.batchSamples
        // One part at a time, readiness checked again each time: a send that fails loses its worker, whose
        // micro-shards then wait again.
        while let round = core.round, let part = step.parts.nextReadyPart(round) {
            let (gradients, finite) = step.parts.reduce(part, round, reduction: job.options.reduction,
                                                        samples: samples, sum: step.sum, mean: step.mean)
            let range = step.parts.parts[part]
            // The update takes the whole buffer's address: the part's, moved back to where parameter 0 would be.
            try step.update(range, gradients - range.lowerBound, exact ? 1 : 1 / Float(samples), finite)
            (step.next.bytes + 4 * range.lowerBound).copyMemory(from: step.parameters.pointer + range.lowerBound,
                                                                 byteCount: 4 * range.count)
            try perform(core.partUpdated(part, nextStep: step.step + 1))
            // Updating many parts takes a while (seconds for a large model in a debug build): the workers, waiting,
            // must still hear from this coordinator, or they would take it for gone.
            try perform(core.heartbeats(at: clock.now))
        }
    }
}
