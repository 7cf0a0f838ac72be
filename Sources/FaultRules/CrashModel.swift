// Power loss: what a simulated crash is asked to do and what it did, and the
// pure model behind it (no I/O): the journal of changes not yet durable,
// the durability rules, and the plan that undoes them. The crash layer
// (FaultLayer's CrashSimulator) feeds it and carries the plan out; see
// docs/kernel-behaviour.md, "Power loss".

/// When a name operation (create, unlink, rename, ...) becomes durable.
public enum NameDurability: String, Sendable, Equatable, CaseIterable {
    /// Once the directory it changed was fsync'd afterwards, or (for a name
    /// it made: create, link, rename) the file it names: what ext4, XFS and
    /// Btrfs do, and all an application following POSIX relies on.
    case posix
    /// Like ext4's ordered journal: with any later fsync on the mount, or
    /// after the commit interval.
    case journal
}

/// One `crash` command: `crash [torn] [seed=N] [sector=512|4096]`.
public struct CrashRequest: Sendable, Equatable {
    /// Of the writes not yet durable, a seeded subset of sectors survives.
    public var torn = false
    public var seed: UInt64 = 0
    public var sectorSize = 4096
    /// The sector sizes `sector=` accepts.
    public static let sectorSizes = [512, 4096]
    public init(torn: Bool = false, seed: UInt64 = 0, sectorSize: Int = 4096) {
        self.torn = torn
        self.seed = seed
        self.sectorSize = sectorSize
    }

    /// The control line that asks for this crash.
    public var commandText: String {
        torn ? "crash torn seed=\(seed) sector=\(sectorSize)" : "crash"
    }
}

/// What a crash undid in the backing tree.
public struct CrashReport: Sendable, Equatable {
    public var request = CrashRequest()
    /// Files whose bytes were put back to their durable contents.
    public var filesReverted = 0
    public var bytesReverted: Int64 = 0
    /// Files whose size went back to the durable size.
    public var filesTruncated = 0
    /// Name operations undone (creates removed, unlinks and renames reverted, ...).
    public var namesUndone = 0
    /// With `torn`: sectors not yet durable that were kept.
    public var tornSectorsKept = 0
    /// Undo steps that failed (logged one by one; the crash went on).
    public var undoErrors = 0
    public init() {}

    /// The report's JSON members, in a fixed order (the `crash` event, the
    /// status's `last_crash`, `faultfs crash --json`).
    public var jsonMembers: [(String, String)] {
        [("files_reverted", String(filesReverted)), ("bytes_reverted", String(bytesReverted)),
         ("files_truncated", String(filesTruncated)), ("names_undone", String(namesUndone)),
         ("torn_sectors_kept", String(tornSectorsKept)), ("seed", String(request.seed)),
         ("undo_errors", String(undoErrors)), ("torn", request.torn ? "true" : "false"),
         ("sector", String(request.sectorSize))]
    }

    static let jsonKeys = ["files_reverted", "bytes_reverted", "files_truncated", "names_undone",
                           "torn_sectors_kept", "seed", "undo_errors", "torn", "sector"]

