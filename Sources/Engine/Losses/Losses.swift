import Foundation

/// The training loss, defined as PyTorch defines it with `reduction='mean'`.
///
/// Each sample's loss is summed in Double, so a loss beyond float32's range from finite outputs (an MSE of 4.8e38) is
/// a number, not ∞: only a NaN or ∞ among the gradients stops a run. The engine never divides inside a slice: each function returns the SUM over the slice of per-sample losses and
/// writes the gradient of that sum. A per-sample loss is the mean over its output elements (MSE, MAE, both BCEs) or
/// the sample's cross-entropy, so dividing the sum by the sample count gives PyTorch's mean exactly as defined.
package enum Loss: String, Sendable, CaseIterable {
    /// `nn.MSELoss`: mean of (ŷ − y)².
    case mse
    /// `nn.L1Loss`: mean of |ŷ − y|.
    case mae
    /// `nn.BCELoss` on probabilities, with PyTorch's clamp of each log at −100.
    case bce
    /// `nn.BCEWithLogitsLoss` on logits, in its overflow-free form.
    case bceLogits = "bce_logits"
    /// `nn.CrossEntropyLoss` on logits: integer class targets, or one probability per class.
    case crossEntropy = "cross_entropy"

    /// Whether the loss reads the output layer's pre-activation (logits) rather than its activation.
    package var readsLogits: Bool { self == .bceLogits || self == .crossEntropy }

    /// Whether the run reports accuracy.
    package var isClassification: Bool { self != .mse && self != .mae }

    /// Sum of per-sample losses over `rows` samples, the gradient of that sum into `gradient`, and the number of
    /// correct predictions (0 for regression losses). `output` is the logits when `readsLogits`, else the
    /// activations; `targets` has `targetWidth` columns (1 for class indices).
    func evaluate(output: UnsafePointer<Float>, targets: UnsafePointer<Float>, rows: Int, cols: Int,
                  targetWidth: Int, gradient: UnsafeMutablePointer<Float>?) -> (lossSum: Double, correct: Int) {
        switch self {
        case .mse: (mseLoss(output, targets, rows: rows, cols: cols, gradient: gradient), 0)
        case .mae: (l1Loss(output, targets, rows: rows, cols: cols, gradient: gradient), 0)
        case .bce:
            (binaryCrossEntropy(output, targets, rows: rows, cols: cols, gradient: gradient),
             thresholdMatches(output, targets, rows: rows, cols: cols, threshold: 0.5))
        case .bceLogits:
            (binaryCrossEntropyWithLogits(output, targets, rows: rows, cols: cols, gradient: gradient),
             thresholdMatches(output, targets, rows: rows, cols: cols, threshold: 0))
        case .crossEntropy:
            crossEntropyLoss(output, targets, rows: rows, classes: cols, targetWidth: targetWidth, gradient: gradient)
        }
    }
}

/// MSE: per-sample loss `(1/D) Σ (ŷ − y)²`; gradient `2 (ŷ − y) / D`.
func mseLoss(_ predictions: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int, cols: Int,
             gradient: UnsafeMutablePointer<Float>?) -> Double {
    let scale = 1 / Float(cols)
    var total = 0.0
    for r in 0..<rows {
        var sample = 0.0
        for c in 0..<cols {
            let i = r * cols + c, diff = predictions[i] - targets[i]
            sample += Double(diff) * Double(diff)
            gradient?[i] = 2 * diff * scale
        }
        total += sample / Double(cols)
    }
    return total
}

/// MAE: per-sample loss `(1/D) Σ |ŷ − y|`; gradient `sign(ŷ − y) / D`, 0 where they are equal (as PyTorch).
func l1Loss(_ predictions: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int, cols: Int,
            gradient: UnsafeMutablePointer<Float>?) -> Double {
    let scale = 1 / Float(cols)
    var total = 0.0
    for r in 0..<rows {
        var sample = 0.0
        for c in 0..<cols {
            let i = r * cols + c, diff = predictions[i] - targets[i]
            sample += Double(abs(diff))
            gradient?[i] = diff > 0 ? scale : (diff < 0 ? -scale : 0)
        }
        total += sample / Double(cols)
    }
    return total
}

/// BCE on probabilities: `−[y·max(log p, −100) + (1−y)·max(log(1−p), −100)]`;
/// gradient `(p − y) / max(p(1−p), 1e−12)`, PyTorch's guarded form.
func binaryCrossEntropy(_ probabilities: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int,
                        cols: Int, gradient: UnsafeMutablePointer<Float>?) -> Double {
    let scale = 1 / Float(cols)
    var total = 0.0
    for r in 0..<rows {
        var sample = 0.0
        for c in 0..<cols {
            let i = r * cols + c, p = probabilities[i], y = targets[i]
            let logP = max(Foundation.log(p), -100), logNotP = max(Foundation.log(1 - p), -100)
            sample -= Double(y * logP + (1 - y) * logNotP)
            gradient?[i] = (p - y) / max((1 - p) * p, 1e-12) * scale
        }
        total += sample / Double(cols)
    }
    return total
}

