import Foundation
import Wire
import Engine

/// How a worker gets its messages out: a send that never blocks for good, a payload awaited until libzmq lets go of
/// it, the parent process watched.
extension WorkerNode {
    /// Waits until libzmq has let go of `payload` (an earlier result still being sent), up to --idle-timeout.
    func waitUntilIdle(_ payload: SharedPayload, step: UInt64) throws {
        let idleBy = clock.now + settings.idleTimeout
        while !payload.isIdle {
            guard clock.now < idleBy else {
                throw ClusterError("the coordinator has not read step \(step)'s previous result within --idle-timeout; "
                    + "stopping")
            }
            usleep(20)
        }
    }

    /// Sends without ever blocking for good: while the queue to the coordinator is full (it stopped reading, or is
    /// gone), tries again until --idle-timeout, watching the parent process.
    func send(_ dealer: Socket, _ frames: [Message]) throws {
        let deadline = clock.now + settings.idleTimeout
        while true {
            do {
                try dealer.send(frames, wait: false)
                return
            } catch let error as ZMQError where error.wouldBlock {
                try checkParent()
                guard clock.now < deadline else {
                    throw ClusterError("the coordinator has not taken this worker's messages within --idle-timeout "
                        + "(\(Seconds(settings.idleTimeout))); stopping")
                }
                usleep(1000)
            }
        }
    }

    func checkParent() throws {
        if let parent = settings.parentPID, getppid() != parent {
            // Its socket file is left behind when it was killed (SIGKILL runs no cleanup): the local workers remove
            // it, each trying (a second removal finds nothing).
            if settings.endpoint.hasPrefix("ipc://") { unlink(String(settings.endpoint.dropFirst("ipc://".count))) }
            throw ClusterError("the process that started this worker (pid \(parent)) is gone; stopping")
        }
    }

    func decode(_ frames: [Message], _ limits: Limits) throws -> Envelope {
        do {
            return try Codec.decode(frames, limits: limits)
        } catch {
            throw ClusterError("malformed message from the coordinator: \(error)")
        }
    }
}
