import Engine
import Foundation
import Platform

/// Reads NumPy `.npy` arrays (format 1.0–3.0): little-endian float32, float64, int32 or int64, uint8 (images) or
/// bool (labels), C order, one or two dimensions. Every field is checked against the file's real size before use.
package enum NPY {
    /// The array as Floats with its shape `[rows, columns]` (a 1-D array is one column).
    package static func read(_ path: String) throws -> (values: [Float], rows: Int, columns: Int) {
        // Mapped, not read into memory: the only copy made is the Floats.
        let file = try MappedFile(path)
        return try withExtendedLifetime(file) { try parse(file.bytes, name: path) }
    }

    /// The array's rows, its float32 data mapped from the file rather than read (so a data set bigger than memory
    /// trains); any other dtype is read and converted as `read` does. Every value is checked finite either way.
    package static func rows(_ path: String) throws -> FloatRows {
        let file = try MappedFile(path)
        let layout = try self.layout(file.bytes, name: path)
        guard layout.descr == "'<f4'", layout.start % 4 == 0 else {
            let read = try withExtendedLifetime(file) { try parse(file.bytes, name: path) }
            return FloatRows(read.values, width: read.columns)
        }
        let values = (file.bytes.baseAddress! + layout.start).assumingMemoryBound(to: Float.self)
        file.expect(sequential: true)
        defer { file.expect(sequential: false) }
        for index in 0..<layout.rows * layout.columns where !values[index].isFinite {
            throw InputError("\(path): value \(values[index]) at row \(index / layout.columns), column "
                + "\(index % layout.columns) is not finite; clean the data first")
        }
        return FloatRows(chunks: [FloatRows.Chunk(base: values, rows: layout.rows)], width: layout.columns,
                         owners: [file], ownedBytes: 0)
    }

    static func parse(_ data: Data, name: String) throws -> (values: [Float], rows: Int, columns: Int) {
        try data.withUnsafeBytes { try parse($0, name: name) }
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, name: String) throws -> (values: [Float], rows: Int, columns: Int) {
        let (descr, rows, columns, start) = try layout(bytes, name: name)
        let itemSize = descr == "'<f8'" || descr == "'<i8'" ? 8 : descr == "'<f4'" || descr == "'<i4'" ? 4 : 1
        let count = rows * columns
        var values = [Float](repeating: 0, count: count)
        do {
            let base = bytes.baseAddress! + start
            for i in 0..<count {
                let p = base + i * itemSize
                switch descr {
                case "'<f4'": values[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(as: UInt32.self)))
                case "'<f8'": values[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))))
                case "'<i4'": values[i] = Float(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
                case "'|u1'": values[i] = Float(p.load(as: UInt8.self))
                case "'|b1'": values[i] = p.load(as: UInt8.self) == 0 ? 0 : 1
                default: values[i] = Float(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
                }
            }
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw InputError("\(name): value \(values[bad]) at row \(bad / columns), column \(bad % columns) "
                + "is not finite; clean the data first")
        }
        return (values, rows, columns)
    }

    /// The header of a `.npy` file's bytes, checked against their size: dtype, shape as rows and columns, and where
    /// the data starts.
    static func layout(_ bytes: UnsafeRawBufferPointer, name: String) throws
        -> (descr: String, rows: Int, columns: Int, start: Int) {
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else {
            throw InputError("\(name): not a .npy file (no \\x93NUMPY magic); save arrays with numpy.save")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1: headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw InputError("\(name): .npy header is truncated") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            headerStart = 12
        default: throw InputError("\(name): .npy format version \(major) is not supported (1, 2 or 3)")
        }
        guard headerStart + headerLength <= bytes.count,
              let header = String(bytes: bytes[headerStart ..< headerStart + headerLength], encoding: .utf8) else {
            throw InputError("\(name): .npy header of \(headerLength) bytes runs past the end of the file")
        }
        let fields = try headerFields(header, name: name)
        let descr = fields["descr"]!, fortran = fields["fortran_order"]!, shapeText = fields["shape"]!
        if fortran == "True" {
            throw InputError("\(name): array is in Fortran order; save it with numpy.ascontiguousarray first")
        }
        let itemSize: Int
        switch descr {
        case "'<f4'": itemSize = 4
        case "'<f8'": itemSize = 8
        case "'<i4'": itemSize = 4
        case "'<i8'": itemSize = 8
        case "'|u1'", "'|b1'": itemSize = 1
        default:
            throw InputError("\(name): dtype \(descr) is not supported; use little-endian float32, float64, "
                + "int32, int64, uint8 or bool (arr.astype('<f4'))")
        }
        let dims = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "()"))
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = try dims.map { text -> Int in
            guard let n = Int(text), n >= 0, n < 1 << 40 else {
                throw InputError("\(name): shape \(shapeText) has an invalid dimension '\(text)'")
            }
            return n
        }
        guard shape.count == 1 || shape.count == 2 else {
            throw InputError("\(name): shape \(shapeText) has \(shape.count) dimensions; expected 1 or 2 "
                + "(samples, features)")
        }
        let rows = shape[0], columns = shape.count == 2 ? shape[1] : 1
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        let payload = bytes.count - headerStart - headerLength
        // Both products checked: a shape whose byte count wraps to the payload's size would be read far past it.
        let (needed, overflowBytes) = count.multipliedReportingOverflow(by: itemSize)
        guard !overflow, !overflowBytes, needed == payload else {
            throw InputError("\(name): shape \(shapeText) of \(descr) needs \(count &* itemSize) data bytes but "
                + "the file holds \(payload); the file is truncated or its header is wrong")
        }
        return (descr, rows, columns, headerStart + headerLength)
    }

    /// Writes a `[rows, columns]` array (a 1-D one when `columns` is nil) as float32, or as int64 when `integers`.
    package static func write(_ values: [Float], rows: Int, columns: Int?, integers: Bool = false, to path: String) throws {
        let shape = columns.map { "(\(rows), \($0))" } ?? "(\(rows),)"
        var header = "{'descr': '\(integers ? "<i8" : "<f4")', 'fortran_order': False, 'shape': \(shape), }"
        // Magic, version and length take 10 bytes; the header is padded with spaces to a multiple of 64, then \n.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 255), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8)
        bytes.reserveCapacity(bytes.count + values.count * (integers ? 8 : 4))
        for value in values {
            if integers {
                withUnsafeBytes(of: Int64(value).littleEndian) { bytes += $0 }
            } else {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
            }
        }
        do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
            throw InputError("\(path): cannot write it (\(error.localizedDescription)); check the folder")
        }
    }

    /// The text of one key's value in the header's Python dict literal.
    /// The header's dict as numpy writes it and `numpy.lib.format` reads it: exactly the keys 'descr' (a quoted
    /// string), 'fortran_order' (True or False) and 'shape' (a tuple of whole numbers, not nested), each once; the
    /// values as their text. Anything else is refused, so no two readers can see different arrays in one file.
    static func headerFields(_ header: String, name: String) throws -> [String: String] {
        func refuse(_ why: String) -> InputError {
            InputError("\(name): .npy header \(why): \(header.trimmingCharacters(in: .whitespacesAndNewlines).prefix(120))")
        }
        var rest = Substring(header.trimmingCharacters(in: .whitespacesAndNewlines))
        func skipSpaces() { rest = rest.drop { $0 == " " } }
        func take(_ text: String) -> Bool {
            skipSpaces()
            guard rest.hasPrefix(text) else { return false }
            rest = rest.dropFirst(text.count)
            return true
        }
        guard take("{") else { throw refuse("is not a dict") }
        var fields: [String: String] = [:]
        while !take("}") {
            guard take("'"), let close = rest.firstIndex(of: "'") else { throw refuse("has a key that is not quoted") }
            let key = String(rest[..<close])
            rest = rest[rest.index(after: close)...]
            guard take(":") else { throw refuse("has no ':' after '\(key)'") }
            skipSpaces()
            let value: String
            switch key {
            case "descr":
                guard rest.first == "'", let close = rest.dropFirst().firstIndex(of: "'") else {
                    throw refuse("has a 'descr' that is not a quoted string")
                }
                value = String(rest[...close])
            case "fortran_order":
                guard let word = ["True", "False"].first(where: { rest.hasPrefix($0) }) else {
                    throw refuse("has a 'fortran_order' that is not True or False")
                }
                value = word
            case "shape":
                guard rest.first == "(", let close = rest.firstIndex(of: ")") else {
                    throw refuse("has a 'shape' that is not a tuple")
                }
                value = String(rest[...close])
                guard !value.dropFirst().contains("("),
                      value.dropFirst().dropLast().allSatisfy({ $0.isNumber || $0 == "," || $0 == " " }) else {
                    throw refuse("has a 'shape' that is not a tuple of whole numbers")
                }
            default:
                throw refuse("has the key '\(key)'; numpy writes only 'descr', 'fortran_order' and 'shape'")
            }
            guard fields.updateValue(value, forKey: key) == nil else { throw refuse("has the key '\(key)' twice") }
            rest = rest.dropFirst(value.count)
            if take("}") { break }
            guard take(",") else { throw refuse("has no ',' after '\(key)'") }
        }
        guard rest.allSatisfy({ $0 == " " }) else { throw refuse("has text after its dict") }
        for key in ["descr", "fortran_order", "shape"] where fields[key] == nil {
            throw refuse("has no '\(key)' entry")
        }
        return fields
    }
}
