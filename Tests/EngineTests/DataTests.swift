@testable import Engine
import Foundation
@testable import Jobs
@testable import Platform
import Testing

struct DataTests {
    @Test("reads numpy-written float32, float64, int32 and int64 arrays")
    func readsNPY() throws {
        let expected: [Float] = [1.5, -2, 3, 4.25, 0, 1]
        for name in ["features-f4.npy", "features-f8.npy"] {
            let array = try NPY.read(Fixtures.path(name))
            #expect(array.values == expected && array.rows == 3 && array.columns == 2, "\(name)")
        }
        for name in ["targets-i8.npy", "targets-i4.npy"] {
            let array = try NPY.read(Fixtures.path(name))
            #expect(array.values == [2, 0, 1] && array.rows == 3 && array.columns == 1, "\(name)")
        }
    }

    @Test("refuses bad .npy files naming the file and the problem", arguments: [
        ("bad-fortran.npy", "Fortran order"),
        ("bad-bigendian.npy", "dtype '>f4' is not supported"),
        ("bad-3d.npy", "3 dimensions"),
        ("bad-dtype.npy", "dtype '<u2' is not supported"),
        ("bad-truncated.npy", "needs 24 data bytes but the file holds 21"),
        ("goldens.json", "not a .npy file"),
        ("no-such-file.npy", "cannot read the file"),
    ])
    func refusesBadNPY(file: String, message: String) {
        #expect {
            _ = try NPY.read(Fixtures.path(file))
        } throws: { error in
            let text = (error as? InputError)?.message ?? ""
            return text.hasPrefix(Fixtures.path(file)) && text.contains(message)
        }
    }

    @Test("CSV: the named column is the target, the rest are features; quotes and CRLF are accepted")
    func readsCSV() throws {
        let data = try CSV.parse("a,label,\"b\"\r\n1,0,2.5\r\n\"3\",1,-4\r\n\r\n", target: "label", name: "t.csv")
        #expect(data.features.array == [1, 2.5, 3, -4] && data.targets == [0, 1] && data.featureWidth == 2)
    }

    @Test("CSV errors name the line and column", arguments: [
        ("a,b\n1,2\n", "no column named 'label'"),
        ("a,label\n1,2\n3\n", "line 3 has 1 fields; the header has 2"),
        ("a,label\n1,2\nx,1\n", "line 3, column 'a': 'x' is not a finite decimal number"),
        ("a,label\n", "no data rows"),
        // Stricter than Swift's own parser, as Python's float() and pandas are: no hex floats, nothing after a NUL.
        ("a,label\n0x1p3,1\n", "line 2, column 'a': '0x1p3' is not a finite decimal number"),
        ("a,label\n1\u{0}99,1\n", "line 2, column 'a': '1\\u{0}99' is not a finite decimal number"),
        ("a,label\n1e,1\n", "'1e' is not a finite decimal number"),
        ("a,label\n1.5.2,1\n", "'1.5.2' is not a finite decimal number"),
    ])
    func refusesBadCSV(text: String, message: String) {
        #expect {
            _ = try CSV.parse(text, target: "label", name: "t.csv")
        } throws: { error in ((error as? InputError)?.message ?? "").contains(message) }
    }

    @Test("epochs, batches and iterations as the seed's table defines them")
    func batchPlan() {
        let plan = BatchPlan(sampleCount: 1000, batchSize: 100, shuffle: true, dropLast: false, seed: 1)
        #expect(plan.batchesPerEpoch == 10)
        #expect(BatchPlan(sampleCount: 1001, batchSize: 100, shuffle: true, dropLast: false, seed: 1).batchesPerEpoch == 11)
        #expect(BatchPlan(sampleCount: 1001, batchSize: 100, shuffle: true, dropLast: true, seed: 1).batchesPerEpoch == 10)
        #expect(BatchPlan(sampleCount: 1001, batchSize: 100, shuffle: true, dropLast: false, seed: 1).range(ofBatch: 10) == 1000..<1001)
        var first = [Int](repeating: 0, count: 1000), again = first, second = first
        first.withUnsafeMutableBufferPointer { plan.writeOrder(epoch: 0, into: $0) }
        again.withUnsafeMutableBufferPointer { plan.writeOrder(epoch: 0, into: $0) }
        second.withUnsafeMutableBufferPointer { plan.writeOrder(epoch: 1, into: $0) }
        #expect(first.sorted() == Array(0..<1000))
        #expect(first == again && first != second && first != Array(0..<1000))
        let unshuffled = BatchPlan(sampleCount: 10, batchSize: 3, shuffle: false, dropLast: false, seed: 1)
        var order = [Int](repeating: 0, count: 10)
        order.withUnsafeMutableBufferPointer { unshuffled.writeOrder(epoch: 3, into: $0) }
        #expect(order == Array(0..<10))
    }

    @Test("synthetic sets have the requested shapes and classes, and depend on the seed only")
    func synthetic() {
        let spirals = Synthetic.spirals(samples: 300, classes: 3, noise: 0.05, seed: 9)
        #expect(spirals.count == 300 && spirals.featureWidth == 2 && Set(spirals.targets) == [0, 1, 2])
        #expect(spirals == Synthetic.spirals(samples: 300, classes: 3, noise: 0.05, seed: 9))
        #expect(spirals != Synthetic.spirals(samples: 300, classes: 3, noise: 0.05, seed: 10))
        let blobs = Synthetic.blobs(samples: 100, classes: 4, features: 5, noise: 1, seed: 1)
        #expect(blobs.featureWidth == 5 && Set(blobs.targets).count == 4)
        let regression = Synthetic.regression(samples: 50, features: 3, noise: 0.1, seed: 1)
        #expect(regression.featureWidth == 3 && regression.targetWidth == 1)
        let (train, held) = regression.split(validationFraction: 0.2, seed: 1)
        #expect(train.count == 40 && held.count == 10)
    }
}

