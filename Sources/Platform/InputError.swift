/// Bad input from a user: a job file, a data file, a weights file or a flag. The message is one line naming what
/// was wrong, the offending value and what to do; the run stops before training starts.
package struct InputError: Error, CustomStringConvertible, Equatable {
    package let message: String

    package init(_ message: String) { self.message = message }

    package var description: String { message }
}
