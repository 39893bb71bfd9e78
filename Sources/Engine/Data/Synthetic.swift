/// Built-in data sets, generated from a seed with the engine's portable generator, so every process and platform
/// builds the same samples.
package enum Synthetic {
    /// The seed's XOR problem: four points, one 0/1 target.
    package static func xor() -> Dataset {
        try! Dataset(name: "xor", features: [0, 0, 0, 1, 1, 0, 1, 1], featureWidth: 2,
                     targets: [0, 1, 1, 0], targetWidth: 1)
    }

    /// Interleaved spirals in the plane, one arm per class; targets are class indices.
    package static func spirals(samples: Int, classes: Int, noise: Double, seed: UInt64) -> Dataset {
        var random = Xoshiro(seed: seed, stream: RandomStream.syntheticData)
        var features: [Float] = [], targets: [Float] = []
        for i in 0..<samples {
            let arm = i % classes
            let t = Double(i / classes) / Double(max(1, (samples + classes - 1) / classes))  // 0 ..< 1 along the arm
            let angle = 2 * Double.pi * Double(arm) / Double(classes) + 3 * Double.pi * t  // 1.5 turns
            let (s, c) = PortableMath.sincos(angle)
            let radius = 0.1 + 0.9 * t
            features.append(Float(radius * s + noise * random.nextGaussian()))
            features.append(Float(radius * c + noise * random.nextGaussian()))
            targets.append(Float(arm))
        }
        return try! Dataset(name: "spirals", features: features, featureWidth: 2, targets: targets, targetWidth: 1)
    }

    /// Gaussian blobs: one centre per class drawn uniformly in [−5, 5]^features, points spread with std `noise`.
    package static func blobs(samples: Int, classes: Int, features width: Int, noise: Double, seed: UInt64) -> Dataset {
        var random = Xoshiro(seed: seed, stream: RandomStream.syntheticData)
        let centres = (0..<classes * width).map { _ in 10 * random.nextUnitDouble() - 5 }
        var features: [Float] = [], targets: [Float] = []
        for i in 0..<samples {
            let blob = i % classes
            for d in 0..<width { features.append(Float(centres[blob * width + d] + noise * random.nextGaussian())) }
            targets.append(Float(blob))
        }
        return try! Dataset(name: "blobs", features: features, featureWidth: width, targets: targets, targetWidth: 1)
    }

    /// Noisy regression: x ~ N(0, 1)^features, y = w·x + 0.5·sin(2·x₀) + noise·N(0, 1), w drawn from [−1, 1].
    package static func regression(samples: Int, features width: Int, noise: Double, seed: UInt64) -> Dataset {
        var random = Xoshiro(seed: seed, stream: RandomStream.syntheticData)
        let weights = (0..<width).map { _ in 2 * random.nextUnitDouble() - 1 }
        var features: [Float] = [], targets: [Float] = []
        for _ in 0..<samples {
            var y = 0.0
            var first = 0.0
            for d in 0..<width {
                let x = random.nextGaussian()
                if d == 0 { first = x }
                y += weights[d] * x
                features.append(Float(x))
            }
            y += 0.5 * PortableMath.sin(2 * first) + noise * random.nextGaussian()
            targets.append(Float(y))
        }
        return try! Dataset(name: "regression", features: features, featureWidth: width, targets: targets,
                            targetWidth: 1)
    }
}
