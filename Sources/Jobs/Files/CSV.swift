import Engine
import Foundation
import Platform

/// Reads a CSV file with a header row: the column named `target` becomes the target, every other column a feature.
/// Fields are numbers; double-quoted fields are accepted. Errors name the line and the column.
package enum CSV {
    /// `targetSetting`: what a user sets to name the target column (the job's `data.target`, or a command's flag).
    package static func read(_ path: String, target: String, targetSetting: String = "data.target") throws -> Dataset {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError("\(path): cannot read the file; check the path (relative paths start at the job file)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw InputError("\(path): not UTF-8 text")
        }
        return try parse(text, target: target, name: path, targetSetting: targetSetting)
    }

    static func parse(_ text: String, target: String, name: String, targetSetting: String = "data.target") throws
        -> Dataset {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated()
            .map { (number: $0.offset + 1, fields: fields(of: $0.element)) }
        lines.removeAll { $0.fields.count == 1 && $0.fields[0].isEmpty }
        guard let header = lines.first else { throw InputError("\(name): the file is empty; it needs a header row") }
        try checkHeader(header.fields, name: name)
        guard let targetColumn = header.fields.firstIndex(of: target) else {
            throw InputError("\(name): no column named '\(target)' in the header "
                + "(\(header.fields.joined(separator: ", "))); set \(targetSetting) to one of them")
        }
        let width = header.fields.count
        guard width >= 2 else { throw InputError("\(name): needs at least one feature column besides '\(target)'") }
        var features: [Float] = [], targets: [Float] = []
        for line in lines.dropFirst() {
            guard line.fields.count == width else {
                throw InputError("\(name): line \(line.number) has \(line.fields.count) fields; the header has \(width)")
            }
            for (column, field) in line.fields.enumerated() {
                guard let value = number(field.trimmingCharacters(in: .whitespaces)) else {
                    throw InputError("\(name): line \(line.number), column '\(header.fields[column])': "
                        + "\(shown(field)) is not a finite decimal number")
                }
                if column == targetColumn { targets.append(value) } else { features.append(value) }
            }
        }
        guard !targets.isEmpty else { throw InputError("\(name): the header has no data rows under it") }
        return try Dataset(name: name, features: features, featureWidth: width - 1, targets: targets, targetWidth: 1)
    }

    /// A decimal number as CSV readers (Python's float, pandas) take it: a sign, digits with at most one point, an
    /// exponent. Swift's own parser also takes hex floats, and stops at a NUL byte ("1\0junk" would be 1).
    static func number(_ text: String) -> Float? {
        var sawDigit = false, sawPoint = false, sawExponent = false, previous: UInt8 = 0
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): sawDigit = true
            case UInt8(ascii: "."): guard !sawPoint && !sawExponent else { return nil }; sawPoint = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"): guard sawDigit && !sawExponent else { return nil }; sawExponent = true
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard previous == 0 || previous == UInt8(ascii: "e") || previous == UInt8(ascii: "E") else { return nil }
            default: return nil
            }
            previous = byte
        }
        guard sawDigit, let value = Float(text), value.isFinite else { return nil }
        return value
    }

    /// A field as an error shows it: quoted, at most 40 characters, control characters (a NUL) escaped.
    static func shown(_ field: String) -> String {
        "'" + field.prefix(40).unicodeScalars.map { $0.properties.generalCategory == .control
            ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined() + "'"
    }

    /// A CSV file of features only (for predictions): every column but `excluding` (when the file has it), with
    /// the header's names.
    package static func readFeatures(_ path: String, excluding: String?) throws -> (values: [Float], columns: Int) {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw InputError("\(path): cannot read the file as UTF-8 text; check the path")
        }
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline).enumerated()
            .map { (number: $0.offset + 1, fields: fields(of: $0.element)) }
        guard let header = lines.first else { throw InputError("\(path): the file is empty; it needs a header row") }
        try checkHeader(header.fields, name: path)
        let skipped = excluding.flatMap { header.fields.firstIndex(of: $0) }
        let width = header.fields.count
        var values: [Float] = []
        for line in lines.dropFirst() {
            guard line.fields.count == width else {
                throw InputError("\(path): line \(line.number) has \(line.fields.count) fields; the header has \(width)")
            }
            for (column, field) in line.fields.enumerated() where column != skipped {
                guard let value = number(field.trimmingCharacters(in: .whitespaces)) else {
                    throw InputError("\(path): line \(line.number), column '\(header.fields[column])': \(shown(field)) "
                        + "is not a finite decimal number")
                }
                values.append(value)
            }
        }
        guard !values.isEmpty else { throw InputError("\(path): the header has no data rows under it") }
        return (values, width - (skipped == nil ? 0 : 1))
    }

    /// Every column needs a name of its own: an unnamed first column is most often a pandas index, which would
    /// otherwise be trained on as a feature.
    private static func checkHeader(_ names: [String], name: String) throws {
        if names.first?.isEmpty == true {
            throw InputError("\(name): the first column has no name (a pandas index?); save it with "
                + "`to_csv(index=False)` or name the column")
        }
        if let empty = names.firstIndex(of: "") {
            throw InputError("\(name): column \(empty + 1) of the header has no name")
        }
        var seen = Set<String>()
        for column in names where !seen.insert(column).inserted {
            throw InputError("\(name): the header names column '\(column)' twice; each column needs its own name")
        }
    }

    /// Splits a line at commas outside double quotes; `""` inside quotes is a quote.
    private static func fields(of line: Substring) -> [String] {
        var result: [String] = [], current = "", quoted = false
        var characters = line.makeIterator()
        while let c = characters.next() {
            if c == "\"" {
                if quoted, let next = characters.next() {
                    if next == "\"" { current.append("\"") } else {
                        quoted = false
                        if next == "," { result.append(current); current = "" } else { current.append(next) }
                    }
                } else { quoted.toggle() }
            } else if c == ",", !quoted {
                result.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        result.append(current)
        return result.map { $0.trimmingCharacters(in: .whitespaces) }
    }
}
