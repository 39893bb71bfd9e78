import Foundation
import Synchronization

/// A listening socket's handshake events, read on their own thread as they happen: a connection that fails its
/// handshake is gone within a round trip, and only a reader that is already waiting can still see its address.
public final class HandshakeWatcher: @unchecked Sendable {
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Watches `socket` (call on its owner's thread); `handle` receives the events on the watcher's thread.
    public init(_ socket: Socket, context: Context,
                handle: @escaping @Sendable ([HandshakeMonitor.Event]) -> Void) throws {
        let endpoint = try HandshakeMonitor.publish(socket)
        let ready = DispatchSemaphore(value: 0)
        let startError = Mutex<Error?>(nil)
        let thread = Thread { [self] in
            let monitor: HandshakeMonitor
            do {
                monitor = try HandshakeMonitor(reading: endpoint, context: context)
            } catch {
                startError.withLock { $0 = error }
                ready.signal()
                finished.signal()
                return
            }
            ready.signal()
            while !stopping.load(ordering: .acquiring) {
                guard (try? Socket.poll([monitor.socket], timeout: .milliseconds(100)))?[0] == true else { continue }
                handle(monitor.drain())
            }
            monitor.close()
            finished.signal()
        }
        thread.name = "shardtrain handshakes"
        thread.start()
        ready.wait()
        if let error = startError.withLock({ $0 }) { throw error }
    }

    /// Stops the thread and closes its socket (once; waits for it).
    public func stop() {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        finished.wait()
    }

    deinit { stop() }
}
