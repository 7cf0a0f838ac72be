// The kinds of request a rule can target, and sets of them.

/// One concrete kind of request, as the fault layer classifies it.
/// The raw value is the request's bit in `OpSet`.
public enum FaultOp: UInt8, CaseIterable, Sendable {
    case writeback      // a write the kernel sends from the page cache's writeback
    case syncwrite      // any other write (direct I/O, or no writeback cache)
    case flush, fsync, fdatasync, fsyncdir
    case create, mkdir, mknod, symlink, link, rename, unlink, rmdir
    case truncate       // a setattr that changes the size
    case setattr        // a setattr that does not change the size
    case fallocate, copyFileRange, setxattr, open, read

    /// The op's name in events and `stats`.
    public var name: String {
        switch self {
        case .copyFileRange: "copy_file_range"
        default: String(describing: self)
        }
    }

    /// The control-language word for this op alone. `fsync` is the group
    /// word (fsync and fdatasync, what a user who writes "fsync" means), so
    /// fsync(2) alone is `fsync-only`.
    public var word: String { self == .fsync ? "fsync-only" : name }
}

/// A set of `FaultOp`s: one bit per op, so the hot path can test membership
/// with a single AND.
public struct OpSet: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public static func of(_ op: FaultOp) -> OpSet {
        OpSet(rawValue: 1 << UInt32(op.rawValue))
    }

    public init(_ ops: some Sequence<FaultOp>) {
        self = ops.reduce(into: OpSet()) { $0.formUnion(.of($1)) }
    }

    public func contains(_ op: FaultOp) -> Bool {
        rawValue & (1 << UInt32(op.rawValue)) != 0
    }

    /// The members, in `FaultOp` order.
    public var ops: [FaultOp] {
        FaultOp.allCases.filter(contains)
    }

    /// The word `write`: every write, whatever path it took.
    public static let write = OpSet([.writeback, .syncwrite])
    /// The word `setattr`: every setattr, those that truncate included.
    public static let anySetattr = OpSet([.setattr, .truncate])
    /// The word `fsync`: fsync(2) and fdatasync(2) (sqlite, for one, calls
    /// only fdatasync).
    public static let anyFsync = OpSet([.fsync, .fdatasync])
    /// The word `all`.
    public static let all = OpSet(FaultOp.allCases)

    /// The group words, each naming more than one op.
    static let groups: [(word: String, ops: OpSet)] = [("write", .write), ("fsync", .anyFsync), ("setattr", .anySetattr)]

    /// The words OPS accepts and what each stands for, in the order error
    /// messages list them: every op's `word` (except setattr, a group word
    /// for both kinds) and the group words.
    static let vocabulary: [(word: String, ops: OpSet)] =
        [("write", .write)]
        + FaultOp.allCases.flatMap { op -> [(word: String, ops: OpSet)] in
            switch op {
            case .fsync: [("fsync", .anyFsync), (op.word, .of(op))]
            case .setattr: [("setattr", .anySetattr)]
            default: [(op.word, .of(op))]
            }
        }
        + [("all", .all)]

    /// The set a word names, or nil (case-insensitive).
    static func named(_ word: some StringProtocol) -> OpSet? {
        let lowered = word.lowercased()
        return vocabulary.first { $0.word == lowered }?.ops
    }

    /// The canonical OPS text: `all`, or comma-separated words in `FaultOp`
    /// order, using the group words (`write`, `fsync`, `setattr`) where they apply.
    var canonicalText: String {
        if self == .all { return "all" }
        var remaining = self
        var words: [String] = []
        for op in FaultOp.allCases where remaining.contains(op) {
            if let group = Self.groups.first(where: { $0.ops.contains(op) && remaining.isSuperset(of: $0.ops) }) {
                words.append(group.word)
                remaining.subtract(group.ops)
            } else {
                words.append(op.word)
                remaining.subtract(.of(op))
            }
        }
        return words.joined(separator: ",")
    }
}
