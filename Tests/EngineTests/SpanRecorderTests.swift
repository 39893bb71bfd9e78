import AllocationCounter
import Testing
@testable import Engine

/// `--trace` inside a worker: a network's forward and backward as spans, in order, on what a step allocates already.
struct SpanRecorderTests {
    static let spec = ModelSpec(inputs: 8, layers: [LayerSpec(units: 32, activation: .gelu),
                                                    LayerSpec(units: 16, activation: .tanh),
                                                    LayerSpec(units: 4, activation: .softmax)])

    static func network() -> Network {
        let network = Network(spec: spec, loss: .crossEntropy, targetWidth: 4, capacity: 16, library: .openBLAS)
        for i in 0..<(16 * 8) { network.input.pointer[i] = Float(i % 13) / 13 - 0.5 }
        for r in 0..<16 { for c in 0..<4 { network.targets.pointer[r * 4 + c] = c == r % 4 ? 1 : 0 } }
        return network
    }

    @Test("each layer's forward then each one's backward, last first, one after another; the gradient's bits are those of an untraced pass; a part sent mid-backward falls between a layer's spans")
    func layers() {
        let parameters = [Float]((0..<Self.spec.layout.parameterCount).map { Float(($0 * 7919) % 101) / 500 - 0.1 })
        let plain = Self.network(), traced = Self.network()
        var expected = [Float](repeating: 0, count: parameters.count), got = expected
        _ = plain.gradientSum(rows: 16, parameters: parameters, gradient: &expected)
        let recorder = SpanRecorder(thread: 1)
        traced.spans = recorder
        let before = SpanRecorder.now()
        _ = traced.gradientSum(rows: 16, parameters: parameters, gradient: &got)
        #expect(got == expected)
        let spans = Array(recorder.spans)
        #expect(spans.map { "\($0.kind)\($0.index)" } == ["forward0", "forward1", "forward2",
                                                          "backward2", "backward1", "backward0"])
        #expect(spans.first!.start >= before && spans.allSatisfy { $0.start <= $0.end && $0.thread == 1 })
        #expect(zip(spans, spans.dropFirst()).allSatisfy { $0.end <= $1.start })

        recorder.reset()
        var calls: [UInt64] = []
        traced.onLayerGradient = { _ in calls.append(SpanRecorder.now()) }
        _ = traced.gradientSum(rows: 16, parameters: parameters, gradient: &got)
        let split = Array(recorder.spans).filter { $0.kind == .backward }
        // Layers 3 and 2 each in two spans around their call; layer 1 ends at its call (nothing follows it).
        #expect(split.map(\.index) == [2, 2, 1, 1, 0] && calls.count == 3)
        #expect(split[0].end <= calls[0] && calls[0] <= split[1].start)
        #expect(split[2].end <= calls[1] && calls[1] <= split[3].start && split[4].end <= calls[2])
    }

    @Test("recording allocates nothing, and spans past the capacity are counted, not kept")
    func bounded() {
        let network = Self.network(), recorder = SpanRecorder(thread: 2, capacity: 8)
        let parameters = [Float](repeating: 0.01, count: Self.spec.layout.parameterCount)
        var gradient = parameters
        network.spans = recorder
        _ = network.gradientSum(rows: 16, parameters: parameters, gradient: &gradient)  // warm
        recorder.reset()
        allocation_counting(1)
        let before = allocation_count()
        for _ in 0..<3 { _ = network.gradientSum(rows: 16, parameters: parameters, gradient: &gradient) }
        let allocations = allocation_count() - before
        allocation_counting(0)
        #expect(allocations == 0)
        #expect(recorder.count == 8 && recorder.dropped == 3 * 6 - 8)
    }
}