    /// One JSON object (no newline).
    public func json() -> String {
        "{" + jsonMembers.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Reads the members `jsonMembers` wrote, from `r` (which may hold other keys).
    init(members r: JSONRecord) throws(JSONRecordError) {
        self.init()
        filesReverted = try r.integer("files_reverted", in: 0...Int.max)
        bytesReverted = try r.integer("bytes_reverted", in: 0...Int64.max)
        filesTruncated = try r.integer("files_truncated", in: 0...Int.max)
        namesUndone = try r.integer("names_undone", in: 0...Int.max)
        tornSectorsKept = try r.integer("torn_sectors_kept", in: 0...Int.max)
        undoErrors = try r.integer("undo_errors", in: 0...Int.max)
        request.seed = try r.integer("seed", in: 0...UInt64.max)
        request.torn = try r.bool("torn")
        request.sectorSize = try r.integer("sector", in: 1...Int.max)
        guard CrashRequest.sectorSizes.contains(request.sectorSize) else { throw .badValue("sector") }
    }

    /// Reads what `json()` wrote. Strict: exactly its keys.
    public static func decode(_ text: String) throws(JSONRecordError) -> CrashReport {
        try decode(JSONRecord(parsing: text))
    }

    static func decode(_ r: JSONRecord) throws(JSONRecordError) -> CrashReport {
        try r.refuseOtherKeys(than: jsonKeys)
        return try CrashReport(members: r)
    }

    /// One line for people: what the crash undid.
    public var summary: String {
        var text = "undid \(namesUndone) name operation\(namesUndone == 1 ? "" : "s"), reverted \(bytesReverted) bytes in \(filesReverted) file\(filesReverted == 1 ? "" : "s"), truncated \(filesTruncated) file\(filesTruncated == 1 ? "" : "s")"
        if request.torn { text += ", kept \(tornSectorsKept) torn sector\(tornSectorsKept == 1 ? "" : "s") (seed \(request.seed), sector \(request.sectorSize))" }
        if undoErrors > 0 { text += ", \(undoErrors) undo error\(undoErrors == 1 ? "" : "s")" }
        return text
    }
}

// MARK: - The model

/// A backing file or directory as the model knows it (the crash layer uses
/// the backing inode number).
public typealias CrashFileID = UInt64

/// Attributes to put back: a removed directory's, or a file's before a
/// chmod/chown/utimes that was not made durable.
public struct SavedAttributes: Sendable, Equatable {
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var atimeSeconds: Int64, atimeNanoseconds: Int64
    public var mtimeSeconds: Int64, mtimeNanoseconds: Int64
    public init(mode: UInt32, uid: UInt32, gid: UInt32, atimeSeconds: Int64 = 0, atimeNanoseconds: Int64 = 0,
                mtimeSeconds: Int64 = 0, mtimeNanoseconds: Int64 = 0) {
        self.mode = mode; self.uid = uid; self.gid = gid
        self.atimeSeconds = atimeSeconds; self.atimeNanoseconds = atimeNanoseconds
        self.mtimeSeconds = mtimeSeconds; self.mtimeNanoseconds = mtimeNanoseconds
    }
}

/// The byte ranges of one file whose old contents are saved in the spill
/// file, and where: sorted, disjoint intervals.
public struct SavedRanges: Sendable, Equatable {
    public struct Piece: Sendable, Equatable {
        public var start: Int64
        public var end: Int64
        public var spillOffset: Int64
        public init(start: Int64, end: Int64, spillOffset: Int64) {
            self.start = start; self.end = end; self.spillOffset = spillOffset
        }
        public var length: Int64 { end - start }
    }
    public private(set) var pieces: [Piece] = []
    public init() {}