struct RandomTests {
    @Test("xoshiro256** seeded through SplitMix64 matches an independent Python implementation")
    func matchesReference() {
        let golden = Fixtures.goldens["xoshiro"] as! [String: Any]
        var random = Xoshiro(seed: UInt64(golden.int("seed")), stream: UInt64(golden.int("stream")))
        let expected = (golden["outputs"] as! [String]).map { UInt64($0)! }
        #expect((0..<expected.count).map { _ in random.next() } == expected)
    }

    @Test("portable log, sin and cos agree with the platform's to a few ulps")
    func portableMath() {
        var random = Xoshiro(seed: 3)
        for _ in 0..<10_000 {
            let x = random.nextUnitDouble() * 1000 + 1e-300
            #expect(abs(PortableMath.log(x) - Foundation.log(x)) <= 4 * abs(Foundation.log(x)).ulp + 1e-300)
            let a = (random.nextUnitDouble() - 0.5) * 100
            #expect(abs(PortableMath.sin(a) - Foundation.sin(a)) <= 1e-14)
            #expect(abs(PortableMath.cos(a) - Foundation.cos(a)) <= 1e-14)
        }
    }

    @Test("bounded integers are unbiased and in range")
    func bounded() {
        var random = Xoshiro(seed: 8)
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<60_000 { counts[random.nextIndex(below: 6)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 400 })
    }
}

struct InitialisationTests {
    @Test("default initialisation matches a numpy float32 recomputation from the Python generator, bit for bit")
    func matchesReference() {
        let golden = Fixtures.goldens["initialisation"] as! [String: Any]
        let spec = ModelSpec(inputs: 2, layers: [LayerSpec(units: 3, activation: .relu),
                                                 LayerSpec(units: 1, activation: .sigmoid)])
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: UInt64(golden.int("seed")))
        #expect(parameters.array.map(\.bitPattern) == golden.floats("parameters").map(\.bitPattern))
    }

    @Test("He and Xavier bounds and spreads on a wide layer")
    func spreads() {
        let spec = ModelSpec(inputs: 400, layers: [LayerSpec(units: 300, activation: .relu),
                                                   LayerSpec(units: 100, activation: .tanh)])
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: 1)
        for (dense, expectedVariance) in zip(spec.layout.layers, [2.0 / 400, 2.0 / 400]) {
            let w = parameters.array[dense.weightOffset ..< dense.biasOffset].map(Double.init)
            let mean = w.reduce(0, +) / Double(w.count)
            let variance = w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(w.count)
            #expect(abs(mean) < 0.01 * expectedVariance.squareRoot() * 10)
            #expect(abs(variance / expectedVariance - 1) < 0.02, "variance \(variance) vs \(expectedVariance)")
            #expect(parameters.array[dense.biasOffset ..< dense.biasOffset + dense.outputs].allSatisfy { $0 == 0 })
        }
    }
}

