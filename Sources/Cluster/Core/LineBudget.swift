/// At most `linesPerWindow` lines of one kind per `window`; the rest are counted and summed up in one line once the
/// window has passed, as the peer guard does for refused messages. A value: the time comes with each line.
struct LineBudget {
    /// What the lines are, for the summary: "join lines".
    let what: String
    var linesPerWindow = 20
    var window: Duration = .seconds(10)
    private var windowStart: ContinuousClock.Instant?
    private var used = 0
    private var withheld = 0

    init(what: String) { self.what = what }

    /// Whether a line may be written at `now`, and the summary of the lines withheld in the window that has just
    /// passed, to write first.
    mutating func take(at now: ContinuousClock.Instant) -> (allowed: Bool, summary: String?) {
        var summary: String?
        if let start = windowStart, now - start < window {
            // Within the window.
        } else {
            if let start = windowStart, withheld > 0 {
                summary = "\(withheld) more \(what) were not logged in the last \(Int((now - start) / .seconds(1))) s"
            }
            windowStart = now
            used = 0
            withheld = 0
        }
        guard used < linesPerWindow else {
            withheld += 1
            return (false, summary)
        }
        used += 1
        return (true, summary)
    }
}
