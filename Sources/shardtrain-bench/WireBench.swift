import ArgumentParser
import Foundation
import Wire

/// Wire round trips for scripts/bench-wire.sh: a coordinator process sends weights (one shared payload) to W worker
/// processes and waits for their gradients, both as protocol messages checked by the decoder.
struct WireRoundTrip: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wire", abstract: "Wire weights-out, gradients-back, ms.")
    @Option var endpoint = "tcp://127.0.0.1:5599"
    @Option var workers = 1
    @Option var bytes = 2_143_272
    @Option var iterations = 200
    @Flag(help: "Authenticate and encrypt with CurveZMQ, as a keyed coordinator does.") var curve = false

    func run() throws {
        let count = bytes / 4
        let (limits, context, router) = try benchSocket(.router, bytes: bytes)
        var workerKeys: [String: String] = [:]
        var keyCheck: ZAPHandler?
        if curve {
            let server = try CurveKeyPair.generate(), client = try CurveKeyPair.generate()
            keyCheck = try ZAPHandler(context: context, authorized: [client.publicKey], log: { print($0) })
            try SocketTuning.curveServer(router, keyPair: server)
            // Through the environment: a Z85 key may begin with "-", which would read as a flag.
            workerKeys = ["BENCH_CLIENT_SECRET": client.secretZ85, "BENCH_SERVER_KEY": server.publicKey.z85]
        }
        defer { keyCheck?.stop() }
        try router.bind(endpoint)
        let children = try (0..<workers).map { _ -> Process in
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            child.arguments = ["wire-worker", "--endpoint", endpoint, "--bytes", String(bytes)]
            child.environment = ProcessInfo.processInfo.environment.merging(workerKeys) { $1 }
            try child.run()
            return child
        }
        defer { children.forEach { $0.terminate() } }
        var identities: [[UInt8]] = []
        while identities.count < workers {
            if let dead = children.first(where: { !$0.isRunning }) {
                throw ValidationError("a wire-worker exited with status \(dead.terminationStatus) before saying hello")
            }
            guard try Socket.poll([router], timeout: .milliseconds(200))[0],
                  case .frames(let frames)? = try router.receive(maximumFrames: 4) else { continue }
            identities.append(frames[0].bytes)
        }
        let payload = SharedPayload(byteCount: bytes)
        memset(payload.bytes, 0, bytes)
        var times: [Double] = []
        let clock = ContinuousClock()
        for step in 0..<iterations {
            while !payload.isIdle { usleep(10) }
            let start = clock.now
            let shared = try Message(sharing: payload)
            for identity in identities {
                try router.send([Message(copying: identity), Codec.weightsHeader(job: 1, step: UInt64(step), parameterCount: count),
                                 shared.share()])
            }
            var answered = 0
            while answered < workers {
                guard case .frames(let frames)? = try router.receive(maximumFrames: 4, wait: true) else { continue }
                guard case .gradient = try Codec.decode(Array(frames.dropFirst()), limits: limits).payload else { continue }
                answered += 1
            }
            times.append((clock.now - start) / .microseconds(1) / 1000)
        }
        for identity in identities { try router.send([Message(copying: identity)] + Codec.shutdown("done", job: 1)) }
        children.forEach { $0.waitUntilExit() }
        let sorted = times.dropFirst(10).sorted()
        emit(["median_ms": sorted[sorted.count / 2], "p90_ms": sorted[sorted.count * 9 / 10], "workers": workers,
              "bytes": bytes, "endpoint": endpoint, "implementation": curve ? "wire curve" : "wire"])
    }
}

struct WireWorker: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wire-worker", abstract: "The worker side of `wire`.")
    @Option var endpoint = "tcp://127.0.0.1:5599"
    @Option var bytes = 2_143_272

    func run() throws {
        let count = bytes / 4
        let (limits, _, dealer) = try benchSocket(.dealer, bytes: bytes)
        let environment = ProcessInfo.processInfo.environment
        if let clientSecret = environment["BENCH_CLIENT_SECRET"], let serverKey = environment["BENCH_SERVER_KEY"] {
            try SocketTuning.curveClient(dealer, keyPair: CurveKeyPair(secretZ85: clientSecret),
                                         server: CurvePublicKey(z85: serverKey))
        }
        try dealer.connect(endpoint)
        try dealer.send(Codec.hello(fields: ["host": "bench"], cores: 1, pid: getpid()))
        let weights = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let gradient = SharedPayload(byteCount: bytes)
        memset(gradient.bytes, 0, bytes)
        while true {
            guard case .frames(let frames)? = try dealer.receive(maximumFrames: 3, wait: true) else { continue }
            let envelope = try Codec.decode(frames, limits: limits)
            guard case .weights(let frame) = envelope.payload else { return }
            frame.copy(into: weights)
            while !gradient.isIdle { usleep(10) }
            try dealer.send([Codec.gradientHeader(job: 1, step: envelope.header.step, worker: 1, samples: 1, correct: 0,
                                                  lossHigh: 0, lossLow: 0, exact: false, overflowed: false, attempt: 0),
                             Message(sharing: gradient)])
        }
    }
}

/// The limits of a job whose weights are `bytes` long, and a socket tuned as the coordinator's or a worker's.
private func benchSocket(_ kind: SocketKind, bytes: Int) throws -> (Limits, Context, Socket) {
    let limits = Limits(parameterCount: bytes / 4, job: 1)
    // The coordinator reads its workers on two I/O threads, as the real coordinator does.
    let context = try Context(ioThreads: kind == .router ? 2 : 1)
    let socket = try Socket(context, kind)
    if kind == .router {
        try SocketTuning.coordinator(socket, maximumMessageBytes: limits.maximumFrameBytes)
    } else {
        try SocketTuning.worker(socket, maximumMessageBytes: limits.maximumFrameBytes)
    }
    return (limits, context, socket)
}