/// MNIST's IDX format and NumPy's uint8 and bool arrays, from files written here byte by byte.
struct IDXAndNPYTests {
    static func folder() -> String {
        let path = NSTemporaryDirectory() + "idx-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// An IDX file of unsigned bytes with big-endian dimensions, as MNIST's are.
    static func idx(_ shape: [Int], _ values: [UInt8]) -> Data {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for size in shape { bytes += [UInt8(size >> 24 & 255), UInt8(size >> 16 & 255), UInt8(size >> 8 & 255), UInt8(size & 255)] }
        return Data(bytes + values)
    }

    @Test("IDX images become pixels in [0, 1] and labels class indices, plain or gzipped; bad files are named")
    func idxFiles() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pixels: [UInt8] = (0..<(3 * 2 * 2)).map { UInt8($0 * 20) }
        try Self.idx([3, 2, 2], pixels).write(to: URL(fileURLWithPath: "\(folder)/images-idx3-ubyte"))
        try Self.idx([3], [7, 0, 9]).write(to: URL(fileURLWithPath: "\(folder)/labels-idx1-ubyte"))
        let data = try IDX.read(images: "\(folder)/images-idx3-ubyte", labels: "\(folder)/labels-idx1-ubyte")
        #expect(data.count == 3 && data.featureWidth == 4 && data.targets == [7, 0, 9])
        #expect(data.features.array == pixels.map { Float($0) / 255 })
        // gzip, as MNIST is distributed.
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-k", "\(folder)/images-idx3-ubyte"]
        try gzip.run()
        gzip.waitUntilExit()
        let zipped = try IDX.read(images: "\(folder)/images-idx3-ubyte.gz", labels: "\(folder)/labels-idx1-ubyte")
        #expect(zipped.features == data.features)

        try Self.idx([2], [1, 2]).write(to: URL(fileURLWithPath: "\(folder)/two-labels"))
        #expect { try IDX.read(images: "\(folder)/images-idx3-ubyte", labels: "\(folder)/two-labels") } throws: {
            "\($0)".contains("2 labels but") }
        try Self.idx([3, 2, 2], Array(pixels.prefix(10))).write(to: URL(fileURLWithPath: "\(folder)/short"))
        #expect { try IDX.read(images: "\(folder)/short", labels: "\(folder)/labels-idx1-ubyte") } throws: {
            "\($0)".contains("needs 12 bytes but the file holds 10") }
        #expect { try IDX.read(images: "\(folder)/labels-idx1-ubyte", labels: "\(folder)/labels-idx1-ubyte") } throws: {
            "\($0)".contains("1 dimensions; images files have 3") }
    }

    @Test("a gzipped IDX file is read only as far as its header announces: a bomb and an impossible size are refused")
    func idxBombs() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func zipped(_ name: String, _ data: Data) throws -> String {
            try data.write(to: URL(fileURLWithPath: "\(folder)/\(name)"))
            let gzip = Process()
            gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
            gzip.arguments = ["\(folder)/\(name)"]
            try gzip.run()
            gzip.waitUntilExit()
            return "\(folder)/\(name).gz"
        }
        try Self.idx([3], [7, 0, 9]).write(to: URL(fileURLWithPath: "\(folder)/labels"))
        // 12 pixels announced, then 64 MB more: refused after reading 12 + 1 of them (before, all were read).
        let bomb = try zipped("bomb", Self.idx([3, 2, 2], [UInt8](repeating: 1, count: 12 + (64 << 20))))
        #expect { try IDX.read(images: bomb, labels: "\(folder)/labels") } throws: {
            "\($0)".contains("decompresses to more than the 28 bytes its header announces") }
        // 100 million 280 × 280 images announced in a file of a few bytes: refused before any payload is read.
        let huge = try zipped("huge", Self.idx([100_000_000, 280, 280], []))
        #expect { try IDX.read(images: huge, labels: "\(folder)/labels") } throws: {
            "\($0)".contains("its header announces 7840000000016 bytes, more than this machine can hold") }
    }

    @Test("npy headers numpy would not write are refused: a key twice, a nested shape, an unknown or missing key")
    func strictNPYHeaders() throws {
        func npy(_ dict: String, payload: Int = 12) -> Data {
            var header = dict
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8)
                + [UInt8](repeating: 0, count: payload))
        }
        // As numpy 1.x and 2.x write them.
        #expect(try NPY.parse(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"), name: "a").rows == 3)
        #expect(try NPY.parse(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 4), }", payload: 64),
                              name: "b").columns == 4)
        let refused: [(String, String)] = [
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'shape': (1,), }", "has the key 'shape' twice"),
            ("{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", "has the key 'descr' twice"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': ((2, 3), 4), }", "not a tuple of whole numbers"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1, }", "has the key 'extra'"),
            ("{'descr': '<f4', 'shape': (3,), }", "has no 'fortran_order' entry"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }", "not True or False"),
        ]
        for (dict, message) in refused {
            #expect { try NPY.parse(npy(dict), name: "x.npy") } throws: { "\($0)".contains(message) }
        }
    }

    @Test("npy uint8 and bool arrays read as their values")
    func smallDtypes() throws {
        func npy(_ descr: String, _ shape: String, _ payload: [UInt8]) -> Data {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
            while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
            header += "\n"
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8) + payload)
        }
        let images = try NPY.parse(npy("|u1", "(2, 2)", [0, 255, 128, 7]), name: "u8")
        #expect(images.values == [0, 255, 128, 7] && images.rows == 2 && images.columns == 2)
        let labels = try NPY.parse(npy("|b1", "(3,)", [1, 0, 1]), name: "bool")
        #expect(labels.values == [1, 0, 1] && labels.columns == 1)
    }
}

