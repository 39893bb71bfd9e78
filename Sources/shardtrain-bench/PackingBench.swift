import ArgumentParser
import CExactSum
import Engine
import Foundation

/// The packed exact form's size and speed on real sums: a worker's exact sum of `--shards` micro-shards of the
/// benchmark model's gradient on uniform features and labels (the kind of data scripts/bench-hosts.sh trains on),
/// taken at several points of an SGD-momentum run, packed and unpacked (checked to give back the same bytes).
struct PackingSize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "packing",
                                                    abstract: "Bytes per parameter of packed exact sums, and ns to pack and unpack.")
    @Option var model = BenchModel.mnistMLP
    @Option(help: "Micro-shards in the worker's sum.") var shards = 4
    @Option var microShard = 128
    @Option(help: "Steps at which a sum is packed.") var at: [Int] = [1, 10, 40, 160]

    func run() throws {
        BLAS.setThreads(1)
        let perWorker = shards * microShard, spec = model.spec
        var sgd = SGD.Options()
        sgd.lr = 0.01
        sgd.momentum = 0.9
        var options = TrainingOptions()
        options.batchSize = 2 * perWorker
        options.microShardSize = microShard
        options.reduction = .exact
        options.length = .steps(at.max()!)
        options.optimizer = .sgd(sgd)
        let data = model.data(samples: 8 * perWorker)
        let trainer = Trainer(spec: spec, loss: .crossEntropy, options: options, training: data)
        let count = spec.layout.parameterCount, sum = GradientSum(count: count, reduction: .exact)
        let batch = Array(0..<perWorker)
        var sizes: [[String: Any]] = [], packNs: [Double] = [], unpackNs: [Double] = []
        var packed = [UInt8](repeating: 0, count: cexact_pack_bound(count))
        var back = [UInt8](repeating: 0, count: count * Int(CEXACT_BYTES_PER_PARAMETER))
        try trainer.run(onEpoch: { _ in }) { trainer in
            guard at.contains(trainer.step) else { return }
            sum.reset()
            batch.withUnsafeBufferPointer {
                trainer.computer.accumulate(batch: $0, microShards: 0..<shards, data: data,
                                            parameters: trainer.parameters.pointer, into: sum)
            }
            let raw = sum.valueBytes
            let clock = ContinuousClock()
            var length = 0, best = (pack: Double.infinity, unpack: Double.infinity)
            for _ in 0..<5 {
                let start = clock.now
                length = cexact_pack(raw.baseAddress!, count, &packed)
                let middle = clock.now
                let good = cexact_unpack(packed, length, count, &back)
                let stop = clock.now
                precondition(good == 1 && back.elementsEqual(raw), "a packed sum did not unpack to its bytes")
                best = (min(best.pack, (middle - start) / .nanoseconds(1)), min(best.unpack, (stop - middle) / .nanoseconds(1)))
            }
            sizes.append(["step": trainer.step, "bytes_per_parameter": Double(length) / Double(count)])
            packNs.append(best.pack / Double(count))
            unpackNs.append(best.unpack / Double(count))
        }
        emit(["model": model.rawValue, "parameters": count, "micro_shards": shards, "micro_shard": microShard,
              "sizes": sizes, "pack_ns_per_parameter": packNs.min()!, "unpack_ns_per_parameter": unpackNs.min()!])
    }
}
