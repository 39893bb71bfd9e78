@testable import Cluster
import Testing

/// The choice between packed Floats and Floats: probed in runs of steps, kept for an interval, probed again.
@Suite struct FloatPackingTests {
    static let F = false, P = true
    /// The probe's forms: three steps of each, twice.
    static let probeForms = [F, F, F, P, P, P, F, F, F, P, P, P]

    /// `steps` steps begun one after another, step i taking `took(i, packed)` ms: each step's form, and the verdicts.
    static func run(_ choice: inout FloatPacking, steps: Int, took: (Int, Bool) -> Int)
        -> (forms: [Bool], verdicts: [FloatPacking.Verdict]) {
        var forms: [Bool] = [], verdicts: [FloatPacking.Verdict] = []
        for i in 0..<steps {
            let before = i == 0 ? nil : Duration.milliseconds(took(i - 1, forms[i - 1]))
            let (packs, verdict) = choice.stepBegins(took: before)
            forms.append(packs)
            if let verdict { verdicts.append(verdict) }
        }
        return (forms, verdicts)
    }

    @Test("after the warm-up, runs of three steps alternate the forms; the faster median is kept for the interval, then probed again")
    func probesAndKeeps() {
        var choice = FloatPacking(enabled: true)
        let warm = FloatPacking.warmUp, probe = FloatPacking.probe, interval = FloatPacking.interval
        // Packed steps take 90 ms, Float ones 100: packing wins.
        let (forms, verdicts) = Self.run(&choice, steps: warm + probe + interval + probe + 1) { _, packed in packed ? 90 : 100 }
        #expect(forms[..<warm].allSatisfy { !$0 })
        #expect(Array(forms[warm ..< warm + probe]) == Self.probeForms)
        #expect(forms[(warm + probe)...].prefix(interval).allSatisfy { $0 })
        #expect(verdicts.first == FloatPacking.Verdict(packs: true, packed: .milliseconds(90), floats: .milliseconds(100)))
        let second = warm + probe + interval
        #expect(Array(forms[second ..< second + probe]) == Self.probeForms)
        #expect(verdicts.count == 2 && verdicts[1].packs && forms.last == true)
    }

    @Test("slow steps every 2, 3 or 4 steps (checkpoints, say) fall on both forms alike, and a run's first step is not timed", arguments: [2, 3, 4])
    func periodicSlowSteps(period: Int) {
        for phase in 0..<period {
            var choice = FloatPacking(enabled: true)
            // Packed steps take 90 ms, Float ones 100; every `period`-th step 900 more; and a run's first step, which
            // may still carry the run before's bytes, 500 more whatever its form.
            let (_, verdicts) = Self.run(&choice, steps: FloatPacking.warmUp + FloatPacking.probe + 1) { i, packed in
                let offset = i - FloatPacking.warmUp
                return (packed ? 90 : 100) + (i % period == phase ? 900 : 0)
                    + (offset >= 0 && offset % FloatPacking.run == 0 ? 500 : 0)
            }
            #expect(verdicts.map(\.packs) == [true], "every \(period) steps from \(phase): \(verdicts)")
        }
    }

    @Test("Floats are kept where packed steps are slower; the members changing starts the probe again; disabled: never packed")
    func keepsFloatsAndRestarts() {
        var choice = FloatPacking(enabled: true)
        let (forms, verdicts) = Self.run(&choice, steps: FloatPacking.warmUp + FloatPacking.probe + 5) { _, packed in
            packed ? 130 : 100
        }
        #expect(verdicts == [FloatPacking.Verdict(packs: false, packed: .milliseconds(130), floats: .milliseconds(100))])
        #expect(!forms.last!)
        // Mid-probe, the members change: what was timed is dropped, and the probe runs whole from the next step.
        var restarted = FloatPacking(enabled: true)
        var seen: [Bool] = []
        for i in 0..<(FloatPacking.warmUp + 5 + FloatPacking.probe + 1) {
            let (packs, verdict) = restarted.stepBegins(took: i == 0 ? nil : .milliseconds(seen[i - 1] ? 90 : 100))
            seen.append(packs)
            #expect(verdict == nil || i == FloatPacking.warmUp + 5 + FloatPacking.probe, "step \(i)")
            if i == FloatPacking.warmUp + 4 { restarted.conditionsChanged() }
        }
        #expect(Array(seen[(FloatPacking.warmUp + 5)...].prefix(FloatPacking.probe)) == Self.probeForms)
        var off = FloatPacking(enabled: false)
        let (never, none) = Self.run(&off, steps: 30) { _, packed in packed ? 1 : 100 }
        #expect(never.allSatisfy { !$0 } && none.isEmpty)
    }
}