extension IDXAndNPYTests {
    @Test("a CSV with an unnamed first column (a pandas index) or a duplicated column name is refused, naming it")
    func csvHeaders() throws {
        #expect { try CSV.parse(",a,label\n0,1.5,1\n", target: "label", name: "indexed.csv") } throws: {
            "\($0)".contains("indexed.csv: the first column has no name (a pandas index?)") }
        #expect { try CSV.parse("a,a,label\n1,2,1\n", target: "label", name: "twice.csv") } throws: {
            "\($0)".contains("names column 'a' twice") }
        #expect(try CSV.parse("a,b,label\n1,2,1\n", target: "label", name: "fine.csv").featureWidth == 2)
    }
}

/// TensorBoard's framing, against the format's published check values.
@Suite struct TensorBoardFormatTests {
    @Test("CRC-32C of \"123456789\" is 0xE3069283 (RFC 3720's check value), and a record carries its masked CRCs")
    func crc() {
        #expect(TensorBoard.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(TensorBoard.crc32c(Array(repeating: 0, count: 32)) == 0x8A91_36AA, "RFC 3720 B.4: 32 bytes of zeros")
        let record = TensorBoard.record([1, 2, 3])
        #expect(record.count == 8 + 4 + 3 + 4)
        #expect(Array(record[0..<8]) == [3, 0, 0, 0, 0, 0, 0, 0])
        let dataCRC = record[15...].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) }
        #expect(dataCRC == TensorBoard.masked(TensorBoard.crc32c([1, 2, 3])))
    }
}

