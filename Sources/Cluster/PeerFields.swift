import Wire

/// A worker's peer socket as its hello offers it (`peer=tcp://ADDRESS:PORT`), and as the coordinator's shell records
/// it once checked: the address must be the one the worker's own connection comes from, so no worker can send its
/// peers' parts elsewhere; with keys, the peer's key is the one its connection was admitted with.
enum PeerFields {
    /// What a worker's hello says.
    static let offered = "peer"
    /// What the shell records (names a hello cannot carry: the decoder escapes control characters in names).
    static let endpoint = "\u{0}peer endpoint"
    static let key = "\u{0}peer key"
    /// The key the connection itself was admitted with (keys only), whatever its peer socket: what a refusal for good
    /// and an accusation are kept under.
    static let connectionKey = "\u{0}connection key"

    /// `fields` with the checked peer endpoint and key in place of anything of theirs under those names.
    static func checked(_ fields: [String: String], address: String?, key: String?) -> [String: String] {
        var out = fields
        out[endpoint] = nil
        out[Self.key] = nil
        out[connectionKey] = key
        guard let offer = fields[offered], PeerList.isPeerEndpoint(offer), let address,
              offer.dropFirst("tcp://".count).split(separator: ":").first.map(String.init) == address else { return out }
        out[endpoint] = offer
        out[Self.key] = key
        return out
    }
}
