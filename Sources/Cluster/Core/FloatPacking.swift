/// Whether a step's results in parts and its owners' means go as packed Floats (`cexact_pack_floats`): about 12 %
/// fewer bytes for the time it takes to pack and unpack them, which pays where links are slow and costs where they are
/// fast (on 2 cores with 8 worker hosts: fast mode +5 % at 1 Gbit/s, −27 % at 10 Gbit/s). Nothing tells a link's
/// speed beforehand, so steps decide: after `warmUp` steps, a probe of four runs of `run` steps (Floats, packed,
/// Floats, packed) times each step but the first of a run (which may still carry the last run's bytes), and the form
/// whose steps took less (median) is kept for `interval` steps; then it is measured again, links and load being free
/// to change, and at once when the members or the layout change. Slow steps that recur every 2, 3 or 4 steps fall
/// on both forms alike. A value: the shell says how long each step's own work took (not the checkpoint or
/// validation after it), and asks the form of the next.
package struct FloatPacking: Sendable {
    package static let warmUp = 2, run = 3, probe = 4 * run, interval = 200

    /// What the last probe found, for the log line that says it.
    package struct Verdict: Equatable, Sendable {
        package var packs: Bool
        package var packed: Duration, floats: Duration
    }

    /// Packing could help: bytes are dear (another host's link, or every byte encrypted) and something goes as Floats.
    package let enabled: Bool
    /// Steps begun so far, and the form of the one under way.
    private var begun = 0
    private var current = false
    /// Where the next probe starts (counted in steps begun), and its steps' times so far, by form.
    private var probeStart = FloatPacking.warmUp
    private var packedTimes: [Duration] = [], floatTimes: [Duration] = []
    private var kept = false

    package init(enabled: Bool) { self.enabled = enabled }

    /// A step begins; the one before it took `took` (nil for the first, or one not measured): that one's time is
    /// counted, and this one's form returned, with the probe's verdict when the step before ended one.
    package mutating func stepBegins(took: Duration?) -> (packs: Bool, verdict: Verdict?) {
        guard enabled else { return (false, nil) }
        var verdict: Verdict?
        let previous = begun - 1 - probeStart
        if let took, previous >= 0, previous < Self.probe, previous % Self.run != 0 {
            if current { packedTimes.append(took) } else { floatTimes.append(took) }
        }
        if previous == Self.probe - 1 {
            let packed = Self.median(packedTimes), floats = Self.median(floatTimes)
            if !packedTimes.isEmpty && !floatTimes.isEmpty {
                kept = packed < floats
                verdict = Verdict(packs: kept, packed: packed, floats: floats)
            }
            (packedTimes, floatTimes) = ([], [])
            probeStart += Self.probe + Self.interval
        }
        let offset = begun - probeStart
        current = offset >= 0 && offset < Self.probe ? (offset / Self.run) % 2 == 1 : kept
        begun += 1
        return (current, verdict)
    }

    /// The members or the layout changed from this step on: what was measured no longer holds, so the probe starts
    /// again at the next step (this one's form stands).
    package mutating func conditionsChanged() {
        guard enabled else { return }
        (packedTimes, floatTimes) = ([], [])
        probeStart = begun
    }

    private static func median(_ times: [Duration]) -> Duration {
        let sorted = times.sorted()
        return sorted.isEmpty ? .zero : sorted[sorted.count / 2]
    }
}
