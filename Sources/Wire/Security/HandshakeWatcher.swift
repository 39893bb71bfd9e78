/// A listening socket's handshake events, read on their own thread as they happen: a connection that fails its
/// handshake is gone within a round trip, and only a reader that is already waiting can still see its address.
public final class HandshakeWatcher: Sendable {
    private let thread: SocketThread

    /// Watches `socket` (call on its owner's thread); `handle` receives the events on the watcher's thread.
    public init(_ socket: Socket, context: Context,
                handle: @escaping @Sendable ([HandshakeMonitor.Event]) -> Void) throws {
        let endpoint = try HandshakeMonitor.publish(socket)
        thread = try SocketThread(name: "shardtrain handshakes", make: {
            try HandshakeMonitor.reader(of: endpoint, context: context)
        }, readable: { reader in handle(HandshakeMonitor.drain(reader)) })
    }

    /// Stops the thread and closes its socket (once; waits for it).
    public func stop() { thread.stop() }
}
