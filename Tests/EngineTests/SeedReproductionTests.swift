@testable import Engine
@testable import Jobs
import Testing

/// The seed tutorial's XOR program: its own initial weights reproduce its numpy run; the default initialisation
/// learns.
struct SeedReproductionTests {
    @Test("the seed's weights reproduce its numpy run")
    func seedRun() throws {
        let run = try PreparedRun(jobFile: Fixtures.example("xor.yaml"), overrides: JobOverrides(),
                                  initialWeights: Fixtures.example("seed-init.safetensors"))
        var losses: [Double] = []
        try run.trainer.run { losses.append($0.loss) }
        #expect(losses.count == 1000)
        // The numpy program (float64) prints 0.2643 and 0.2500; its unrounded values are 0.26430255 and
        // 0.25000153 (0.25000149 in float32).
        #expect(abs(losses[0] - 0.26430255) < 1e-7, "initial loss \(losses[0])")
        #expect(abs(losses[999] - 0.2500015) < 1e-7, "final loss \(losses[999])")
        // numpy's a2 after its last forward pass: [0.49954238, 0.5016695, 0.49827651, 0.50040363].
        let predictions = run.trainer.predict(run.trainer.training)
        let seed: [Float] = [0.49954238, 0.5016695, 0.49827651, 0.50040363]
        #expect(firstMismatch(predictions, seed, relative: 0, absolute: 2e-5) == nil, "\(predictions)")
        #expect(Reporting.numpyArray(predictions) == "[0.5 0.5 0.5 0.5]")
    }

    @Test("the default initialisation learns XOR")
    func xorLearns() throws {
        let run = try PreparedRun(jobFile: Fixtures.example("xor.yaml"), overrides: JobOverrides(), initialWeights: nil)
        var last = Double.nan
        try run.trainer.run { last = $0.loss }
        #expect(last < 0.02, "final loss \(last)")
        let predictions = run.trainer.predict(run.trainer.training)
        #expect(predictions.map { $0.rounded() } == [0, 1, 1, 0], "\(predictions)")
    }
}
