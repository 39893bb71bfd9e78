import CZeroMQ
import Foundation
import Synchronization
import Testing
@testable import Wire

/// Real sockets: ROUTER/DEALER exchanges over tcp, ipc and inproc, zero-copy sharing, polling with timeouts.
@Suite(.serialized)
struct TransportTests {
    static let endpoints = ["tcp://127.0.0.1:*", "ipc:///tmp/shardtrain-wire-test-\(getpid())", "inproc://wire-test"]

    @Test("weights out to two workers from one shared buffer, gradients back", arguments: endpoints)
    func exchange(endpoint: String) throws {
        // The socket file stays when the process ends before libzmq closes its listener.
        defer { if endpoint.hasPrefix("ipc://") { unlink(String(endpoint.dropFirst("ipc://".count))) } }
        let context = try Context()
        let router = try Socket(context, .router)
        let parameterCount = 1000
        let limits = Limits(parameterCount: parameterCount, job: 7)
        try SocketTuning.coordinator(router, maximumMessageBytes: limits.maximumFrameBytes)
        try router.bind(endpoint)
        let address = endpoint.hasPrefix("tcp") ? router.lastEndpoint : endpoint
        let workers = try (0..<2).map { _ -> Socket in
            let dealer = try Socket(context, .dealer)
            try SocketTuning.worker(dealer, maximumMessageBytes: limits.maximumFrameBytes)
            try dealer.connect(address)
            try dealer.send(Codec.hello(fields: ["host": "test"], cores: 1, pid: getpid()))
            return dealer
        }
        // Learn the workers' identities from their hellos.
        var identities: [[UInt8]] = []
        while identities.count < 2 {
            guard try Socket.poll([router], timeout: .seconds(5))[0],
                  case .frames(let frames)? = try router.receive(maximumFrames: 4) else {
                Issue.record("no hello within 5 s"); return
            }
            identities.append(frames[0].bytes)
            guard case .hello = try Codec.decode(Array(frames.dropFirst()), limits: Limits()).payload else {
                Issue.record("not a hello"); return
            }
        }
        // One payload, shared by both outgoing frames.
        let payload = SharedPayload(byteCount: 4 * parameterCount)
        let weights = payload.bytes.bindMemory(to: Float.self, capacity: parameterCount)
        for i in 0..<parameterCount { weights[i] = Float(i) * 0.5 }
        let original = try Message(sharing: payload)
        for identity in identities {
            try router.send([Message(copying: identity), Codec.weightsHeader(job: 7, step: 3, parameterCount: parameterCount),
                             original.share()])
        }
        // Each worker reads the weights in place and answers with a fast gradient.
        for (index, worker) in workers.enumerated() {
            guard try Socket.poll([worker], timeout: .seconds(5))[0],
                  case .frames(let frames)? = try worker.receive(maximumFrames: 3) else {
                Issue.record("worker \(index) got no weights"); return
            }
            guard case .weights(let frame) = try Codec.decode(frames, limits: limits).payload else {
                Issue.record("not weights"); return
            }
            var received = [Float](repeating: 0, count: parameterCount)
            frame.copy(into: &received)
            #expect(received == (0..<parameterCount).map { Float($0) * 0.5 })
            let gradient = received.map { $0 + Float(index) }
            try worker.send([Codec.gradientHeader(job: 7, step: 3, worker: UInt32(index), samples: 4, correct: 0,
                                                  lossHigh: 0, lossLow: 0, exact: false, overflowed: false, attempt: 1),
                             gradient.withUnsafeBytes { try Message(copying: $0) }])
        }
        var sums = [Float](repeating: 0, count: parameterCount)
        for _ in 0..<2 {
            guard try Socket.poll([router], timeout: .seconds(5))[0],
                  case .frames(let frames)? = try router.receive(maximumFrames: 4),
                  case .gradient(let g) = try Codec.decode(Array(frames.dropFirst()), limits: limits).payload else {
                Issue.record("no gradient"); return
            }
            g.withValues { raw in for i in 0..<parameterCount { sums[i] += raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) } }
        }
        #expect(sums == (0..<parameterCount).map { Float($0) + 1 })
        // libzmq released every frame over the shared payload.
        _ = consume original
        let deadline = ContinuousClock.now + .seconds(5)
        while !payload.isIdle && ContinuousClock.now < deadline { pause(.milliseconds(10)) }
        #expect(payload.isIdle)
    }

    @Test("the coordinator's and peers' sockets run no ZMTP heartbeat timer (libzmq 4.3.4 aborts through it after a handover: scripts/libzmq-handover-abort.c), and close dead connections by TCP keepalive; a worker's keeps its heartbeats")
    func noHeartbeatTimerOnRouters() throws {
        let context = try Context()
        let router = try Socket(context, .router), peer = try Socket(context, .router), worker = try Socket(context, .dealer)
        defer { (router.close(), peer.close(), worker.close()) }
        try SocketTuning.coordinator(router, maximumMessageBytes: 1 << 20, silence: .seconds(10))
        try SocketTuning.peer(peer, maximumMessageBytes: 1 << 20)
        try SocketTuning.worker(worker, maximumMessageBytes: 1 << 20)
        for socket in [router, peer] {
            #expect(try socket.option(ZMQ_HEARTBEAT_IVL) == 0)
            #expect(try socket.option(ZMQ_TCP_KEEPALIVE) == 1 && socket.option(ZMQ_TCP_KEEPALIVE_IDLE) == 10)
        }
        #expect(try worker.option(ZMQ_HEARTBEAT_IVL) == 1000)
    }

    @Test("poll returns after its timeout when nothing arrives")
    func pollTimeout() throws {
        let context = try Context()
        let router = try Socket(context, .router)
        try router.bind("inproc://idle")
        let start = ContinuousClock.now
        #expect(try Socket.poll([router], timeout: .milliseconds(50)) == [false])
        #expect(ContinuousClock.now - start >= .milliseconds(40))
        let nothing = try router.receive(maximumFrames: 4)
        #expect(nothing == nil)
    }

    @Test("poll with a deadline already passed (a negative timeout) returns at once instead of waiting forever")
    func pollPastDeadline() throws {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex(false)
        // On its own thread (the socket's owner), so a poll that never returns fails the test instead of hanging it.
        Thread.detachNewThread {
            let context = try? Context()
            let router = context.flatMap { try? Socket($0, .router) }
            try? router?.bind("inproc://past-deadline")
            let polled = router.flatMap { try? Socket.poll([$0], timeout: .milliseconds(-5)) }
            result.withLock { $0 = polled == [false] }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 5) == .success, "poll with a negative timeout did not return")
        #expect(result.withLock { $0 })
    }

    @Test("a send to a vanished peer fails as unroutable instead of vanishing")
    func routerMandatory() throws {
        let context = try Context()
        let router = try Socket(context, .router)
        try SocketTuning.coordinator(router, maximumMessageBytes: 1 << 16)
        try router.bind("inproc://mandatory")
        #expect { try router.send([Message(copying: [1, 2, 3]), Message(copying: [0])], wait: false) } throws: {
            ($0 as? ZMQError)?.unroutable == true
        }
    }

    @Test("libzmq has CurveZMQ")
    func curve() { #expect(Context.hasCurve) }
}

/// Sleeps the calling thread (tests wait on libzmq's threads, not on Swift concurrency).
func pause(_ duration: Duration) { Thread.sleep(forTimeInterval: Double(duration / .milliseconds(1)) / 1000) }
