// A rule: what to inject, into which requests, how often. Its `description`
// is the canonical control-language text, which parses back to an equal rule.

/// What a rule does to a request it selects.
public enum FaultAction: Sendable, Equatable {
    /// Reply with this errno.
    case fail(errno: Int32)
    /// Pass the request on, but answer this late.
    case delay(nanoseconds: UInt64)
    /// Hold the request until `release`, or until the timeout (then pass it on).
    case stall(timeoutNanoseconds: UInt64?)
    /// Reply success to a write without storing the data.
    case drop
    /// Store and acknowledge only part of a write; nil means the default (see `shortWriteLength`).
    case short(bytes: Int64?)
    /// Let a read or write succeed with `bytes` bytes of its data changed
    /// (silent corruption; see `Corruption`).
    case corrupt(bytes: Int64, pattern: CorruptionPattern)

    /// The action's word in the control language and in events.
    public var name: String {
        switch self {
        case .fail: "fail"
        case .delay: "delay"
        case .stall: "stall"
        case .drop: "drop"
        case .short: "short"
        case .corrupt: "corrupt"
        }
    }

    /// How many bytes a short write stores and acknowledges out of `requested`:
    /// `bytes` if given, else half; always at least one byte less than
    /// requested (so the write really is short), and never negative.
    public static func shortWriteLength(requested: Int64, bytes: Int64?) -> Int64 {
        let wanted = bytes ?? requested / 2
        return max(0, min(wanted, requested - 1))
    }
}

/// The `offset=A-B` filter: byte range [A, B), or [A, ∞) when B is nil.
public struct ByteRange: Sendable, Equatable, CustomStringConvertible {
    public var lowerBound: Int64
    public var upperBound: Int64?

    public init(_ lowerBound: Int64, _ upperBound: Int64?) {
        self.lowerBound = lowerBound
        self.upperBound = upperBound
    }

    /// Whether a request's range [offset, offset+length) overlaps this one.
    /// A request of length 0 counts as the single byte at `offset` (a
    /// truncate to that size, say); a request without offset (-1) never overlaps.
    public func overlaps(offset: Int64, length: Int64) -> Bool {
        guard offset >= 0 else { return false }
        let (sum, overflow) = offset.addingReportingOverflow(max(length, 1))
        let requestEnd = overflow ? Int64.max : sum
        return requestEnd > lowerBound && upperBound.map { offset < $0 } ?? true
    }

    public var description: String {
        formatSize(lowerBound) + "-" + (upperBound.map(formatSize) ?? "")
    }
}

public struct Rule: Sendable, Equatable, CustomStringConvertible {
    /// Set by `id=`, or by the engine (`r1`, `r2`, ...) when the rule is added.
    public var id: String?
    public var action: FaultAction
    public var ops: OpSet

    // Filters: a request must pass all that are set.
    public var path: PathGlob?
    public var offsetRange: ByteRange?
    /// `ranges=`: block mode's image byte ranges (a file's blocks, the journal).
    public var byteRanges: ByteRangeSet?
    public var comm: String?
    public var pid: Int32?

    // Selection among the requests that pass the filters.
    /// Let this many through first.
    public var after: UInt64
    /// Then inject on every Nth.
    public var every: UInt64?
    /// Inject at most this many times; then the rule is dormant.
    public var count: UInt64?
    /// Inject with this probability, drawn from a generator seeded with `seed` (default 1).
    public var probability: Double?
    public var seed: UInt64?

    public init(action: FaultAction, ops: OpSet, id: String? = nil,
                path: PathGlob? = nil, offsetRange: ByteRange? = nil,
                comm: String? = nil, pid: Int32? = nil,
                after: UInt64 = 0, every: UInt64? = nil, count: UInt64? = nil,
                probability: Double? = nil, seed: UInt64? = nil) {
        self.id = id
        self.action = action
        self.ops = ops
        self.path = path
        self.offsetRange = offsetRange
        self.comm = comm
        self.pid = pid
        self.after = after
        self.every = every
        self.count = count
        self.probability = probability
        self.seed = seed
    }

    /// The canonical text: `ACTION OPS [ERRNO|DURATION] key=value...`, keys in a fixed
    /// order, defaults left out.
    public var description: String {
        var words = [action.name]
        words.append(ops.canonicalText)
        if case .delay(let ns) = action { words.append(formatDuration(ns)) }
        if case .fail(let errno) = action { words.append(errnoName(errno) ?? String(errno)) }

        func add(_ key: String, _ value: String?) {
            if let value { words.append(key + "=" + value) }
        }
        add("id", id)
        add("path", path?.pattern)
        add("offset", offsetRange?.description)
        add("ranges", byteRanges?.description)
        add("comm", comm)
        add("pid", pid.map { String($0) })
        add("after", after == 0 ? nil : String(after))
        add("every", every.map { String($0) })
        add("count", count.map { String($0) })
        add("prob", probability.map { String($0) })
        add("seed", seed.map { String($0) })
        if case .stall(let timeout?) = action { add("timeout", formatDuration(timeout)) }
        if case .short(let bytes?) = action { add("bytes", formatSize(bytes)) }
        if case .corrupt(let bytes, let pattern) = action {
            add("bytes", bytes == Corruption.defaultBytes ? nil : formatSize(bytes))
            add("pattern", pattern == .flip ? nil : pattern.rawValue)
        }
        return words.joined(separator: " ")
    }

    /// Ops for which the kernel, on ENOSYS, marks the op unsupported for the
    /// rest of the connection (fs/fuse: no_flush, no_fsync, no_create, ...).
    private static let opsDisabledByENOSYS = OpSet([
        .flush, .fsync, .fdatasync, .fsyncdir, .create, .setxattr, .fallocate, .copyFileRange,
    ])

    /// Things the rule will do that its author probably did not intend.
    /// Accepted anyway; shown as `# warning:` lines in the control file.
    public func warnings(for features: MountFeatures) -> [String] {
        let name = "rule " + (id ?? "without id")
        var warnings: [String] = []
        if ops.contains(.writeback), !ops.contains(.syncwrite), !features.writebackCache {
            warnings.append("\(name) targets writeback, but this mount has no writeback cache: only stores through a shared mmap are written back; use write or syncwrite for write(2)")
        }
        if comm != nil || pid != nil, ops.contains(.writeback), features.writebackCache {
            warnings.append("\(name) has comm= or pid=, which never match writeback writes: they carry no caller")
        }
        if case .fail(let errno) = action, errno == 38 /* ENOSYS */ {
            let disabled = ops.intersection(Self.opsDisabledByENOSYS)
            if !disabled.isEmpty {
                warnings.append("\(name): ENOSYS on \(disabled.canonicalText): the kernel then disables these ops for the whole connection (until unmount), even after the rule is cleared")
            }
        }
        return warnings
    }
}
