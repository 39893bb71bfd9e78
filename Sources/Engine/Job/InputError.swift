/// Bad input from a user: a job file, a data file, a weights file or a flag. The message is one line naming what
/// was wrong, the offending value and what to do; the run stops before training starts.
public struct InputError: Error, CustomStringConvertible, Equatable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
