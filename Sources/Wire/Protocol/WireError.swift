/// Why a received message was refused. Each says what was wrong and the offending value, in one line.
package enum WireError: Error, Equatable, CustomStringConvertible {
    case noFrames
    case tooManyFrames(Int)
    case headerSize(Int)
    case magic(UInt32)
    case version(theirs: UInt16, ours: UInt16)
    case unknownType(UInt16)
    case frameCount(type: MessageType, declared: UInt32, actual: Int, expected: Int)
    case wrongJob(got: UInt64, expected: UInt64)
    case unexpected(MessageType, String)
    case payloadSize(type: MessageType, bytes: Int, expected: String)
    case badText(MessageType, String)
    case badRanges(String)
    case badField(MessageType, String)

    package var description: String {
        switch self {
        case .noFrames: "empty message"
        case .tooManyFrames(let n): "message of \(n) frames; the protocol uses at most \(Codec.maximumFrames)"
        case .headerSize(let n): "header frame of \(n) bytes; expected \(Header.byteCount)"
        case .magic(let m): "bad magic 0x\(String(m, radix: 16)); not a shardtrain message"
        case .version(let theirs, let ours):
            "protocol version \(theirs) but this build speaks \(ours); run the same shardtrain build everywhere"
        case .unknownType(let t): "unknown message type \(t)"
        case .frameCount(let type, let declared, let actual, let expected):
            "\(type) message declares \(declared) payload frames, carries \(actual), needs \(expected)"
        case .wrongJob(let got, let expected): "message for job \(got), this is job \(expected)"
        case .unexpected(let type, let why): "\(type) message not expected: \(why)"
        case .payloadSize(let type, let bytes, let expected): "\(type) payload of \(bytes) bytes; expected \(expected)"
        case .badText(let type, let why): "\(type) text: \(why)"
        case .badRanges(let why): "assignment ranges: \(why)"
        case .badField(let type, let why): "\(type) header: \(why)"
        }
    }
}
