import Engine
import Wire

/// What `--version` prints, on every command: the release, the wire protocol workers must share, and the BLAS
/// kernel this process runs.
enum Version {
    static let release = "0.4.0"
    static var text: String {
        "shardtrain \(release) (protocol \(Header.protocolVersion), libzmq \(Context.version)"
            + "\(Context.hasCurve ? " with CurveZMQ" : ""))"
    }
}
