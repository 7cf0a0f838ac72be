// The one trim for text read from /proc and /sys (and the lines of tools'
// output): spaces, tabs, CR and LF at either end.

extension StringProtocol {
    /// The text without blanks (space, tab, CR, LF) at either end.
    public var trimmingBlanks: SubSequence {
        var s = self[...]
        while let c = s.first, c.isBlank { s = s.dropFirst() }
        while let c = s.last, c.isBlank { s = s.dropLast() }
        return s
    }
}

extension Character {
    fileprivate var isBlank: Bool { self == " " || self == "\t" || self == "\r" || self == "\n" }
}
