/// Whether a step's results in parts and its owners' means go as packed Floats (`cexact_pack_floats`): about 12 %
/// fewer bytes for the time it takes to pack and unpack them, which pays where links are slow and costs where they are
/// fast (on 2 cores with 8 worker hosts: fast mode +5 % at 1 Gbit/s, −27 % at 10 Gbit/s). Nothing tells a link's
/// speed beforehand, so steps decide: after `warmUp` steps, `probe` steps alternate the two forms, and the form whose
/// steps took less (median) is kept for `interval` steps; then it is measured again, links and load being free to
/// change. A value: the shell says when each step began, and asks the form of the next.
package struct FloatPacking: Sendable {
    package static let warmUp = 2, probe = 8, interval = 200

    /// What the last probe found, for the log line that says it.
    package struct Verdict: Equatable, Sendable {
        package var packs: Bool
        package var packed: Duration, floats: Duration
    }

    /// Packing could help: bytes are dear (another host's link, or every byte encrypted). If not, never.
    package let enabled: Bool
    /// Steps begun so far, and the form of the one under way.
    private var begun = 0
    private var current = false
    /// Where the next probe starts (counted in steps begun), and its steps' durations so far, by form.
    private var probeStart = FloatPacking.warmUp
    private var packedTimes: [Duration] = [], floatTimes: [Duration] = []
    private var kept = false

    package init(enabled: Bool) { self.enabled = enabled }

    /// A step begins, `took` after the one before began (nil for the first): the form of that step is measured, and
    /// the form of this one returned, with the probe's verdict when this step ends one.
    package mutating func stepBegins(took: Duration?) -> (packs: Bool, verdict: Verdict?) {
        guard enabled else { return (false, nil) }
        var verdict: Verdict?
        let previous = begun - 1
        if let took, previous >= probeStart, previous < probeStart + Self.probe {
            if current { packedTimes.append(took) } else { floatTimes.append(took) }
            if previous == probeStart + Self.probe - 1 {
                let packed = Self.median(packedTimes), floats = Self.median(floatTimes)
                kept = packed < floats
                verdict = Verdict(packs: kept, packed: packed, floats: floats)
                (packedTimes, floatTimes) = ([], [])
                probeStart += Self.probe + Self.interval
            }
        }
        let inProbe = begun >= probeStart && begun < probeStart + Self.probe
        // Floats first, then packed, and so on: neither form gets the probe's slower or faster end.
        current = inProbe ? (begun - probeStart) % 2 == 1 : kept
        begun += 1
        return (current, verdict)
    }

    private static func median(_ times: [Duration]) -> Duration {
        let sorted = times.sorted()
        return sorted.isEmpty ? .zero : sorted[sorted.count / 2]
    }
}
