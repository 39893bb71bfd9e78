import Engine

extension Xoshiro {
    /// 0..<n, or 0 when n is 0 (fuzzing picks from possibly empty ranges).
    mutating func index(_ n: Int) -> Int { n > 0 ? nextIndex(below: n) : 0 }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