/// Data read in place: float32 `.npy` files mapped rather than read, several files as one set, views for splits.
@Suite struct MappedDataTests {
    static func folder() throws -> String {
        let path = NSTemporaryDirectory() + "mapped-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Rows of `width` values from a seeded generator, some negative, tiny or large.
    static func values(rows: Int, width: Int, seed: UInt64) -> [Float] {
        var random = Xoshiro(seed: seed)
        return (0..<rows * width).map { _ in Float(random.nextGaussian()) * Float([1, 1e-6, 300][Int(random.next() % 3)]) }
    }

    @Test("an uncompressed IDX images file is mapped (no rows in this process's memory) and reads as the same file gzipped, each pixel byte / 255; views, runs and fingerprints agree")
    func idxMapped() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var random = Xoshiro(seed: 3)
        let pixels = (0..<(9 * 4 * 3)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let images = [0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 4, 0, 0, 0, 3] + pixels
        let labels = [0, 0, 8, 1, 0, 0, 0, 9] + (0..<9).map { UInt8($0 % 4) }
        FileManager.default.createFile(atPath: folder + "/images", contents: Data(images))
        FileManager.default.createFile(atPath: folder + "/labels", contents: Data(labels))
        for name in ["images", "labels"] {
            let gzip = Process()
            gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
            gzip.arguments = ["-k", folder + "/" + name]
            try gzip.run()
            gzip.waitUntilExit()
        }
        let mapped = try IDX.read(images: folder + "/images", labels: folder + "/labels")
        let gzipped = try IDX.read(images: folder + "/images.gz", labels: folder + "/labels.gz")
        let expected = pixels.map { Float($0) / 255 }
        #expect(mapped.features.ownedBytes == 0 && gzipped.features.ownedBytes == images.count)
        #expect(mapped.features.array == expected && gzipped.features.array == expected)
        #expect(mapped.features == FloatRows(expected, width: 12) && mapped.featureWidth == 12)
        #expect(mapped.targets == (0..<9).map { Float($0 % 4) } && mapped.targets == gzipped.targets)
        let inMemory = try Dataset(name: "x", features: expected, featureWidth: 12, targets: mapped.targets,
                                   targetWidth: 1)
        #expect(mapped.fingerprint == gzipped.fingerprint && mapped.fingerprint == inMemory.fingerprint)
        let picked = [8, 0, 3, 3]
        #expect(mapped.features.selecting(picked)
                == FloatRows(picked.flatMap { Array(expected[$0 * 12 ..< $0 * 12 + 12]) }, width: 12))
        var row = [Float](repeating: 0, count: 12)
        mapped.features.copyRow(5, into: &row)
        #expect(row == Array(expected[60..<72]))
    }