/// BCE on logits: `(1 − y)·x + log(1 + e^{−x})`, computed as `max(x,0) − x·y + log(1 + e^{−|x|})`;
/// gradient `σ(x) − y`.
func binaryCrossEntropyWithLogits(_ logits: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int,
                                  cols: Int, gradient: UnsafeMutablePointer<Float>?) -> Double {
    let scale = 1 / Float(cols)
    var total = 0.0
    for r in 0..<rows {
        var sample = 0.0
        for c in 0..<cols {
            let i = r * cols + c, x = logits[i], y = targets[i]
            sample += Double(max(x, 0) - x * y + Foundation.log1p(Foundation.exp(-abs(x))))
            gradient?[i] = (1 / (1 + Foundation.exp(-x)) - y) * scale
        }
        total += sample / Double(cols)
    }
    return total
}

/// Cross-entropy from logits through log-softmax in PyTorch's shifted form, `log p_c = (z_c − peak) −
/// log Σ e^{z − peak}`, with the sum's log taken as log1p of its non-peak terms (PyTorch takes log of the sum, so
/// the last bits may differ, ours the closer to float64). The shift is subtracted before the log-sum is added back, so a confident sample's small loss
/// is not the difference of two numbers at the logits' magnitude (logits [100, 95, 0], target 0: the loss is
/// log(1 + e^−5) to float32's precision, where `peak + log Σ − z_target` is off by 2e-4 of it).
/// Loss `−log p_target` for a class index, or `−Σ_c y_c log p_c` for per-class probabilities; gradient
/// `p·Σy − y`. A prediction is correct when the arg-max logit is the target class (or the target's arg-max).
func crossEntropyLoss(_ logits: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int, classes: Int,
                  targetWidth: Int, gradient: UnsafeMutablePointer<Float>?) -> (lossSum: Double, correct: Int) {
    var total = 0.0
    var correct = 0
    for r in 0..<rows {
        let z = logits + r * classes, t = targets + r * targetWidth
        var peak = z[0], predicted = 0
        for c in 1..<classes where z[c] > peak { peak = z[c]; predicted = c }
        // Σ e^{z − peak} is 1 (the peak's own term) plus the rest: log1p of the rest keeps its low bits, which
        // a sum rounded near 1 would drop.
        var rest: Float = 0
        for c in 0..<classes where c != predicted { rest += Foundation.exp(z[c] - peak) }
        let logExpSum = Foundation.log1p(rest)
        let g = gradient.map { $0 + r * classes }
        if targetWidth == 1 {
            let target = Int(t[0])
            total -= Double(logProbability(z[target], peak, logExpSum))
            if predicted == target { correct += 1 }
            if let g {
                for c in 0..<classes where c != target { g[c] = Foundation.exp(logProbability(z[c], peak, logExpSum)) }
                // p − 1 as expm1(log p): near 1 the difference would cancel.
                g[target] = Foundation.expm1(logProbability(z[target], peak, logExpSum))
            }
        } else {
            var sample = 0.0, mass: Float = 0, targetClass = 0
            for c in 0..<classes {
                // A class with no target mass adds nothing, even where its log-probability is −∞ (0·−∞ is NaN).
                if t[c] != 0 { sample -= Double(t[c] * logProbability(z[c], peak, logExpSum)) }
                mass += t[c]
                if t[c] > t[targetClass] { targetClass = c }
            }
            total += sample
            if predicted == targetClass { correct += 1 }
            if let g { for c in 0..<classes { g[c] = Foundation.exp(logProbability(z[c], peak, logExpSum)) * mass - t[c] } }
        }
    }
    return (total, correct)
}

/// log p for a logit `z`: the shift first, the log-sum after (a free function: a nested one capturing the row would
/// allocate its context in a debug build's steady-state step).
@inline(__always)
private func logProbability(_ z: Float, _ peak: Float, _ logExpSum: Float) -> Float { (z - peak) - logExpSum }

/// Samples whose every output falls on the target's side of `threshold` (targets split at 0.5).
func thresholdMatches(_ output: UnsafePointer<Float>, _ targets: UnsafePointer<Float>, rows: Int, cols: Int,
                      threshold: Float) -> Int {
    var correct = 0
    for r in 0..<rows {
        var allMatch = true
        for c in 0..<cols where (output[r * cols + c] >= threshold) != (targets[r * cols + c] >= 0.5) {
            allMatch = false
        }
        if allMatch { correct += 1 }
    }
    return correct
}
