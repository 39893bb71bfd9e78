/// How micro-shard gradients are added up.
package enum Reduction: String, Sendable, CaseIterable {
    /// Fixed-point sums: the same bits for any grouping of micro-shards, so for any number of workers.
    case exact
    /// Float sums of one GEMM per slice: fastest, but the bits depend on how the batch was split.
    case fast
}
