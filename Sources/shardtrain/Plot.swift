import ArgumentParser
import Engine
import Foundation
import Platform

/// `shardtrain plot METRICS.jsonl… [--output curves.svg]`: training curves of one or more runs as an SVG.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw loss (training and validation) and accuracy against epoch from --metrics files, runs overlaid.",
        version: Version.text)

    @Argument(help: ArgumentHelp("Metrics files (JSON lines, from --metrics); each is one run in the legend.",
                                 valueName: "metrics")) var files: [String]
    @Option(help: ArgumentHelp("The SVG file to write (default: the first metrics file's name with .svg, beside it).",
                               valueName: "file")) var output: String?

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("give at least one metrics file") }
        if let output, !output.hasSuffix(".svg") { throw ValidationError("--output \(output): give a .svg file") }
    }

    func run() throws {
        let output = self.output ?? URL(fileURLWithPath: files[0]).deletingPathExtension().path + ".svg"
        try reportingFailures {
            let runs = try files.map { try Curves.read($0) }
            do {
                try Curves.svg(runs).write(toFile: output, atomically: true, encoding: .utf8)
            } catch {
                throw InputError("--output \(output): cannot write it (\(error.localizedDescription))")
            }
            logToStandardError("wrote \(output): \(runs.count) run\(runs.count == 1 ? "" : "s")")
        }
    }
}

/// One run's curves and their drawing.
struct Curves {
    let name: String
    var series: [String: [(epoch: Double, value: Double)]] = [:]

    static let keys = ["loss", "val_loss", "accuracy", "val_accuracy"]

