import Engine
import Foundation
import Platform

extension NPY {
    /// The samples of a features file and a targets file, or of several of each: a path whose file name holds `*`,
    /// `?` or `[…]` names every file it matches, in sorted order, as one array (`data/x-*.npy`), so data stored in
    /// shards trains as one set. float32 features are mapped, not read (see `rows`).
    package static func dataset(features featuresPattern: String, targets targetsPattern: String) throws -> Dataset {
        let featureFiles = try files(featuresPattern, what: "features"),
            targetFiles = try files(targetsPattern, what: "targets")
        var files: [FloatRows] = []
        var width: Int?
        for path in featureFiles {
            let rows = try self.rows(path)
            if let width, rows.width != width {
                throw InputError("\(path): \(rows.width) features per sample, but \(featureFiles[0]) has \(width); "
                    + "every file of \(featuresPattern) must have the same columns")
            }
            width = rows.width
            files.append(rows)
        }
        var targets: [Float] = [], targetWidth: Int?, counts: [(String, Int)] = []
        for path in targetFiles {
            let read = try NPY.read(path)
            if let targetWidth, read.columns != targetWidth {
                throw InputError("\(path): \(read.columns) target columns, but \(targetFiles[0]) has \(targetWidth); "
                    + "every file of \(targetsPattern) must have the same columns")
            }
            targetWidth = read.columns
            targets += read.values
            counts.append((path, read.rows))
        }
        let features = FloatRows(concatenating: files)
        let targetRows = targets.count / max(targetWidth!, 1)
        guard features.count == targetRows else {
            throw InputError("\(targetsPattern): \(targetRows) target rows but \(featuresPattern) has \(features.count) "
                + "samples; both must hold the same samples in the same order")
        }
        var data = try Dataset(name: featuresPattern, rows: features, targets: targets, targetWidth: targetWidth!)
        data.targetsName = targetsPattern
        return data
    }

    /// The files a path names: itself, or, when its file name is a pattern, every match in sorted order.
    static func files(_ pattern: String, what: String) throws -> [String] {
        let name = (pattern as NSString).lastPathComponent
        guard name.contains(where: { "*?[".contains($0) }) else { return [pattern] }
        var found = glob_t()
        defer { globfree(&found) }
        guard glob(pattern, 0, nil, &found) == 0, found.gl_pathc > 0 else {
            throw InputError("\(pattern): no file matches these \(what); check the path and pattern (relative paths "
                + "start at the job file)")
        }
        return (0..<Int(found.gl_pathc)).compactMap { found.gl_pathv[$0].map { String(cString: $0) } }.sorted()
    }
}
