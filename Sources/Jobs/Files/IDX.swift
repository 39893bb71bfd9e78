import Engine
import Foundation
import Platform

/// Reads MNIST's IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, optionally gzipped): unsigned
/// bytes, big-endian dimensions. Images become one row of pixels scaled to [0, 1] per sample; labels one class
/// index. Every size is checked against the file's real length. An uncompressed images file is mapped, not read: a
/// worker's memory holds only the pages its steps touch; a gzipped one is held as its bytes (a quarter of Floats).
package enum IDX {
    package static func read(images: String, labels: String) throws -> Dataset {
        let features = try imageRows(images)
        let labelBytes = try contents(labels)
        let (start, labelShape) = try labelBytes.withUnsafeBytes {
            try header($0, path: labels, dimensions: 1...1, what: "labels")
        }
        guard features.count == labelShape[0] else {
            throw InputError("\(labels): \(labelShape[0]) labels but \(images) has \(features.count) images; both files "
                + "must hold the same samples in the same order")
        }
        var data = try Dataset(name: images, rows: features, targets: labelBytes[start...].map { Float($0) },
                               targetWidth: 1)
        data.targetsName = labels
        return data
    }

    /// An images file's rows, each an image's pixels read as byte / 255.
    static func imageRows(_ path: String) throws -> FloatRows {
        let file: AnyObject, bytes: UnsafeRawBufferPointer, owned: Int
        if path.hasSuffix(".gz") {
            let storage = ByteStorage(try contents(path))
            (file, bytes, owned) = (storage, storage.bytes, storage.bytes.count)
        } else {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw InputError("\(path): cannot read the file; check the path (relative paths start at the job file)")
            }
            let mapped = try MappedFile(path)
            (file, bytes, owned) = (mapped, mapped.bytes, 0)
        }
        let (start, shape) = try header(bytes, path: path, dimensions: 3...3, what: "images")
        return FloatRows(chunks: [FloatRows.Chunk(base: bytes.baseAddress! + start, rows: shape[0],
                                                  element: .unsignedByteOver255)],
                         width: shape[1] * shape[2], owners: [file], ownedBytes: owned)
    }

    /// Where an IDX file's unsigned-byte payload starts, and its shape, checked against the file's length.
    static func header(_ bytes: UnsafeRawBufferPointer, path: String, dimensions: ClosedRange<Int>, what: String)
        throws -> (start: Int, shape: [Int]) {
        guard bytes.count >= 4, bytes[0] == 0, bytes[1] == 0 else {
            throw InputError("\(path): not an IDX file (it must start with two zero bytes); give MNIST's \(what) file")
        }
        guard bytes[2] == 0x08 else {
            throw InputError("\(path): IDX element type 0x\(String(bytes[2], radix: 16)) is not supported; MNIST's "
                + "unsigned bytes (0x08) are")
        }
        let count = Int(bytes[3])
        guard dimensions.contains(count) else {
            throw InputError("\(path): \(count) dimensions; \(what) files have \(dimensions.lowerBound)")
        }
        guard bytes.count >= 4 + 4 * count else { throw InputError("\(path): the IDX header is truncated") }
        let shape = (0..<count).map { d in (0..<4).reduce(0) { $0 << 8 | Int(bytes[4 + 4 * d + $1]) } }
        var expected = 1
        for size in shape {
            let (product, overflow) = expected.multipliedReportingOverflow(by: size)
            guard !overflow, size > 0 else { throw InputError("\(path): shape \(shape) is not a valid size") }
            expected = product
        }
        let payload = bytes.count - 4 - 4 * count
        guard payload == expected else {
            throw InputError("\(path): shape \(shape) needs \(expected) bytes but the file holds \(payload); it is "
                + "truncated or not an IDX \(what) file")
        }
        return (4 + 4 * count, shape)
    }

    /// The file's bytes, through `gzip -dc` when its name ends in .gz. Decompressed as a stream and never past what
    /// the header announces (plus one byte, to tell a longer file): a small file that inflates to gigabytes is refused
    /// when it passes that, not held; and an announced size beyond this machine's memory is refused before reading.
    static func contents(_ path: String) throws -> [UInt8] {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw InputError("\(path): cannot read the file; check the path (relative paths start at the job file)")
        }
        guard path.hasSuffix(".gz") else { return [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }
        let gzip = Process(), output = Pipe()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-dc", path]
        gzip.standardOutput = output
        gzip.standardError = FileHandle.nullDevice
        do { try gzip.run() } catch { throw InputError("\(path): cannot run gzip to decompress it (\(error))") }
        let reader = output.fileHandleForReading
        var finished = false
        defer {
            try? reader.close()
            if !finished {
                kill(gzip.processIdentifier, SIGKILL)
                _ = ChildExit.reap(gzip, wait: true)
            }
        }
        var bytes: [UInt8] = []
        func read(upTo total: Int) {
            while bytes.count < total, let chunk = try? reader.read(upToCount: min(total - bytes.count, 1 << 20)),
                  !chunk.isEmpty {
                bytes.append(contentsOf: chunk)
            }
        }
        // The header: 4 bytes, then 4 per dimension (at most 3 here); the payload is the dimensions' product.
        read(upTo: 4)
        // Not an IDX header of unsigned bytes: `array` names what is wrong from these few bytes.
        guard bytes.count == 4, bytes[0] == 0, bytes[1] == 0, bytes[2] == 0x08, (1...3).contains(Int(bytes[3])) else {
            return bytes
        }
        let dimensions = Int(bytes[3])
        var announced = 4 + 4 * dimensions
        read(upTo: announced)
        if bytes.count == announced {
            var payload = 1
            for d in 0..<dimensions {
                let size = (0..<4).reduce(0) { $0 << 8 | Int(bytes[4 + 4 * d + $1]) }
                let (next, overflow) = payload.multipliedReportingOverflow(by: size)
                payload = overflow ? Int.max / 2 : next
            }
            announced += payload
        }
        if let available = ResourceCheck.availableBytes(), Double(announced) > available / 2 {
            throw InputError("\(path): its header announces \(announced) bytes, more than this machine can hold "
                + "(\(ResourceCheck.bytes(available)) available)")
        }
        read(upTo: announced + 1)
        guard bytes.count <= announced else {
            throw InputError("\(path): it decompresses to more than the \(announced) bytes its header announces; it is "
                + "damaged or not an IDX file")
        }
        // Everything gzip had is read: its own verdict on it (a bad checksum, a truncated stream).
        finished = true
        guard ChildExit.reap(gzip, wait: true) == .exited(0) else { throw InputError("\(path): not a readable gzip file") }
        return bytes
    }
}

/// A gzipped file's bytes at a stable address for as long as this lives.
private final class ByteStorage {
    private let memory: UnsafeMutableRawBufferPointer
    let bytes: UnsafeRawBufferPointer

    init(_ values: [UInt8]) {
        memory = .allocate(byteCount: max(values.count, 1), alignment: 64)
        memory.copyBytes(from: values)
        bytes = UnsafeRawBufferPointer(rebasing: memory[..<values.count])
    }

    deinit { memory.deallocate() }
}
