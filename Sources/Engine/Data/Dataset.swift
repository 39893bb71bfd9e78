import Platform
/// Samples: features `[count, featureWidth]` (in memory or in mapped files, see `FloatRows`) and targets
/// `[count, targetWidth]` in memory, row-major Floats.
///
/// Class-index targets are one column of whole numbers; regression and probability targets have one column per
/// output.
package struct Dataset: Sendable, Equatable {
    package let name: String
    /// Where the targets came from, for messages about them (a separate targets file, or `name`).
    package var targetsName: String
    package let features: FloatRows
    package let targets: [Float]
    package let featureWidth: Int
    package let targetWidth: Int

    package init(name: String, features: [Float], featureWidth: Int, targets: [Float], targetWidth: Int) throws {
        guard featureWidth > 0, features.count % featureWidth == 0 else {
            throw InputError("\(name): \(features.count) feature values do not split into rows of \(featureWidth)")
        }
        try self.init(name: name, rows: FloatRows(features, width: featureWidth), targets: targets,
                      targetWidth: targetWidth)
    }

    package init(name: String, rows features: FloatRows, targets: [Float], targetWidth: Int) throws {
        let featureWidth = features.width
        guard targetWidth > 0, targets.count % targetWidth == 0, targets.count / targetWidth == features.count else {
            throw InputError("\(name): \(features.count) feature rows but "
                + "\(targets.count / max(targetWidth, 1)) target rows; both files must hold the same samples")
        }
        guard features.count > 0 else { throw InputError("\(name): the data set has no samples") }
        self.name = name
        targetsName = name
        self.features = features
        self.targets = targets
        self.featureWidth = featureWidth
        self.targetWidth = targetWidth
    }

    package var count: Int { features.count }

    /// The samples at `indices`, in that order: the features as a view of the same rows, the targets copied.
    package func subset(_ indices: some Collection<Int>, name: String) -> Dataset {
        var t: [Float] = []
        t.reserveCapacity(indices.count * targetWidth)
        for i in indices { t.append(contentsOf: targets[i * targetWidth ..< (i + 1) * targetWidth]) }
        // Sizes match by construction.
        var subset = try! Dataset(name: name, rows: features.selecting(Array(indices)), targets: t, targetWidth: targetWidth)
        subset.targetsName = targetsName
        return subset
    }

    /// Splits off a seeded random `fraction` of the samples as a held-out set: (training, validation).
    package func split(validationFraction fraction: Double, seed: UInt64) -> (Dataset, Dataset) {
        let held = Int((Double(count) * fraction).rounded())
        var order = Array(0..<count)
        var random = Xoshiro(seed: seed, stream: RandomStream.validationSplit)
        order.withUnsafeMutableBufferPointer { random.shuffle($0) }
        let validation = order[..<held].sorted(), training = order[held...].sorted()
        return (subset(training, name: name), subset(validation, name: "\(name) (validation)"))
    }
}

extension Dataset {
    /// SHA-256 of the samples' widths and bytes: equal fingerprints mean equal data, sample for sample.
    package var fingerprint: String {
        var hash = SHA256()
        let widths = [UInt64(featureWidth), UInt64(targetWidth)].map(\.littleEndian)
        widths.withUnsafeBytes { hash.update($0) }
        features.forEachRun { run in hash.update(UnsafeRawBufferPointer(run)) }
        targets.withUnsafeBytes { hash.update($0) }
        return hash.hexDigest()
    }
}
