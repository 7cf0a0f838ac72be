// Shell-like path patterns for `path=`: `*` and `?` match within one name,
// `**` as a whole name matches zero or more names (so `**/*.wal` matches
// `x.wal` and `a/b/x.wal`, and `pg_wal/**` matches `pg_wal` and everything
// under it). Paths are relative to the mount root. Matching works on UTF-8
// bytes, without regexes or allocation for native strings.

public struct PathGlob: Sendable, Equatable, CustomStringConvertible {
    /// The pattern as given, minus one leading slash.
    public let pattern: String
    private let segments: [Segment]

    private enum Segment: Sendable, Equatable {
        case anyNames            // `**`
        case name([UInt8])       // UTF-8 of one name, possibly with `*` and `?`
    }

    /// Nil for an empty pattern, an empty name (`a//b`, `dir/`), or `**`
    /// that is not a whole name (`a**`).
    public init?(_ pattern: String) {
        let slash = UInt8(ascii: "/"), star = UInt8(ascii: "*")
        let bytes = Array(pattern.utf8)
        let relative = bytes.first == slash ? bytes.dropFirst() : bytes[...]
        var segments: [Segment] = []
        for name in relative.split(separator: slash, omittingEmptySubsequences: false) {
            let hasDoubleStar = zip(name, name.dropFirst()).contains { $0 == star && $1 == star }
            if name.elementsEqual([star, star]) {
                if segments.last != .anyNames { segments.append(.anyNames) } // `**/**` is `**`
            } else if name.isEmpty || hasDoubleStar {
                return nil
            } else {
                segments.append(.name(Array(name)))
            }
        }
        self.pattern = String(decoding: relative, as: UTF8.self)
        self.segments = segments
    }

    public var description: String { pattern }

    /// The first name of every path this pattern can match, when the pattern
    /// starts with a name without wildcards (`pg_wal/**` → `pg_wal`); nil
    /// otherwise. The rule engine indexes rules by it.
    public var literalFirstName: [UInt8]? {
        guard case .name(let bytes)? = segments.first,
              !bytes.contains(UInt8(ascii: "*")), !bytes.contains(UInt8(ascii: "?")) else { return nil }
        return bytes
    }

    /// The first name of `path` (relative to the mount root), as UTF-8.
    public static func firstName(of path: String) -> ArraySlice<UInt8> {
        var bytes = Array(path.utf8)[...]
        if bytes.first == UInt8(ascii: "/") { bytes = bytes.dropFirst() }
        return bytes.prefix { $0 != UInt8(ascii: "/") }
    }

    /// Whether `path` (relative to the mount root; one leading slash is
    /// ignored) matches. The root itself is the empty path.
    public func matches(_ path: Substring) -> Bool {
        let bytes = path.utf8
        let relative = bytes.first == UInt8(ascii: "/") ? bytes.dropFirst() : bytes
        if let result = relative.withContiguousStorageIfAvailable({ match(from: 0, $0, at: 0) }) {
            return result
        }
        return Array(relative).withUnsafeBufferPointer { match(from: 0, $0, at: 0) }
    }

    /// Whether `segments[segment...]` matches the names of `path` that start at `start`.
    private func match(from segment: Int, _ path: UnsafeBufferPointer<UInt8>, at start: Int) -> Bool {
        guard segment < segments.count else { return start == path.count }
        switch segments[segment] {
        case .anyNames:
            // Try swallowing zero names, then one more at a time.
            var position = start
            while true {
                if match(from: segment + 1, path, at: position) { return true }
                guard position < path.count else { return false }
                position = Self.nameEnd(path, from: position)
                if position < path.count { position += 1 } // past the '/'
            }
        case .name(let pattern):
            guard start < path.count else { return false }
            let end = Self.nameEnd(path, from: start)
            guard Self.nameMatches(pattern, UnsafeBufferPointer(rebasing: path[start..<end])) else { return false }
            return match(from: segment + 1, path, at: end < path.count ? end + 1 : end)
        }
    }

    private static func nameEnd(_ path: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        path[start...].firstIndex(of: UInt8(ascii: "/")) ?? path.count
    }

    /// Classic wildcard matching of one name: on a mismatch, let the most
    /// recent `*` swallow one more character and retry from there.
    private static func nameMatches(_ pattern: [UInt8], _ name: UnsafeBufferPointer<UInt8>) -> Bool {
        var p = 0, n = 0
        var lastStar: (p: Int, n: Int)? = nil
        while n < name.count {
            if p < pattern.count, pattern[p] == UInt8(ascii: "*") {
                lastStar = (p, n)
                p += 1
            } else if p < pattern.count, pattern[p] == UInt8(ascii: "?") {
                p += 1
                n = characterEnd(name, from: n)
            } else if p < pattern.count, pattern[p] == name[n] {
                p += 1
                n += 1
            } else if let star = lastStar {
                let swallowed = characterEnd(name, from: star.n)
                lastStar = (star.p, swallowed)
                p = star.p + 1
                n = swallowed
            } else {
                return false
            }
        }
        while p < pattern.count, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.count
    }

    /// Index after the UTF-8 sequence starting at `start`, so that `?` and `*`
    /// step over whole characters (code points) rather than bytes.
    private static func characterEnd(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var end = start + 1
        while end < bytes.count, bytes[end] & 0b1100_0000 == 0b1000_0000 { end += 1 }
        return end
    }
}
