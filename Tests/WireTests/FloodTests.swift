import Dispatch
import Foundation
import Engine
import Testing
@testable import Wire

/// A live exchange finishes correctly while another peer floods the same ROUTER with garbage.
@Suite(.serialized)
struct FloodTests {
    @Test("garbage flood beside a real exchange: every step correct, the flooder cut off")
    func floodBesideExchange() throws {
        let context = try Context()
        let router = try Socket(context, .router)
        let parameterCount = 4096, steps = 20
        let limits = Limits(parameterCount: parameterCount, job: 11)
        try SocketTuning.coordinator(router, maximumMessageBytes: limits.maximumFrameBytes)
        try router.bind("tcp://127.0.0.1:*")
        let address = router.lastEndpoint
        let done = DispatchGroup()

        // The honest worker: answers each weights message with weights + 1 until told to stop.
        done.enter()
        DispatchQueue.global().async {
            defer { done.leave() }
            do {
                let dealer = try Socket(context, .dealer)
                try SocketTuning.worker(dealer, maximumMessageBytes: limits.maximumFrameBytes)
                try dealer.connect(address)
                try dealer.send(Codec.hello(fields: ["host": "honest"], cores: 1, pid: 1))
                while try Socket.poll([dealer], timeout: .seconds(10))[0] {
                    guard case .frames(let frames)? = try dealer.receive(maximumFrames: 3) else { continue }
                    let envelope = try Codec.decode(frames, limits: limits)
                    guard case .weights(let w) = envelope.payload else { return }
                    var values = [Float](repeating: 0, count: parameterCount)
                    w.copy(into: &values)
                    try dealer.send([Codec.gradientHeader(job: 11, step: envelope.header.step, worker: 1, samples: 1,
                                                          correct: 0, lossHigh: 0, lossLow: 0, exact: false,
                                                          overflowed: false, attempt: 1),
                                     values.map { $0 + 1 }.withUnsafeBytes { try Message(copying: $0) }])
                }
            } catch { print("honest worker: \(error)") }
        }
        // The flooder: 3,000 messages of random frames, some claiming huge sizes, as fast as it can.
        done.enter()
        DispatchQueue.global().async {
            defer { done.leave() }
            do {
                let dealer = try Socket(context, .dealer)
                try dealer.connect(address)
                var random = Xoshiro(seed: 99)
                let header = try Codec.weightsHeader(job: 11, step: 0, parameterCount: 1 << 30).bytes
                for i in 0..<3000 {
                    let frames = i % 3 == 0 ? [header, random.bytes(64)]
                        : (0...random.index(4)).map { _ in random.bytes(random.index(200)) }
                    try dealer.send(frames.map { try Message(copying: $0) })
                }
            } catch { print("flooder: \(error)") }
        }
        // A raw TCP client that never speaks ZMTP at all.
        rawGarbage(to: address)

        var log: [String] = []
        let guardian = PeerGuard(limit: 5) { log.append($0) }
        var honest: [UInt8]?
        var completed = 0
        let payload = SharedPayload(byteCount: 4 * parameterCount)
        let weights = payload.bytes.bindMemory(to: Float.self, capacity: parameterCount)
        let deadline = ContinuousClock.now + .seconds(60)
        // Until the exchange is done and the flooder has been cut off (the flood is still arriving after it).
        while (completed < steps || !log.contains { $0.hasPrefix("cut off") }) && ContinuousClock.now < deadline {
            guard try Socket.poll([router], timeout: .seconds(1))[0],
                  let received = try router.receive(maximumFrames: Codec.maximumFrames + 1) else { continue }
            guard case .frames(let frames) = received else {
                if case .tooManyFrames(let first, let total) = received, let id = first.first?.bytes, !guardian.isCutOff(id) {
                    guardian.refused(id, name: PeerGuard.name(id), .tooManyFrames(total))
                }
                continue
            }
            let identity = frames[0].bytes
            if guardian.isCutOff(identity) { continue }
            let envelope: Envelope
            do {
                envelope = try Codec.decode(Array(frames.dropFirst()), limits: limits)
            } catch {
                guardian.refused(identity, name: PeerGuard.name(identity), error)
                continue
            }
            switch envelope.payload {
            case .hello where honest == nil:
                honest = identity
            case .gradient(let g) where identity == honest && envelope.header.step == UInt64(completed):
                var correct = true
                g.withValues { raw in
                    for i in 0..<parameterCount where raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) != weights[i] + 1 {
                        correct = false
                    }
                }
                #expect(correct, "step \(completed) came back wrong")
                completed += 1
            default:
                continue
            }
            guard completed < steps, let honest else { continue }
            // Rewrite the weights only when libzmq has let go of the last step's frames.
            while !payload.isIdle { pause(.milliseconds(1)) }
            for i in 0..<parameterCount { weights[i] = Float(completed * parameterCount + i) }
            try router.send([Message(copying: honest), Codec.weightsHeader(job: 11, step: UInt64(completed),
                                                                            parameterCount: parameterCount),
                             Message(sharing: payload)])
        }
        try router.send([Message(copying: honest ?? [0])] + Codec.shutdown("done", job: 11), wait: false)
        done.wait()
        #expect(completed == steps)
        #expect(log.contains { $0.hasPrefix("cut off peer 0x") }, "\(log.prefix(3))")
        #expect(log.count <= 2 * 6, "one line per refused message until the cut-off: \(log.count) lines")
    }

    /// Opens a plain TCP connection to a tcp:// endpoint and writes bytes that are not ZMTP.
    func rawGarbage(to endpoint: String) {
        let parts = endpoint.dropFirst("tcp://".count).split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { return }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return }
        let garbage = [UInt8](repeating: 0xAB, count: 4096)
        _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
