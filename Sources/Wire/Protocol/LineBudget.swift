/// At most `linesPerWindow` lines of one kind per `window`; the rest are counted and summed up in one line once the
/// window has passed (the peer guard's refusals, the coordinator's lines about workers that never became ready). A
/// value: the time comes with each line.
package struct LineBudget {
    /// What the lines are, for the summary: "join lines".
    package let what: String
    package var linesPerWindow = 20
    package var window: Duration = .seconds(10)
    private var windowStart: ContinuousClock.Instant?
    private var used = 0
    private var withheld = 0

    /// `startingAt`: when the first window opens (by default, at the first line).
    package init(what: String, linesPerWindow: Int = 20, window: Duration = .seconds(10),
                 startingAt start: ContinuousClock.Instant? = nil) {
        self.what = what
        self.linesPerWindow = linesPerWindow
        self.window = window
        windowStart = start
    }

    /// Whether a line may be written at `now`, and the summary of the lines withheld in the window that has just
    /// passed, to write first.
    package mutating func take(at now: ContinuousClock.Instant) -> (allowed: Bool, summary: String?) {
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
