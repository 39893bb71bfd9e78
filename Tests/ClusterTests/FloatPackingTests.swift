@testable import Cluster
import Testing

/// The choice between packed Floats and Floats: probed by alternating steps, kept for an interval, probed again.
@Suite struct FloatPackingTests {
    /// Steps of `packed` and `floats` milliseconds by form, begun one after another: each step's form, and the verdicts.
    static func run(_ choice: inout FloatPacking, steps: Int, packed: Int, floats: Int) -> ([Bool], [FloatPacking.Verdict]) {
        var forms: [Bool] = [], verdicts: [FloatPacking.Verdict] = []
        var last: Bool?
        for _ in 0..<steps {
            let took = last.map { Duration.milliseconds($0 ? packed : floats) }
            let (packs, verdict) = choice.stepBegins(took: took)
            forms.append(packs)
            if let verdict { verdicts.append(verdict) }
            last = packs
        }
        return (forms, verdicts)
    }

    @Test("after the warm-up, eight steps alternate the forms; the faster median is kept for the interval, then probed again")
    func probesAndKeeps() {
        var choice = FloatPacking(enabled: true)
        let warm = FloatPacking.warmUp, probe = FloatPacking.probe, interval = FloatPacking.interval
        // Packed steps take 90 ms, Float ones 100: packing wins.
        let (forms, verdicts) = Self.run(&choice, steps: warm + probe + interval + probe + 1, packed: 90, floats: 100)
        #expect(forms[..<warm].allSatisfy { !$0 })
        #expect(Array(forms[warm ..< warm + probe]) == [false, true, false, true, false, true, false, true])
        #expect(forms[(warm + probe)...].prefix(interval).allSatisfy { $0 })
        #expect(verdicts.first == FloatPacking.Verdict(packs: true, packed: .milliseconds(90), floats: .milliseconds(100)))
        // The next probe alternates again from Floats, and its verdict keeps packing.
        let second = warm + probe + interval
        #expect(Array(forms[second ..< second + probe]) == [false, true, false, true, false, true, false, true])
        #expect(verdicts.count == 2 && verdicts[1].packs && forms.last == true)
    }

    @Test("Floats are kept where packed steps are slower; a step that took long once does not decide; disabled: never packed")
    func keepsFloatsWhereFaster() {
        var choice = FloatPacking(enabled: true)
        var verdict: FloatPacking.Verdict?
        var last = false
        // Packed steps take 130 ms, Float ones 100, but one Float step took 900 (an epoch's checkpoint).
        for step in 0..<(FloatPacking.warmUp + FloatPacking.probe + 5) {
            let took: Duration? = step == 0 ? nil : .milliseconds(last ? 130 : step == FloatPacking.warmUp + 1 ? 900 : 100)
            let (packs, v) = choice.stepBegins(took: took)
            if let v { verdict = v }
            last = packs
        }
        #expect(verdict == FloatPacking.Verdict(packs: false, packed: .milliseconds(130), floats: .milliseconds(100)))
        #expect(!last)
        var off = FloatPacking(enabled: false)
        let (forms, verdicts) = Self.run(&off, steps: 30, packed: 1, floats: 100)
        #expect(forms.allSatisfy { !$0 } && verdicts.isEmpty)
    }
}
