@testable import Engine
import Foundation
@testable import Jobs
@testable import Platform
import Testing

struct SafetensorsTests {
    let spec = ModelSpec(inputs: 3, layers: [LayerSpec(units: 4, activation: .relu),
                                             LayerSpec(units: 2, activation: .sigmoid)])

    @Test("reads a file PyTorch's safetensors wrote from an nn.Sequential state_dict")
    func readsPyTorchFile() throws {
        let golden = Fixtures.goldens["sequential"] as! [String: Any]
        #expect(golden.model == spec)
        let values = try Safetensors.read(Fixtures.path("torch-sequential.safetensors"), layout: spec.layout)
        #expect(values == golden.floats("parameters"))
    }

    @Test("write then read round-trips every bit; names and shapes are nn.Sequential's")
    func roundTrip() throws {
        let parameters = Buffer<Float>(count: spec.layout.parameterCount)
        spec.initialise(parameters, seed: 4)
        parameters[5] = -0.0
        parameters[6] = .leastNonzeroMagnitude
        let data = Safetensors.encode(parameters.array, layout: spec.layout, metadata: ["format": "pt"])
        let back = try Safetensors.decode(data, layout: spec.layout, name: "t")
        #expect(back.map(\.bitPattern) == parameters.array.map(\.bitPattern))
        let headerLength = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        #expect(headerLength % 8 == 0)
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + headerLength)) as! [String: Any]
        #expect(Set(header.keys) == ["__metadata__", "0.weight", "0.bias", "2.weight", "2.bias"])
        #expect((header["2.weight"] as! [String: Any])["shape"] as! [Int] == [2, 4])
    }

    @Test("bad files are refused with a message naming the problem", arguments: [
        ("truncated", "too short"),
        ("header past end", "runs past"),
        ("not json", "not a JSON object"),
        ("missing tensor", "missing tensor '2.bias'"),
        ("extra tensor", "unexpected tensor '4.weight'"),
        ("wrong shape", "tensor '0.weight' has shape [3, 4] but the model needs [4, 3]"),
        ("wrong dtype", "dtype I64"),
        ("offsets outside", "data_offsets"),
        ("nan", "non-finite"),
        // What the reference library refuses too: overlapping tensors, offsets that are not integers, metadata
        // that is not strings, and bytes no tensor holds.
        ("overlapping", "tensors overlap or leave a gap"),
        ("float offsets", "not whole numbers"),
        ("number metadata", "metadata must map strings to strings"),
        ("trailing bytes", "the tensors cover"),
    ])
    func refusesBadFiles(kind: String, message: String) throws {
        let good = Safetensors.encode(Array(repeating: 0.5, count: spec.layout.parameterCount), layout: spec.layout,
                                      metadata: [:])
        let headerLength = Int(good.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: good.subdata(in: 8 ..< 8 + headerLength)) as! [String: Any]
        var payload = good.subdata(in: 8 + headerLength ..< good.count)
        var bytes: Data
        func rebuild() -> Data {
            let json = try! JSONSerialization.data(withJSONObject: header)
            var d = Data()
            withUnsafeBytes(of: UInt64(json.count).littleEndian) { d.append(contentsOf: $0) }
            return d + json + payload
        }
        switch kind {
        case "truncated": bytes = good.prefix(5)
        case "header past end":
            bytes = good
            bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
        case "not json":
            bytes = good
            bytes[8] = UInt8(ascii: "[")
        case "missing tensor": header["2.bias"] = nil; bytes = rebuild()
        case "extra tensor": header["4.weight"] = header["2.bias"]; bytes = rebuild()
        case "wrong shape":
            var entry = header["0.weight"] as! [String: Any]
            entry["shape"] = [3, 4]
            header["0.weight"] = entry
            bytes = rebuild()
        case "wrong dtype":
            var entry = header["0.bias"] as! [String: Any]
            entry["dtype"] = "I64"
            header["0.bias"] = entry
            bytes = rebuild()
        case "offsets outside":
            var entry = header["2.bias"] as! [String: Any]
            entry["data_offsets"] = [payload.count, payload.count + 8]
            header["2.bias"] = entry
            bytes = rebuild()
        case "overlapping":
            // 0.bias and 2.bias both read the first bytes of 0.weight's span... and 2.bias's own bytes go unread.
            var entry = header["2.bias"] as! [String: Any]
            let first = (header["0.weight"] as! [String: Any])["data_offsets"] as! [Int]
            entry["data_offsets"] = [first[0], first[0] + ((entry["data_offsets"] as! [Int])[1] - (entry["data_offsets"] as! [Int])[0])]
            header["2.bias"] = entry
            bytes = rebuild()
        case "float offsets":
            var entry = header["2.bias"] as! [String: Any]
            let offsets = entry["data_offsets"] as! [Int]
            entry["data_offsets"] = [Double(offsets[0]) + 0.5, Double(offsets[1]) + 0.5]
            header["2.bias"] = entry
            bytes = rebuild()
        case "number metadata":
            header["__metadata__"] = ["format": 1]
            bytes = rebuild()
        case "trailing bytes":
            payload.append(contentsOf: [0, 0, 0, 0])
            bytes = rebuild()
        default:
            payload.replaceSubrange(0..<4, with: withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
            bytes = rebuild()
        }
        #expect {
            _ = try Safetensors.decode(bytes, layout: spec.layout, name: "w.safetensors")
        } throws: { error in
            let text = (error as? InputError)?.message ?? ""
            return text.hasPrefix("w.safetensors: ") && text.contains(message) && !text.contains("\n")
        }
    }
}