    @Test("a float32 file is mapped (no rows in this process's memory) and reads as the parser reads it; float64 is read and converted")
    func mappedEqualsRead() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let values = Self.values(rows: 37, width: 5, seed: 1)
        try NPY.write(values, rows: 37, columns: 5, to: folder + "/x.npy")
        let mapped = try NPY.rows(folder + "/x.npy"), read = try NPY.read(folder + "/x.npy")
        #expect(mapped.ownedBytes == 0 && mapped.count == 37 && mapped.width == 5)
        #expect(mapped.array == read.values && read.values == values)
        // A view picks rows without copying them; it equals the copy.
        let picked = [36, 0, 5, 5, 12]
        #expect(mapped.selecting(picked) == FloatRows(picked.flatMap { Array(values[$0 * 5 ..< $0 * 5 + 5]) }, width: 5))
        // A shape whose byte count wraps around to the file's (empty) payload is refused, never read past the file.
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 2147483648), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let wrapping = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count), 0] + Array(header.utf8)
        FileManager.default.createFile(atPath: folder + "/wraps.npy", contents: Data(wrapping))
        #expect { _ = try NPY.rows(folder + "/wraps.npy") } throws: {
            ($0 as? InputError)?.message.contains("the file is truncated or its header is wrong") ?? false
        }
        // A non-finite value in a mapped file is refused naming where, as the parser does.
        var bad = values
        bad[3 * 5 + 2] = .nan
        try NPY.write(bad, rows: 37, columns: 5, to: folder + "/bad.npy")
        #expect { _ = try NPY.rows(folder + "/bad.npy") } throws: {
            ($0 as? InputError)?.message.contains("at row 3, column 2 is not finite") ?? false
        }
    }

    @Test("files matched by a pattern train as one set in sorted order: the same samples, split and fingerprint as one file")
    func shardedFiles() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rows = [7, 1, 12, 5], width = 3
        let all = Self.values(rows: rows.reduce(0, +), width: width, seed: 2)
        let labels = (0..<rows.reduce(0, +)).map { Float($0 % 4) }
        try NPY.write(all, rows: labels.count, columns: width, to: folder + "/whole-x.npy")
        try NPY.write(labels, rows: labels.count, columns: nil, integers: true, to: folder + "/whole-y.npy")
        var start = 0
        // Named so that sorted order is not the order they are written in.
        for (index, count) in rows.enumerated().reversed() {
            let first = rows[..<index].reduce(0, +)
            try NPY.write(Array(all[first * width ..< (first + count) * width]), rows: count, columns: width,
                          to: folder + "/part-\(index)-x.npy")
            try NPY.write(Array(labels[first ..< first + count]), rows: count, columns: nil, integers: true,
                          to: folder + "/part-\(index)-y.npy")
            start += count
        }
        let whole = try NPY.dataset(features: folder + "/whole-x.npy", targets: folder + "/whole-y.npy")
        let parts = try NPY.dataset(features: folder + "/part-*-x.npy", targets: folder + "/part-?-y.npy")
        #expect(parts.features == whole.features && parts.targets == whole.targets && parts.count == 25)
        #expect(parts.features.ownedBytes == 0)
        #expect(parts.fingerprint == whole.fingerprint)
        let (a, b) = parts.split(validationFraction: 0.3, seed: 9), (c, d) = whole.split(validationFraction: 0.3, seed: 9)
        #expect(a.fingerprint == c.fingerprint && b.fingerprint == d.fingerprint && a.count + b.count == 25)
        // One file of another width among them, or nothing matching: refused, naming the file or the pattern.
        try NPY.write([1, 2], rows: 1, columns: 2, to: folder + "/part-9-x.npy")
        #expect { _ = try NPY.dataset(features: folder + "/part-*-x.npy", targets: folder + "/part-?-y.npy") } throws: {
            ($0 as? InputError)?.message.contains("part-9-x.npy: 2 features per sample") ?? false
        }
        #expect { _ = try NPY.dataset(features: folder + "/none-*.npy", targets: folder + "/part-?-y.npy") } throws: {
            ($0 as? InputError)?.message.contains("none-*.npy: no file matches these features") ?? false
        }
    }
}

/// The stragglers line's arithmetic, on shares worked out by hand.
@Suite struct StragglersLineTests {
    static func share(_ id: Int, seconds: Double, computing: Double, answers: Int = 10) -> WorkerShare {
        WorkerShare(worker: "w\(id)", label: "w\(id) \"box-\(id)\"", samples: 100, seconds: seconds,
                    computeSeconds: computing, answers: answers)
    }

    @Test("the slowest worker against the median, split into computing and the rest; nothing below the threshold or with one worker")
    func arithmetic() {
        // Times a result: 20, 22 and 40 ms (median 22); computing 15, 16, 18 (median 16); the rest 5, 6, 22 (median 6).
        let shares = [Self.share(1, seconds: 0.20, computing: 0.15), Self.share(2, seconds: 0.22, computing: 0.16),
                      Self.share(3, seconds: 0.40, computing: 0.18)]
        #expect(Reporting.stragglersLine(shares) == "stragglers: w3 \"box-3\" took 1.82× the median worker's time a "
            + "result (40.0 ms against 22.0 ms; computing 1.12×, the rest 3.67×)")
        #expect(Reporting.stragglersLine(shares, atLeast: 1.9) == nil)
        #expect(Reporting.stragglersLine([shares[0]]) == nil)
        // Two workers: the median is their mean; a worker with no results is left out.
        let two = [Self.share(1, seconds: 0.30, computing: 0.10, answers: 10), Self.share(2, seconds: 0.10, computing: 0.05, answers: 10),
                   Self.share(3, seconds: 0, computing: 0, answers: 0)]
        #expect(Reporting.stragglersLine(two) == "stragglers: w1 \"box-1\" took 1.50× the median worker's time a "
            + "result (30.0 ms against 20.0 ms; computing 1.33×, the rest 1.60×)")
    }
}