    /// The index of the first piece that ends after `offset`.
    private func firstIndex(endingAfter offset: Int64) -> Int {
        var low = 0, high = pieces.count
        while low < high {
            let mid = (low + high) / 2
            if pieces[mid].end <= offset { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// The parts of `range` not saved yet, in order.
    public func gaps(in range: Range<Int64>) -> [Range<Int64>] {
        guard !range.isEmpty else { return [] }
        var out: [Range<Int64>] = []
        var position = range.lowerBound
        var i = firstIndex(endingAfter: position)
        while position < range.upperBound {
            guard i < pieces.count, pieces[i].start < range.upperBound else {
                out.append(position..<range.upperBound)
                break
            }
            if pieces[i].start > position { out.append(position..<pieces[i].start) }
            position = max(position, pieces[i].end)
            i += 1
        }
        return out
    }

    /// Records that `range` (a gap) is saved at `spillOffset`.
    public mutating func insert(_ range: Range<Int64>, spillOffset: Int64) {
        guard !range.isEmpty else { return }
        let i = firstIndex(endingAfter: range.lowerBound)
        precondition(i == pieces.count || pieces[i].start >= range.upperBound, "saved ranges overlap")
        // Joined with the piece before when both are contiguous in the spill file too.
        if i > 0, pieces[i - 1].end == range.lowerBound,
           pieces[i - 1].spillOffset + pieces[i - 1].length == spillOffset {
            pieces[i - 1].end = range.upperBound
            return
        }
        pieces.insert(Piece(start: range.lowerBound, end: range.upperBound, spillOffset: spillOffset), at: i)
    }

    public var byteCount: Int64 { pieces.reduce(0) { $0 + $1.length } }
    public var isEmpty: Bool { pieces.isEmpty }
}

/// What the model knows of one file changed since it was last durable.
public struct FileJournal: Sendable, Equatable {
    public let file: CrashFileID
    /// When it was first changed (torn mode visits files in this order).
    public let order: UInt64
    /// Its size when it was last durable; nil while only attributes changed.
    public var durableSize: Int64?
    /// The old bytes of [0, durableSize) overwritten since.
    public var saved = SavedRanges()
    /// Attributes before the first change of mode, owner or times since the last fsync.
    public var oldAttributes: SavedAttributes?
}

/// One bit of old contents to save before a change goes ahead: `length`
/// bytes at `fileOffset` of the file to `spillOffset` of the spill file.
/// The pieces of one change lie back to back in the spill file.
public struct SavePiece: Sendable, Equatable {
    public var fileOffset: Int64
    public var length: Int64
    public var spillOffset: Int64
    public init(fileOffset: Int64, length: Int64, spillOffset: Int64) {
        self.fileOffset = fileOffset; self.length = length; self.spillOffset = spillOffset
    }
}

/// What a name operation changed, with what it takes to invert it.
/// `inode`: the file the name it made refers to (its backing inode number),
/// whose fsync makes it durable under the `posix` model.
public enum NameChange: Sendable, Equatable {
    /// create, mknod, symlink, mkdir: undone by removing the name (a directory with what is in it).
    case created(parent: CrashFileID, name: String, isDirectory: Bool, inode: CrashFileID)
    /// link: undone by removing the new name.
    case linked(parent: CrashFileID, name: String, inode: CrashFileID)
    /// unlink: undone by linking the inode kept in the graveyard (`grave`) back; nil: it could not be kept.
    case unlinked(parent: CrashFileID, name: String, grave: String?)
    /// rmdir: undone by a mkdir with the saved attributes.
    case removedDirectory(parent: CrashFileID, name: String, attributes: SavedAttributes)
    /// rename: undone by renaming back, then restoring what it replaced.
    /// `inode`: the file moved (nil when unknown, and for an exchange, which moves two).
    case renamed(from: CrashFileID, fromName: String, to: CrashFileID, toName: String,
                 replaced: Replaced?, exchanged: Bool, inode: CrashFileID?)

    /// What a rename replaced at its new name.
    public enum Replaced: Sendable, Equatable {
        case file(grave: String)
        case directory(SavedAttributes)
        /// It could not be kept (the undo then fails, counted).
        case lost
    }

    /// The directory whose fsync makes it durable under the `posix` model.
    public var durabilityDirectory: CrashFileID {
        switch self {
        case .created(let parent, _, _, _), .linked(let parent, _, _), .unlinked(let parent, _, _),
             .removedDirectory(let parent, _, _):
            parent
        case .renamed(_, _, let to, _, _, _, _):
            to
        }
    }

    /// The file whose fsync (or fdatasync) also makes it durable under the
    /// `posix` model: the one a create, link or rename names. An unlink or
    /// rmdir names none.
    public var namedInode: CrashFileID? {
        switch self {
        case .created(_, _, _, let inode), .linked(_, _, let inode): inode
        case .renamed(_, _, _, _, _, _, let inode): inode
        case .unlinked, .removedDirectory: nil
        }
    }

    /// A name in a directory.
    public struct Name: Hashable, Sendable {
        public var directory: CrashFileID
        public var name: String
        public init(_ directory: CrashFileID, _ name: String) { self.directory = directory; self.name = name }
    }

    /// The names it made or removed (a rename: both).
    public var names: [Name] {
        switch self {
        case .created(let parent, let name, _, _), .linked(let parent, let name, _), .unlinked(let parent, let name, _),
             .removedDirectory(let parent, let name, _):
            [Name(parent, name)]
        case .renamed(let from, let fromName, let to, let toName, _, _, _):
            [Name(from, fromName), Name(to, toName)]
        }
    }

    /// The directories it changed.
    public var directories: [CrashFileID] {
        switch self {
        case .renamed(let from, _, let to, _, _, _, _): from == to ? [to] : [from, to]
        default: [durabilityDirectory]
        }
    }

    /// The graveyard entry it keeps, if any (removed once it is durable).
    public var grave: String? {
        switch self {
        case .unlinked(_, _, let grave): grave
        case .renamed(_, _, _, _, .file(let grave)?, _, _): grave
        default: nil
        }
    }
}

public struct NameOperation: Sendable, Equatable {
    public var timeNs: Int64
    public var change: NameChange
    public init(timeNs: Int64, change: NameChange) { self.timeNs = timeNs; self.change = change }
}

/// One step of undoing what is not durable, carried out by the crash layer.
public enum UndoStep: Sendable, Equatable {
    /// ftruncate to `size`.
    case setSize(file: CrashFileID, size: Int64)
    /// Copy `length` bytes from `spillOffset` of the spill file to `offset` of the file.
    case restore(file: CrashFileID, offset: Int64, length: Int64, spillOffset: Int64)
    /// Write zeros (torn: an appended sector that did not survive below one that did).
    case zero(file: CrashFileID, offset: Int64, length: Int64)
    case restoreAttributes(file: CrashFileID, SavedAttributes)
    case undoName(NameChange)
}

public struct UndoPlan: Sendable, Equatable {
    /// Data steps per file (in order of first change), then name operations newest first.
    public var steps: [UndoStep] = []
    /// Torn: sectors that keep their current bytes.
    public var tornSectorsKept = 0
}

/// The journal of changes not yet durable, and the durability rules.
/// Guarded by its owner's lock; every method is cheap (no I/O).
public struct CrashJournal: Sendable {
    public let names: NameDurability
    /// ext4's default commit interval: the `journal` model makes a name
    /// operation durable once it is this old.
    public static let commitIntervalNs: Int64 = 5_000_000_000
    public private(set) var files: [CrashFileID: FileJournal] = [:]
    /// Oldest first.
    public private(set) var nameLog: [NameOperation] = []
    private var nextOrder: UInt64 = 0

    public init(names: NameDurability) { self.names = names }

    public var isEmpty: Bool { files.isEmpty && nameLog.isEmpty }

    // MARK: data

    /// Whether the file's durable size is known (it changed since it was durable).
    public func knowsSize(of file: CrashFileID) -> Bool { files[file]?.durableSize != nil }

    /// Before bytes `range` of `file` change (a write, a truncation, a hole
    /// punched): what must be saved first, with spill space reserved from
    /// `spillEnd` on (advanced). `sizeBefore`: the file's size now, needed
    /// when `knowsSize(of:)` is false (else ignored). Saves only what is
    /// below the durable size and not saved yet.
    public mutating func overwrite(_ file: CrashFileID, _ range: Range<Int64>, sizeBefore: Int64,
                                   spillEnd: inout Int64) -> [SavePiece] {
        var journal = files[file] ?? newJournal(file)
        let durable = journal.durableSize ?? sizeBefore
        journal.durableSize = durable
        var out: [SavePiece] = []
        let limited = range.lowerBound..<max(range.lowerBound, min(range.upperBound, durable))
        for gap in journal.saved.gaps(in: limited) {
            let length = gap.upperBound - gap.lowerBound
            out.append(SavePiece(fileOffset: gap.lowerBound, length: length, spillOffset: spillEnd))
            journal.saved.insert(gap, spillOffset: spillEnd)
            spillEnd += length
        }
        files[file] = journal
        return out
    }

    /// Before the first change of mode, owner or times since the last fsync: keep `old`.
    public mutating func attributesChanging(_ file: CrashFileID, old: SavedAttributes) {
        var journal = files[file] ?? newJournal(file)
        if journal.oldAttributes == nil { journal.oldAttributes = old }
        files[file] = journal
    }

    /// Whether the attributes of `file` were saved already.
    public func savedAttributes(of file: CrashFileID) -> Bool { files[file]?.oldAttributes != nil }

    /// An fsync (`dataOnly`: fdatasync) of `file` succeeded, or an O_SYNC
    /// write went through: its data (and, for fsync, its attributes) is
    /// durable. Name operations: with `posix`, those that named `file`
    /// (with what they depend on); with `journal`, every one so far.
    /// Returns the spill pieces no longer needed and the graves to remove.
    public mutating func fileSynced(_ file: CrashFileID, dataOnly: Bool) -> (freed: [SavedRanges.Piece], graves: [String]) {
        var freed: [SavedRanges.Piece] = []
        if var journal = files[file] {
            freed = journal.saved.pieces
            journal.saved = SavedRanges()
            journal.durableSize = nil
            if !dataOnly { journal.oldAttributes = nil }
            files[file] = journal.oldAttributes == nil ? nil : journal
        }
        let graves: [String]
        switch names {
        case .journal: graves = commitNames(upTo: nameLog.count)
        case .posix: graves = commitNames { $0.namedInode == file }
        }
        return (freed, graves)
    }

    // MARK: names

    /// A name operation succeeded at `timeNs`. Returns graves that became
    /// unneeded (`journal`: operations older than the commit interval).
    public mutating func record(_ change: NameChange, timeNs: Int64) -> [String] {
        nameLog.append(NameOperation(timeNs: timeNs, change: change))
        return expire(nowNs: timeNs)
    }

    /// An fsync of directory `directory` succeeded: under `posix`, the name
    /// operations in it so far are durable (with what they depend on);
    /// under `journal`, all of them. (The directory's own fsync as a file,
    /// `fileSynced`, makes the operations that named it durable.)
    public mutating func directorySynced(_ directory: CrashFileID) -> [String] {
        switch names {
        case .journal: commitNames(upTo: nameLog.count)
        case .posix: commitNames { $0.durabilityDirectory == directory }
        }
    }

    /// `journal`: name operations older than the commit interval are durable.
    public mutating func expire(nowNs: Int64) -> [String] {
        guard names == .journal else { return [] }
        let cut = nameLog.firstIndex { $0.timeNs > nowNs - Self.commitIntervalNs } ?? nameLog.count
        return commitNames(upTo: cut)
    }

    /// Makes the operations `isSynced` picks durable, and with each every
    /// earlier one it depends on: those that made or removed a name it
    /// makes or removes (so each name's durable operations are the first
    /// of its history, and undoing the rest, newest first, finds every name
    /// as it left it), and those that named a directory it changed (a name
    /// does not outlive the directory it is in). Both are what ext4, XFS and
    /// Btrfs persist along with it. One pass, newest first: dependencies
    /// always point back in time.
    private mutating func commitNames(where isSynced: (NameChange) -> Bool) -> [String] {
        // Most fsyncs make no name durable: find that out without allocating.
        guard nameLog.contains(where: { isSynced($0.change) }) else { return [] }
        var neededNames = Set<NameChange.Name>()
        var neededDirectories = Set<CrashFileID>()
        var durable = [Bool](repeating: false, count: nameLog.count)
        var graves: [String] = []
        for index in nameLog.indices.reversed() {
            let change = nameLog[index].change
            let names = change.names
            guard isSynced(change) || names.contains(where: neededNames.contains)
                || change.namedInode.map(neededDirectories.contains) == true else { continue }
            durable[index] = true
            neededNames.formUnion(names)
            neededDirectories.formUnion(change.directories)
            if let grave = change.grave { graves.append(grave) }
        }
        if durable.contains(true) { nameLog = nameLog.indices.filter { !durable[$0] }.map { nameLog[$0] } }
        return graves.reversed()
    }

    private mutating func commitNames(upTo end: Int) -> [String] {
        guard end > 0 else { return [] }
        let graves = nameLog[..<end].compactMap(\.change.grave)
        nameLog.removeFirst(end)
        return graves
    }

    private mutating func newJournal(_ file: CrashFileID) -> FileJournal {
        defer { nextOrder += 1 }
        return FileJournal(file: file, order: nextOrder)
    }

    // MARK: the crash

    /// Every graveyard entry the journal still refers to.
    public var graves: [String] { nameLog.compactMap(\.change.grave) }

    /// Files with data changes, in order of first change.
    public var changedFiles: [FileJournal] { files.values.sorted { $0.order < $1.order } }

    /// The steps that undo everything not durable at `nowNs`: each file's
    /// data and attributes (files in order of first change), then the name
    /// operations, newest first. `currentSizes`: each changed file's size
    /// now (a file missing keeps its durable size as its current size).
    /// With `torn`, each sector not yet durable survives with probability
    /// 1/2, drawn from SplitMix64(seed) in a fixed order: file, then saved
    /// chunks by offset, then appended sectors by offset.
    public func undoPlan(request: CrashRequest, currentSizes: [CrashFileID: Int64], nowNs: Int64 = .max) -> UndoPlan {
        var plan = UndoPlan()
        var random = SplitMix64(seed: request.seed)
        let sector = Int64(max(1, request.sectorSize))
        for journal in changedFiles {
            let file = journal.file
            if let durable = journal.durableSize {
                let current = currentSizes[file] ?? durable
                var restores: [UndoStep] = []
                var zeros: [UndoStep] = []
                var newSize = durable
                if request.torn {
                    for piece in journal.saved.pieces {
                        var start = piece.start
                        while start < piece.end {
                            let end = min(piece.end, (start / sector + 1) * sector)
                            if random.next() & 1 == 1 {
                                plan.tornSectorsKept += 1
                            } else {
                                restores.append(.restore(file: file, offset: start, length: end - start,
                                                         spillOffset: piece.spillOffset + (start - piece.start)))
                            }
                            start = end
                        }
                    }
                    var appended: [(Range<Int64>, Bool)] = []
                    var start = durable
                    while start < current {
                        let end = min(current, (start / sector + 1) * sector)
                        let survives = random.next() & 1 == 1
                        appended.append((start..<end, survives))
                        if survives { plan.tornSectorsKept += 1; newSize = end }
                        start = end
                    }
                    for (range, survives) in appended where !survives && range.upperBound <= newSize {
                        zeros.append(.zero(file: file, offset: range.lowerBound, length: range.upperBound - range.lowerBound))
                    }
                } else {
                    restores = journal.saved.pieces.map {
                        .restore(file: file, offset: $0.start, length: $0.length, spillOffset: $0.spillOffset)
                    }
                }
                if newSize != current || currentSizes[file] == nil { plan.steps.append(.setSize(file: file, size: newSize)) }
                plan.steps += zeros + restores
            }
            if let attributes = journal.oldAttributes { plan.steps.append(.restoreAttributes(file: file, attributes)) }
        }
        let cut = names == .journal ? nowNs &- Self.commitIntervalNs : Int64.min
        for op in nameLog.reversed() where op.timeNs > cut {
            plan.steps.append(.undoName(op.change))
        }
        return plan
    }

    /// Forgets everything (after a crash, or when the model stops).
    public mutating func reset() {
        files = [:]
        nameLog = []
    }
}
