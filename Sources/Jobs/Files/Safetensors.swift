import Engine
import Foundation
import Platform

/// Model weights in the safetensors format, named and shaped as a PyTorch `nn.Sequential` of the same layers
/// (see `ParameterLayout`), so `model.load_state_dict(safetensors.torch.load_file(path))` loads them strictly.
///
/// Layout: an 8-byte little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}`, then the
/// raw little-endian tensor bytes.
package enum Safetensors {
    /// Largest header accepted: far above any real model's, small enough to refuse a hostile length field.
    static let maximumHeaderBytes = 100 << 20
    /// Names of tensors that are not the model's (a checkpoint's optimizer state).
    package static let extraPrefix = "shardtrain."

    /// Writes the parameters as F32 tensors, in layout order.
    package static func write(_ parameters: [Float], layout: ParameterLayout, to path: String,
                             metadata: [String: String] = [:]) throws {
        do {
            try encode(parameters, layout: layout, metadata: metadata).write(to: URL(fileURLWithPath: path))
        } catch {
            throw InputError("\(path): cannot write the weights file (\(error.localizedDescription)); "
                + "check that the folder exists and is writable")
        }
    }

    /// `extra` tensors (1-D F32, named outside the model's names) follow the model's.
    package static func encode(_ parameters: [Float], layout: ParameterLayout, metadata: [String: String],
                       extra: [(name: String, values: [Float])] = []) -> Data {
        precondition(parameters.count == layout.parameterCount, "parameters do not fit the layout")
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        for tensor in layout.tensors {
            let begin = tensor.offset * 4, end = begin + tensor.count * 4
            entries.append("\(jsonString(tensor.name)):{\"dtype\":\"F32\",\"shape\":\(tensor.shape),"
                + "\"data_offsets\":[\(begin),\(end)]}")
        }
        var offset = parameters.count * 4
        for tensor in extra {
            entries.append("\(jsonString(tensor.name)):{\"dtype\":\"F32\",\"shape\":[\(tensor.values.count)],"
                + "\"data_offsets\":[\(offset),\(offset + 4 * tensor.values.count)]}")
            offset += 4 * tensor.values.count
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }  // pad so the tensor data starts 8-byte aligned
        var data = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        data.reserveCapacity(data.count + offset)
        for values in [parameters] + extra.map(\.values) {
            #if _endian(little)
            values.withUnsafeBytes { data.append(contentsOf: $0) }  // the file's byte order is the host's
            #else
            for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            #endif
        }
        return data
    }

    /// Reads a weights file into the flat parameter layout; every tensor the layout names must be present with its
    /// shape, and nothing else.
    /// A checkpoint given as weights (`--init`, `evaluate`, `predict`) is checked against the SHA-256 it was written
    /// with, as `--resume` checks it.
    package static func read(_ path: String, layout: ParameterLayout) throws -> [Float] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read the weights file; check the path")
        }
        let parameters = try decode(data, layout: layout, name: path)
        let (metadata, extras) = try readExtras(data, name: path)
        if let written = metadata[Checkpointer.digestKey] {
            let state = (0...).lazy.map { extras["\(extraPrefix)optimizer.\($0)"] }.prefix { $0 != nil }.map { $0! }
            guard written == Checkpointer.digest(metadata: metadata, parameters: parameters, state: Array(state)) else {
                throw InputError("\(path): its contents do not match the SHA-256 it was written with (damaged or "
                    + "changed since); use another checkpoint or weights file")
            }
        }
        return parameters
    }

    /// The JSON header and where the tensor data starts, checked against the file's size.
    private static func parseHeader(_ bytes: [UInt8], name: String) throws -> (header: [String: Any], dataStart: Int) {
        guard bytes.count >= 8 else {
            throw InputError("\(name): \(bytes.count) bytes is too short for a safetensors file (8-byte header length)")
        }
        let headerLength = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) }
        guard headerLength <= UInt64(min(bytes.count - 8, maximumHeaderBytes)) else {
            throw InputError("\(name): header length \(headerLength) runs past the file's \(bytes.count) bytes; "
                + "not a safetensors file or truncated")
        }
        let dataStart = 8 + Int(headerLength)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[8 ..< dataStart])),
              let header = object as? [String: Any] else {
            throw InputError("\(name): the safetensors header is not a JSON object")
        }
        return (header, dataStart)
    }

    /// What the reference library checks of every file, whatever is read from it: metadata is a map of strings to
    /// strings; every tensor has a known dtype, a shape of whole numbers and whole-number `data_offsets` that hold
    /// exactly its elements; and the tensors tile the data without gap or overlap, to its last byte.
    private static func checkLayout(_ header: [String: Any], payload: Int, name: String) throws {
        func whole(_ value: Any) -> Int? {
            // JSON 1.5 and 2.0 are numbers too; only integers are offsets and sizes.
            guard let number = value as? NSNumber, !"fd".contains(String(cString: number.objCType)) else { return nil }
            return number.intValue
        }
        if let metadata = header["__metadata__"], !(metadata is [String: String]) {
            throw InputError("\(name): the safetensors metadata must map strings to strings")
        }
        var spans: [(begin: Int, end: Int, key: String)] = []
        for (key, value) in header where key != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let width = elementWidth(dtype), let shapeValues = entry["shape"] as? [Any],
                  let offsetValues = entry["data_offsets"] as? [Any] else {
                throw InputError("\(name): tensor '\(key)' needs a dtype (F32, F64, F16 or BF16), a shape and data_offsets")
            }
            let shape = shapeValues.compactMap(whole), offsets = offsetValues.compactMap(whole)
            guard shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }), offsets.count == 2,
                  offsetValues.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                throw InputError("\(name): tensor '\(key)' has a shape or data_offsets that are not whole numbers in order")
            }
            var elements = 1
            for size in shape {
                let (next, overflow) = elements.multipliedReportingOverflow(by: size)
                guard !overflow else { throw InputError("\(name): tensor '\(key)' has shape \(shape), too large") }
                elements = next
            }
            guard offsets[1] - offsets[0] == elements * width else {
                throw InputError("\(name): tensor '\(key)' has data_offsets \(offsets) for \(elements) \(dtype) values")
            }
            spans.append((offsets[0], offsets[1], key))
        }
        var end = 0
        for span in spans.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard span.begin == end else {
                throw InputError("\(name): tensor '\(span.key)' starts at byte \(span.begin) of the data, where "
                    + "\(end) was expected: tensors overlap or leave a gap")
            }
            end = span.end
        }
        guard end == payload else {
            throw InputError("\(name): the tensors cover \(end) of the file's \(payload) data bytes")
        }
    }

    /// The metadata and the `extraPrefix` tensors (1-D F32) of a file `encode` wrote with `extra`.
    package static func readExtras(_ data: Data, name: String) throws -> (metadata: [String: String],
                                                                          tensors: [String: [Float]]) {
        let bytes = [UInt8](data)
        let (header, dataStart) = try parseHeader(bytes, name: name)
        let metadata = header["__metadata__"] as? [String: String] ?? [:]
        var tensors: [String: [Float]] = [:]
        for (key, value) in header where key.hasPrefix(extraPrefix) {
            guard let entry = value as? [String: Any], entry["dtype"] as? String == "F32",
                  let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], (offsets[1] - offsets[0]) % 4 == 0,
                  offsets[1] <= bytes.count - dataStart else {
                throw InputError("\(name): tensor '\(key)' is not a 1-D F32 tensor inside the file")
            }
            let start = dataStart + offsets[0]
            tensors[key] = bytes.withUnsafeBytes { raw in
                (0 ..< (offsets[1] - offsets[0]) / 4).map { element("F32", raw.baseAddress! + start + 4 * $0) }
            }
        }
        try checkLayout(header, payload: bytes.count - dataStart, name: name)
        return (metadata, tensors)
    }

    static func decode(_ data: Data, layout: ParameterLayout, name: String) throws -> [Float] {
        let bytes = [UInt8](data)
        let (header, dataStart) = try parseHeader(bytes, name: name)
        let payload = bytes.count - dataStart
        let expected = Dictionary(uniqueKeysWithValues: layout.tensors.map { ($0.name, $0) })
        // A checkpoint's own tensors (optimizer state) sit beside the weights under a prefix; weights readers skip them.
        for key in header.keys where key != "__metadata__" && !key.hasPrefix(extraPrefix) && expected[key] == nil {
            throw InputError("\(name): unexpected tensor '\(key)'; the model's tensors are "
                + layout.tensors.map(\.name).joined(separator: ", "))
        }
        var parameters = [Float](repeating: 0, count: layout.parameterCount)
        for tensor in layout.tensors {
            guard let entry = header[tensor.name] as? [String: Any] else {
                throw InputError("\(name): missing tensor '\(tensor.name)' with shape \(tensor.shape)")
            }
            guard let dtype = entry["dtype"] as? String, let width = elementWidth(dtype) else {
                throw InputError("\(name): tensor '\(tensor.name)' has dtype \(entry["dtype"] ?? "none"); "
                    + "expected F32, F64, F16 or BF16")
            }
            guard let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  shape.count == (entry["shape"] as? [Any])?.count else {
                throw InputError("\(name): tensor '\(tensor.name)' has no valid shape")
            }
            guard shape == tensor.shape else {
                throw InputError("\(name): tensor '\(tensor.name)' has shape \(shape) but the model needs "
                    + "\(tensor.shape); the file is for a different model")
            }
            guard let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload,
                  offsets[1] - offsets[0] == tensor.count * width else {
                throw InputError("\(name): tensor '\(tensor.name)' has data_offsets \(entry["data_offsets"] ?? "none") "
                    + "that do not hold \(tensor.count) \(dtype) values inside the file's \(payload) data bytes")
            }
            let start = dataStart + offsets[0]
            bytes.withUnsafeBytes { raw in
                for i in 0..<tensor.count {
                    parameters[tensor.offset + i] = element(dtype, raw.baseAddress! + start + i * width)
                }
            }
            if let bad = parameters[tensor.offset ..< tensor.offset + tensor.count].firstIndex(where: { !$0.isFinite }) {
                throw InputError("\(name): tensor '\(tensor.name)' holds a non-finite value at flat index "
                    + "\(bad - tensor.offset)")
            }
        }
        // After the checks that name what a model needs: those say more than a layout's flaw would.
        try checkLayout(header, payload: payload, name: name)
        return parameters
    }

    private static func elementWidth(_ dtype: String) -> Int? {
        switch dtype {
        case "F32": 4
        case "F64": 8
        case "F16", "BF16": 2
        default: nil
        }
    }

    private static func element(_ dtype: String, _ p: UnsafeRawPointer) -> Float {
        switch dtype {
        case "F32": Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
        case "F64": Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))))
        case "BF16": Float(bitPattern: UInt32(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self))) << 16)
        default: halfToFloat(UInt16(littleEndian: p.loadUnaligned(as: UInt16.self)))
        }
    }

    /// IEEE binary16 to Float, by bits (Float16 is not available on every platform).
    private static func halfToFloat(_ h: UInt16) -> Float {
        let sign: Float = h & 0x8000 != 0 ? -1 : 1
        let exponent = Int((h >> 10) & 0x1F), fraction = Float(h & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * 0x1p-24
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }

    private static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
