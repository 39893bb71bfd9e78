import ArgumentParser
import Dispatch
import Engine
import Foundation
import Wire

/// What `--trace` adds to a worker: a micro-shard's forward and backward with its layers' spans recorded against the
/// same without, interleaved on one thread; and a result's report of those spans encoded and decoded. Prints JSON.
struct TraceCost: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "What --trace adds to a micro-shard's forward and backward, and to a result's messages (JSON).")

    @Option(help: "The model.") var model: BenchModel = .mnistMLP
    @Option(help: "Samples in the micro-shard.") var microShard = 64
    @Option(help: "Pairs of passes (one untraced, one traced).") var pairs = 400

    func run() throws {
        let spec = model.spec
        let network = Network(spec: spec, loss: .crossEntropy, targetWidth: 1, capacity: microShard, library: .oneDNN)
        let data = model.data(samples: microShard)
        for row in 0..<microShard {
            data.features.copyRow(row, into: network.input.pointer + row * spec.inputs)
            network.targets.pointer[row] = data.targets[row]
        }
        let weights = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(weights, seed: 1)
        let parameters = Array(weights.elements)
        var gradient = parameters
        let recorder = SpanRecorder(thread: 1)
        func pass(traced: Bool) -> UInt64 {
            network.spans = traced ? recorder : nil
            recorder.reset()
            let start = DispatchTime.now().uptimeNanoseconds
            _ = network.gradientSum(rows: microShard, parameters: parameters, gradient: &gradient)
            return DispatchTime.now().uptimeNanoseconds - start
        }
        for _ in 0..<20 { _ = pass(traced: false); _ = pass(traced: true) }
        var plain: [UInt64] = [], traced: [UInt64] = []
        for i in 0..<pairs {
            // Alternating which goes first, so neither always runs on a warmer cache.
            if i % 2 == 0 {
                plain.append(pass(traced: false)); traced.append(pass(traced: true))
            } else {
                traced.append(pass(traced: true)); plain.append(pass(traced: false))
            }
        }
        _ = pass(traced: true)
        let spans = recorder.count
        // A result of four such micro-shards: their spans and a few sends, as a worker reports them.
        let entries = (0..<(4 * spans + 8)).map {
            TimelineReport.Entry(kind: UInt8($0 % 6), thread: 1, index: UInt16($0 % 3), start: UInt64($0) * 1000,
                                 duration: 500)
        }
        let report = TimelineReport(attempt: 1, received: 1_000_000, sent: 1_000_000 + UInt64(entries.count) * 1000 + 1000,
                                    dropped: 0, entries: entries)
        let limits = Limits(parameterCount: spec.layout.parameterCount, job: 1)
        var messages: [UInt64] = []
        for _ in 0..<200 {
            let start = DispatchTime.now().uptimeNanoseconds
            let frames = try Codec.spans(report, job: 1, step: 2, worker: 3)
            _ = try Codec.decode(frames, limits: limits)
            messages.append(DispatchTime.now().uptimeNanoseconds - start)
        }
        func median(_ values: [UInt64]) -> Double { Double(values.sorted()[values.count / 2]) }
        let result: [String: Any] = [
            "model": model.rawValue, "micro_shard": microShard, "pairs": pairs,
            "kernel": GEMMLibrary.oneDNN.kernels,
            "untraced_pass_us": median(plain) / 1000, "traced_pass_us": median(traced) / 1000,
            "traced_over_untraced": median(traced) / median(plain),
            "spans_per_pass": spans,
            "report_spans": entries.count, "report_encode_decode_us": median(messages) / 1000,
        ]
        let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
    }
}
