import Foundation
@testable import Engine

/// Paths of committed fixtures and examples, found from this source file.
enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let repository = folder.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
    static func example(_ name: String) -> String { repository.appendingPathComponent("examples/\(name)").path }

    /// goldens.json, made by scripts/make_goldens.py from PyTorch.
    nonisolated(unsafe) static let goldens: [String: Any] = {
        let data = try! Data(contentsOf: folder.appendingPathComponent("goldens.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()
}

/// Reading fields of a golden case.
extension Dictionary where Key == String, Value == Any {
    func floats(_ key: String) -> [Float] { (self[key] as! [NSNumber]).map { $0.floatValue } }
    func doubles(_ key: String) -> [Double] { (self[key] as! [NSNumber]).map { $0.doubleValue } }
    func int(_ key: String) -> Int { (self[key] as! NSNumber).intValue }
    func double(_ key: String) -> Double { (self[key] as! NSNumber).doubleValue }
    func string(_ key: String) -> String { self[key] as! String }
    func dictionary(_ key: String) -> [String: Any] { self[key] as! [String: Any] }
    func list(_ key: String) -> [[String: Any]] { self[key] as! [[String: Any]] }

    /// The model a golden case describes.
    var model: ModelSpec {
        let layers = list("layers").map { layer -> LayerSpec in
            let activation: Activation = switch layer.string("activation") {
            case "relu": .relu
            case "leaky_relu": .leakyReLU(negativeSlope: Float(layer.double("negative_slope")))
            case "sigmoid": .sigmoid
            case "tanh": .tanh
            case "gelu": .gelu
            case "softmax": .softmax
            default: .identity
            }
            return LayerSpec(units: layer.int("units"), activation: activation)
        }
        return ModelSpec(inputs: int("inputs"), layers: layers)
    }
}

/// |actual − expected| ≤ relative·|expected| + absolute, element by element; returns the first failure.
func firstMismatch(_ actual: [Float], _ expected: [Float], relative: Float = 1e-5, absolute: Float = 1e-7)
    -> String? {
    guard actual.count == expected.count else { return "count \(actual.count) ≠ \(expected.count)" }
    for i in actual.indices where !(abs(actual[i] - expected[i]) <= relative * abs(expected[i]) + absolute) {
        return "element \(i): \(actual[i]) vs expected \(expected[i])"
    }
    return nil
}