    static func read(_ path: String) throws -> Curves {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw InputError("\(path): cannot read the metrics file; check the path")
        }
        var curves = Curves(name: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
        for (number, line) in text.split(separator: "\n").enumerated() where !line.isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let epoch = (object["epoch"] as? NSNumber)?.doubleValue else {
                throw InputError("\(path) line \(number + 1): not a metrics record (a JSON object with an epoch)")
            }
            if object["record"] as? String == "step" { continue }  // --metrics-steps records: the curves are per epoch
            for key in keys {
                if let value = (object[key] as? NSNumber)?.doubleValue, value.isFinite {
                    curves.series[key, default: []].append((epoch, value))
                }
            }
        }
        guard curves.series["loss"]?.isEmpty == false else { throw InputError("\(path): no epoch records with a loss") }
        return curves
    }

    static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// Two panels (loss; accuracy when any run has it), shared epoch axis, a legend of runs and line styles.
    static func svg(_ runs: [Curves]) -> String {
        let panels = runs.contains { $0.series["accuracy"] != nil } ? [("loss", ["loss", "val_loss"]),
                                                                       ("accuracy", ["accuracy", "val_accuracy"])]
            : [("loss", ["loss", "val_loss"])]
        let width = 860.0, panelHeight = 300.0, top = 40.0, left = 70.0, right = 200.0, gap = 70.0
        let height = top + Double(panels.count) * (panelHeight + gap)
        var body = ""
        let epochs = runs.flatMap { $0.series.values.flatMap { $0.map(\.epoch) } }
        let xTicks = niceTicks(epochs.min() ?? 0, epochs.max() ?? 1)
        for (index, (title, keys)) in panels.enumerated() {
            let y0 = top + Double(index) * (panelHeight + gap)
            let values = runs.flatMap { run in keys.flatMap { run.series[$0]?.map(\.value) ?? [] } }
            let yTicks = niceTicks(values.min() ?? 0, values.max() ?? 1)
            let plotWidth = width - left - right
            func x(_ e: Double) -> Double { left + (e - xTicks.first!) / (xTicks.last! - xTicks.first!) * plotWidth }
            func y(_ v: Double) -> Double { y0 + panelHeight - (v - yTicks.first!) / (yTicks.last! - yTicks.first!) * panelHeight }
            body += "<rect x=\"\(left)\" y=\"\(y0)\" width=\"\(plotWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#444\"/>\n"
            for tick in yTicks {
                body += "<line x1=\"\(left)\" y1=\"\(y(tick))\" x2=\"\(left + plotWidth)\" y2=\"\(y(tick))\" stroke=\"#ddd\"/>"
                body += "<text x=\"\(left - 8)\" y=\"\(y(tick) + 4)\" text-anchor=\"end\">\(label(tick))</text>\n"
            }
            for tick in xTicks {
                body += "<line x1=\"\(x(tick))\" y1=\"\(y0)\" x2=\"\(x(tick))\" y2=\"\(y0 + panelHeight)\" stroke=\"#eee\"/>"
                body += "<text x=\"\(x(tick))\" y=\"\(y0 + panelHeight + 18)\" text-anchor=\"middle\">\(label(tick))</text>\n"
            }
            body += "<text x=\"\(left + plotWidth / 2)\" y=\"\(y0 + panelHeight + 38)\" text-anchor=\"middle\">epoch</text>"
            body += "<text x=\"\(left)\" y=\"\(y0 - 10)\" font-weight=\"bold\">\(title)</text>\n"
            for (runIndex, run) in runs.enumerated() {
                for key in keys {
                    guard let points = run.series[key], !points.isEmpty else { continue }
                    let path = points.map { "\(format(x($0.epoch))),\(format(y($0.value)))" }.joined(separator: " ")
                    let dash = key.hasPrefix("val_") ? " stroke-dasharray=\"6 4\"" : ""
                    body += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(colours[runIndex % colours.count])\" "
                        + "stroke-width=\"2\"\(dash)/>\n"
                }
            }
        }
        // Legend: one colour per run, solid for training and dashed for validation.
        var legendY = top + 10
        for (runIndex, run) in runs.enumerated() {
            let colour = colours[runIndex % colours.count]
            body += "<line x1=\"\(width - right + 20)\" y1=\"\(legendY)\" x2=\"\(width - right + 50)\" y2=\"\(legendY)\" "
                + "stroke=\"\(colour)\" stroke-width=\"3\"/><text x=\"\(width - right + 58)\" y=\"\(legendY + 4)\">"
                + "\(escape(run.name))</text>\n"
            legendY += 22
        }
        body += "<line x1=\"\(width - right + 20)\" y1=\"\(legendY + 8)\" x2=\"\(width - right + 50)\" y2=\"\(legendY + 8)\" "
            + "stroke=\"#444\" stroke-width=\"2\"/><text x=\"\(width - right + 58)\" y=\"\(legendY + 12)\">training</text>"
        // The dashed line's entry only where some run has validation figures.
        if runs.contains(where: { $0.series.keys.contains { $0.hasPrefix("val_") } }) {
            body += "<line x1=\"\(width - right + 20)\" y1=\"\(legendY + 30)\" x2=\"\(width - right + 50)\" y2=\"\(legendY + 30)\" "
                + "stroke=\"#444\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"\(width - right + 58)\" "
                + "y=\"\(legendY + 34)\">validation</text>"
        }
        body += "\n"
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="13">
            <rect width="100%" height="100%" fill="white"/>
            \(body)</svg>

            """
    }

    /// Round tick values covering [low, high]: 1, 2 or 5 times a power of ten apart, 4 to 8 of them.
    static func niceTicks(_ low: Double, _ high: Double) -> [Double] {
        var low = low, high = high
        // A flat curve gets a band around it, wide enough to matter at its magnitude.
        if high - low <= max(abs(low), abs(high)) * 1e-9 {
            let margin = max(0.5, max(abs(low), abs(high)) * 0.05)
            low -= margin
            high += margin
        }
        let raw = (high - low) / 5
        let power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw } ?? raw
        guard step.isFinite, step > 0, (high - low) / step < 100 else { return [low, high] }
        let first = floor(low / step) * step, last = ceil(high / step) * step
        return stride(from: first, through: last + step / 2, by: step).map { ($0 / step).rounded() * step }
    }

    static func label(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e6 ? String(Int(value)) : String(format: "%g", value)
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
