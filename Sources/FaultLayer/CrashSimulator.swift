import FaultRules
import FuseKit
import Glibc
import System
import Synchronization

/// Power loss (`-o crashsim`): keeps what it takes to undo every change of
/// the backing tree that is not durable yet, and undoes it on `crash`.
///
/// Sits between the injector and the capacity limit, so it sees only what
/// really reaches the backing tree. Built only when crash simulation is on.
/// The model (what is durable, what to undo) is FaultRules' `CrashJournal`;
/// this layer does its I/O:
///
/// - Before a write, truncation, fallocate or copy_file_range destination
///   changes bytes below the file's durable size that are not saved yet, it
///   copies them to the spill file (copy_file_range; else one pread and one pwritev),
///   a nameless O_TMPFILE file outside the mount (nothing leaks on kill -9).
///   The journal's lock is held only around the model, never across I/O.
/// - Before an unlink or a rename that replaces a file, it hard-links the
///   victim into the graveyard `<root>/.faultfs-crashsim/` (hidden by the
///   passthrough), so an undo brings the same inode back.
/// - A failing spill write stops the simulation (status "stopped", an event
///   and a log line); the user's request goes on unharmed.
///
/// A write racing an fsync of the same file is counted as before the fsync:
/// the kernel sends fsync after the writes it covers were answered.
final class CrashSimulator: ForwardingFileSystem, @unchecked Sendable {
    let inner: any FileSystem
    let names: NameDurability
    private let tree: any BackingTree
    private let recorder: InjectionRecorder
    private let log: @Sendable (String) -> Void

    /// The graveyard's name at the backing root.
    static let graveyardName = ".faultfs-crashsim"

    private struct State {
        var journal: CrashJournal
        /// Where the next saved bytes go in the spill file.
        var spillEnd: Int64 = 0
        /// Backing handles of the files whose data or attributes the journal holds.
        var handles: [CrashFileID: [UInt8]] = [:]
        /// Backing handles of the directories name operations changed (kept
        /// until the crash or the unmount: an fsync of one does not make
        /// every operation that needs it durable, say a rename out of it).
        var directoryHandles: [CrashFileID: [UInt8]] = [:]
        var graveSerial: UInt64 = 0
    }
    private let state: Mutex<State>
    private let running = Atomic<Bool>(true)
    private let stopReason = Mutex<String?>(nil)
    /// A crash was accepted: `destroy` (the old session's end) keeps the journal.
    let crashPending = Atomic<Bool>(false)
    private let spillFD: Int32
    private let rootFD: Int32
    private let graveyardFD = Atomic<Int32>(-1)
    /// Open handles with O_SYNC/O_DSYNC: their writes are durable at once.
    private let syncHandles = Mutex<Set<UInt64>>([])
    private let syncHandleCount = Atomic<Int>(0)
    /// copy_file_range from backing files to the spill file works (else pread and pwritev).
    private let copyInKernel = Atomic<Bool>(true)

    init(wrapping inner: any FileSystem, tree: any BackingTree, recorder: InjectionRecorder, names: NameDurability,
         spillDirectory: String, log: @escaping @Sendable (String) -> Void) {
        self.inner = inner
        self.tree = tree
        self.recorder = recorder
        self.names = names
        self.log = log
        state = Mutex(State(journal: CrashJournal(names: names)))
        spillFD = Glibc.open(spillDirectory, O_TMPFILE_RDWR | O_CLOEXEC, 0o600)
        let spillErrno = Errno.current
        rootFD = (try? tree.openBackingRoot()) ?? -1
        if spillFD < 0 {
            stop("spill file in \(spillDirectory): \(spillErrno.description)", errno: spillErrno.rawValue)
        } else if rootFD < 0 {
            stop("the backing root cannot be reopened", errno: EOPNOTSUPP)
        } else if tree.backingHandle(of: rootNodeID) == nil {
            stop("the backing file system has no file handles", errno: EOPNOTSUPP)
        } else {
            Self.removeGraveyard(rootFD: rootFD)
            openGraveyard()
        }
    }

    deinit {
        if spillFD >= 0 { close(spillFD) }
        let g = graveyardFD.exchange(-1, ordering: .relaxed)
        if g >= 0 { close(g) }
        if rootFD >= 0 { close(rootFD) }
    }

    var isRunning: Bool { running.load(ordering: .relaxed) }
    /// Why the simulation stopped, if it did.
    var stoppedBecause: String? { stopReason.withLock { $0 } }

    // MARK: the graveyard

    private func openGraveyard() {
        _ = mkdirat(rootFD, Self.graveyardName, 0o700)
        let fd = openat(rootFD, Self.graveyardName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { stop("graveyard \(Self.graveyardName): \(Errno.current.description)", errno: Errno.current.rawValue); return }
        let old = graveyardFD.exchange(fd, ordering: .relaxed)
        if old >= 0 { close(old) }
    }

    /// Removes `<root>/.faultfs-crashsim` and all in it (a leftover of a
    /// daemon killed with -9, or at unmount). `rootFD`: the backing root.
    static func removeGraveyard(rootFD: Int32) {
        removeTree(rootFD, graveyardName)
    }

    /// Removes `name` under `dirfd`, a directory with everything in it.
    @discardableResult
    static func removeTree(_ dirfd: Int32, _ name: String) -> Bool {
        if unlinkat(dirfd, name, 0) == 0 { return true }
        guard errno == EISDIR || errno == EPERM else { return errno == ENOENT }
        let fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd >= 0, let dir = fdopendir(fd) {
            var children: [String] = []
            let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
            while let d = Glibc.readdir(dir) {
                let child = String(cString: (UnsafeRawPointer(d) + nameOffset).assumingMemoryBound(to: CChar.self))
                if child != "." && child != ".." { children.append(child) }
            }
            for child in children { removeTree(fd, child) }
            closedir(dir)
        } else if fd >= 0 {
            close(fd)
        }
        return unlinkat(dirfd, name, AT_REMOVEDIR) == 0
    }

    private func removeGraves(_ graves: [String]) {
        guard !graves.isEmpty else { return }
        let g = graveyardFD.load(ordering: .relaxed)
        for grave in graves { _ = unlinkat(g, grave, 0) }
    }

    /// Links `name` under `dirfd` into the graveyard; the grave's name, or
    /// the errno (EPERM: a directory; ENOENT: no such name).
    private func keep(_ dirfd: Int32, _ name: FileName) -> Result<String, Errno> {
        let serial = state.withLock { s -> UInt64 in s.graveSerial += 1; return s.graveSerial }
        let grave = "g\(serial)"
        if linkat(dirfd, name.cString, graveyardFD.load(ordering: .relaxed), grave, 0) == 0 { return .success(grave) }
        return .failure(Errno.current)
    }

    // MARK: lifecycle

    func initialize(_ conn: inout Connection, session: SessionState) {
        if isRunning && graveyardFD.load(ordering: .relaxed) >= 0 && rootFD >= 0 {
            // After a crash's session restart, or a clean `destroy`: the graveyard again.
            var st = stat()
            if fstatat(rootFD, Self.graveyardName, &st, AT_SYMLINK_NOFOLLOW) != 0 { openGraveyard() }
        }
        inner.initialize(&conn, session: session)
    }

    /// The session ended. At a clean unmount everything is as durable as it
    /// gets: forget the journal and remove the graveyard. Not when a crash is
    /// pending: `crash` still needs them.
    func destroy() {
        if !crashPending.load(ordering: .acquiring) {
            clear()
            if rootFD >= 0 { Self.removeGraveyard(rootFD: rootFD) }
        }
        inner.destroy()
    }

    /// Forgets the journal and the spill file's contents, empties the graveyard.
    private func clear() {
        let graves = state.withLock { s -> [String] in
            let graves = s.journal.graves
            s.journal.reset()
            s.handles = [:]
            s.directoryHandles = [:]
            s.spillEnd = 0
            return graves
        }
        removeGraves(graves)
        if spillFD >= 0 { _ = ftruncate(spillFD, 0) }
    }

    /// Turns the simulation off for good: the journal is dropped, requests
    /// go on; `crash` is refused with `reason`.
    private func stop(_ reason: String, errno: Int32, op: FaultOp = .syncwrite, node: NodeID? = nil) {
        guard running.exchange(false, ordering: .relaxed) else { return }
        stopReason.withLock { $0 = reason }
        clear()
        if rootFD >= 0 { Self.removeGraveyard(rootFD: rootFD) }
        log("crash simulation stopped: \(reason)")
        recorder.append(InjectionEvent(
            timeNs: SystemClock.realtimeNanoseconds(), ruleID: "-", action: .crashsimStopped, op: op,
            path: node.flatMap { recorder.path(of: $0, name: nil) }, inode: node.map { tree.inodeNumber(of: $0) } ?? 0,
            errno: errno))
    }

    // MARK: saving old bytes

    private func size(_ caller: Caller, _ node: NodeID, handle: UInt64?) throws(Errno) -> Int64 {
        Int64(try inner.getattr(caller, node: node, handle: handle).stat.st_size)
    }

    /// Saves the bytes of `range` that a change is about to overwrite (see
    /// `CrashJournal.overwrite`). Never fails the request: a failure stops
    /// the simulation.
    private func save(_ caller: Caller, _ node: NodeID, handle: UInt64?, _ range: Range<Int64>, _ op: FaultOp) {
        let file = tree.inodeNumber(of: node)
        var pieces = state.withLock { s -> [SavePiece]? in
            guard s.journal.knowsSize(of: file) else { return nil }
            return s.journal.overwrite(file, range, sizeBefore: 0, spillEnd: &s.spillEnd)
        }
        if pieces == nil {
            // First change since the file was durable: its size and handle.
            let sizeBefore: Int64
            do throws(Errno) { sizeBefore = try size(caller, node, handle: handle) } catch {
                return stop("cannot stat a changed file: \(error.description)", errno: error.rawValue, op: op, node: node)
            }
            guard let handleBytes = tree.backingHandle(of: node) else {
                return stop("the backing file system has no file handles", errno: EOPNOTSUPP, op: op, node: node)
            }
            pieces = state.withLock { s in
                s.handles[file] = handleBytes
                return s.journal.overwrite(file, range, sizeBefore: sizeBefore, spillEnd: &s.spillEnd)
            }
        }
        guard let pieces, let first = pieces.first, let last = pieces.last else { return }
        if pieces.count == 1 && copyInKernel.load(ordering: .relaxed) {
            // The usual case, one piece: file to spill file inside the kernel.
            var copied: Int64 = 0
            while copied < first.length {
                let n: Int
                do throws(Errno) {
                    n = try tree.copyBacking(of: node, handle: handle, offset: first.fileOffset + copied,
                                             length: Int(first.length - copied), to: spillFD, at: first.spillOffset + copied)
                } catch .EXDEV, .ENOSYS, .EINVAL, .EOPNOTSUPP {
                    copyInKernel.store(false, ordering: .relaxed)  // not here: read and write from now on
                    break
                } catch {
                    return stop("spill file: \(error.description)", errno: error.rawValue, op: op, node: node)
                }
                if n == 0 { break }  // the file ends here: the rest below is zeros
                copied += Int64(n)
            }
            if copied == first.length { return }
            if copyInKernel.load(ordering: .relaxed) {
                let zeros = [UInt8](repeating: 0, count: Int(first.length - copied))
                if zeros.withUnsafeBytes({ pwrite(spillFD, $0.baseAddress, $0.count, off_t(first.spillOffset + copied)) }) != zeros.count {
                    let e = Errno.current
                    return stop("spill file: \(e.description)", errno: e.rawValue, op: op, node: node)
                }
                return
            }
        }
        let spanStart = first.fileOffset, span = Int(last.fileOffset + last.length - spanStart)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: span, alignment: 4096)
        defer { buffer.deallocate() }
        var got = 0
        do throws(Errno) {
            while got < span {
                let n = try tree.readBacking(of: node, handle: handle, offset: spanStart + Int64(got),
                                             into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]))
                if n == 0 { break }
                got += n
            }
        } catch {
            return stop("cannot read the bytes a change overwrites: \(error.description)", errno: error.rawValue, op: op, node: node)
        }
        if got < span { buffer.baseAddress!.advanced(by: got).initializeMemory(as: UInt8.self, repeating: 0, count: span - got) }
        // One pwritev: the pieces lie back to back in the spill file.
        var vectors = pieces.map { iovec(iov_base: buffer.baseAddress! + Int($0.fileOffset - spanStart), iov_len: Int($0.length)) }
        let total = pieces.reduce(0) { $0 + Int($1.length) }
        var written = 0
        var offset = first.spillOffset
        var index = 0
        while written < total {
            let n = vectors[index...].withUnsafeBufferPointer { pwritev(spillFD, $0.baseAddress, Int32($0.count), off_t(offset)) }
            if n <= 0 {
                let e = n < 0 ? Errno.current : Errno.ENOSPC
                return stop("spill file: \(e.description)", errno: e.rawValue, op: op, node: node)
            }
            written += n
            offset += Int64(n)
            var rest = n
            while index < vectors.count && rest >= vectors[index].iov_len { rest -= vectors[index].iov_len; index += 1 }
            if rest > 0 { vectors[index].iov_base += rest; vectors[index].iov_len -= rest }
        }
    }

    /// Keeps the attributes of `node` before a change of mode, owner or times.
    private func saveAttributes(_ caller: Caller, _ node: NodeID, handle: UInt64?) {
        let file = tree.inodeNumber(of: node)
        guard !state.withLock({ $0.journal.savedAttributes(of: file) }) else { return }
        guard let st = try? inner.getattr(caller, node: node, handle: handle).stat,
              let handleBytes = tree.backingHandle(of: node) else { return }
        state.withLock { s in
            s.handles[file] = handleBytes
            s.journal.attributesChanging(file, old: SavedAttributes(st))
        }
    }

    private func synced(_ node: NodeID, dataOnly: Bool) {
        let file = tree.inodeNumber(of: node)
        let (freed, graves) = state.withLock { s in
            let result = s.journal.fileSynced(file, dataOnly: dataOnly)
            if s.journal.files[file] == nil { s.handles[file] = nil }
            return result
        }
        // Give the spill file's space back.
        for piece in freed { _ = csys_fallocate(spillFD, 3 /* PUNCH_HOLE | KEEP_SIZE */, off_t(piece.spillOffset), off_t(piece.length)) }
        removeGraves(graves)
    }

    /// Remembers the handle of a directory a name operation changed.
    private func directory(_ node: NodeID) -> CrashFileID {
        let id = tree.inodeNumber(of: node)
        if state.withLock({ $0.directoryHandles[id] != nil }) { return id }
        if let handle = tree.backingHandle(of: node) { state.withLock { $0.directoryHandles[id] = handle } }
        return id
    }

    private func record(_ change: NameChange) {
        let graves = state.withLock { $0.journal.record(change, timeNs: SystemClock.realtimeNanoseconds()) }
        removeGraves(graves)
    }

    // MARK: data requests

    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        guard isRunning else {
            return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
        save(caller, node, handle: handle, Int64(offset)..<Int64(offset) + Int64(data.count), fromWriteback ? .writeback : .syncwrite)
        let written = try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        if !fromWriteback && syncHandleCount.load(ordering: .relaxed) > 0 && syncHandles.withLock({ $0.contains(handle) }) {
            synced(node, dataOnly: true)
        }
        return written
    }

    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        guard isRunning else { return try inner.setattr(caller, node: node, changes: changes) }
        let f = changes.fields
        if f.contains(.size) { save(caller, node, handle: changes.handle, Int64(changes.size)..<Int64.max, .truncate) }
        if !f.isDisjoint(with: [.mode, .uid, .gid, .atime, .mtime, .atimeNow, .mtimeNow, .killSUID, .killSGID]) {
            saveAttributes(caller, node, handle: changes.handle)
        }
        return try inner.setattr(caller, node: node, changes: changes)
    }

    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        guard isRunning else { return try inner.open(caller, node: node, flags: flags) }
        if flags & O_TRUNC != 0 && flags & O_ACCMODE != O_RDONLY { save(caller, node, handle: nil, 0..<Int64.max, .open) }
        let opened = try inner.open(caller, node: node, flags: flags)
        rememberSync(opened.handle, flags)
        return opened
    }

    private func rememberSync(_ handle: UInt64, _ flags: Int32) {
        guard flags & O_DSYNC_BIT != 0 else { return }  // O_SYNC includes the O_DSYNC bit
        syncHandles.withLock { _ = $0.insert(handle) }
        syncHandleCount.add(1, ordering: .relaxed)
    }

    func release(_ caller: Caller, node: NodeID, handle: UInt64) {
        if syncHandleCount.load(ordering: .relaxed) > 0, syncHandles.withLock({ $0.remove(handle) != nil }) {
            syncHandleCount.subtract(1, ordering: .relaxed)
        }
        inner.release(caller, node: node, handle: handle)
    }

    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        try inner.fsync(caller, node: node, handle: handle, dataOnly: dataOnly)
        if isRunning { synced(node, dataOnly: dataOnly) }
    }

    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        try inner.fsyncdir(caller, node: node, handle: handle, dataOnly: dataOnly)
        guard isRunning else { return }
        let graves = state.withLock { $0.journal.directorySynced(tree.inodeNumber(of: node)) }
        removeGraves(graves)
        synced(node, dataOnly: dataOnly)  // its own attributes, and (posix) the operations that named it
    }

    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        guard isRunning else { return try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length) }
        let punchOrZero: Int32 = 0x02 | 0x10, shifts: Int32 = 0x08 | 0x20  // PUNCH_HOLE|ZERO_RANGE, COLLAPSE|INSERT_RANGE
        let start = Int64(offset)
        if mode & shifts != 0 {
            save(caller, node, handle: handle, start..<Int64.max, .fallocate)
        } else if mode & punchOrZero != 0 {
            save(caller, node, handle: handle, start..<start + Int64(length), .fallocate)
        } else {
            save(caller, node, handle: handle, start..<start, .fallocate)  // may grow the file: its size is kept
        }
        try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
    }

    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        if isRunning {
            let start = Int64(destinationOffset)
            save(caller, destination, handle: destinationHandle, start..<start + Int64(length), .copyFileRange)
        }
        return try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                       to: destination, destinationHandle: destinationHandle,
                                       destinationOffset: destinationOffset, length: length, flags: flags)
    }

    // MARK: name requests

    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        guard isRunning else { return try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags) }
        let result = try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags)
        record(.created(parent: directory(parent), name: name.string, isDirectory: false, inode: tree.inodeNumber(of: result.0.node)))
        rememberSync(result.1.handle, flags)
        return result
    }

    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        let entry = try inner.mknod(caller, parent: parent, name: name, mode: mode, device: device)
        if isRunning { record(.created(parent: directory(parent), name: name.string, isDirectory: false, inode: tree.inodeNumber(of: entry.node))) }
        return entry
    }

    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        let entry = try inner.mkdir(caller, parent: parent, name: name, mode: mode)
        if isRunning { record(.created(parent: directory(parent), name: name.string, isDirectory: true, inode: tree.inodeNumber(of: entry.node))) }
        return entry
    }

    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        let entry = try inner.symlink(caller, target: target, parent: parent, name: name)
        if isRunning { record(.created(parent: directory(parent), name: name.string, isDirectory: false, inode: tree.inodeNumber(of: entry.node))) }
        return entry
    }

    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        let entry = try inner.link(caller, node: node, newParent: newParent, newName: newName)
        if isRunning { record(.linked(parent: directory(newParent), name: newName.string, inode: tree.inodeNumber(of: entry.node))) }
        return entry
    }

    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        guard isRunning else { return try inner.unlink(caller, parent: parent, name: name) }
        let grave = try? tree.withBackingFD(of: parent) { (dirfd) throws(Errno) in try keep(dirfd, name).get() }
        do throws(Errno) {
            try inner.unlink(caller, parent: parent, name: name)
        } catch {
            if let grave { removeGraves([grave]) }
            throw error
        }
        record(.unlinked(parent: directory(parent), name: name.string, grave: grave))
    }

    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        guard isRunning else { return try inner.rmdir(caller, parent: parent, name: name) }
        let attributes = try? tree.withBackingFD(of: parent) { (dirfd) throws(Errno) in
            var st = stat()
            try sysCall { fstatat(dirfd, name.cString, &st, AT_SYMLINK_NOFOLLOW) }
            return SavedAttributes(st)
        }
        try inner.rmdir(caller, parent: parent, name: name)
        record(.removedDirectory(parent: directory(parent), name: name.string,
                                 attributes: attributes ?? SavedAttributes(mode: 0o755, uid: 0, gid: 0)))
    }

    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        guard isRunning else {
            return try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        }
        let exchanged = flags & UInt32(CSYS_RENAME_EXCHANGE) != 0
        let noReplace = flags & 1 != 0  // RENAME_NOREPLACE
        // The file moved: its fsync makes the rename durable (posix model).
        let moved = exchanged ? nil : try? tree.withBackingFD(of: parent) { (dirfd) throws(Errno) -> CrashFileID in
            var st = stat()
            try sysCall { fstatat(dirfd, name.cString, &st, AT_SYMLINK_NOFOLLOW) }
            return CrashFileID(st.st_ino)
        }
        var replaced: NameChange.Replaced?
        if !exchanged && !noReplace {
            replaced = try? tree.withBackingFD(of: newParent) { (dirfd) throws(Errno) -> NameChange.Replaced? in
                switch keep(dirfd, newName) {
                case .success(let grave): return .file(grave: grave)
                case .failure(.ENOENT): return nil
                case .failure:
                    var st = stat()
                    guard fstatat(dirfd, newName.cString, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
                    return (st.st_mode & S_IFMT) == S_IFDIR ? .directory(SavedAttributes(st)) : .lost
                }
            } ?? nil
        }
        do throws(Errno) {
            try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        } catch {
            if case .file(let grave)? = replaced { removeGraves([grave]) }
            throw error
        }
        record(.renamed(from: directory(parent), fromName: name.string, to: directory(newParent), toName: newName.string,
                        replaced: replaced, exchanged: exchanged, inode: moved))
    }

    // MARK: the crash

    /// Undoes, in the backing tree, everything not durable; then forgets it
    /// all. The session must be gone.
    func crash(_ request: CrashRequest) -> CrashReport {
        var report = CrashReport()
        report.request = request
        let (journal, handles, directoryHandles) = state.withLock { ($0.journal, $0.handles, $0.directoryHandles) }
        var undo = Undo(tree: tree, handles: handles, directoryHandles: directoryHandles, spillFD: spillFD, graveyardFD: graveyardFD.load(ordering: .relaxed), log: log)
        defer { undo.closeAll() }
        var sizes: [CrashFileID: Int64] = [:]
        for file in journal.changedFiles where file.durableSize != nil {
            guard let fd = undo.dataFD(file.file) else { continue }
            var st = stat()
            if fstat(fd, &st) == 0 { sizes[file.file] = Int64(st.st_size) }
        }
        let plan = journal.undoPlan(request: request, currentSizes: sizes, nowNs: SystemClock.realtimeNanoseconds())
        report.tornSectorsKept = plan.tornSectorsKept
        var reverted = Set<CrashFileID>()
        for step in plan.steps { undo.run(step, &report, &reverted) }
        report.filesReverted = reverted.count
        crashPending.store(false, ordering: .releasing)
        clear()
        return report
    }
}

/// Carries out undo steps; counts what it did into the report.
private struct Undo {
    let tree: any BackingTree
    let handles: [CrashFileID: [UInt8]]
    let directoryHandles: [CrashFileID: [UInt8]]
    let spillFD: Int32
    let graveyardFD: Int32
    let log: @Sendable (String) -> Void
    /// Open fds by file: nil when the file is gone (not an error: nothing to undo).
    private var data: [CrashFileID: Int32?] = [:]
    private var directories: [CrashFileID: Int32] = [:]

    init(tree: any BackingTree, handles: [CrashFileID: [UInt8]], directoryHandles: [CrashFileID: [UInt8]], spillFD: Int32, graveyardFD: Int32,
         log: @escaping @Sendable (String) -> Void) {
        self.tree = tree; self.handles = handles; self.directoryHandles = directoryHandles; self.spillFD = spillFD; self.graveyardFD = graveyardFD; self.log = log
    }

    mutating func dataFD(_ file: CrashFileID) -> Int32? {
        if let known = data[file] { return known }
        let fd = handles[file].flatMap { try? tree.openBacking(handle: $0, flags: O_RDWR | O_NOFOLLOW) }
        data[file] = fd
        return fd
    }

    private mutating func directoryFD(_ dir: CrashFileID) throws(Errno) -> Int32 {
        if let fd = directories[dir] { return fd }
        guard let handle = directoryHandles[dir] else { throw .ESTALE }
        let fd = try tree.openBacking(handle: handle, flags: O_RDONLY | O_DIRECTORY)
        directories[dir] = fd
        return fd
    }

    func closeAll() {
        for case let fd?? in data.values { close(fd) }
        for fd in directories.values { close(fd) }
    }

    mutating func run(_ step: UndoStep, _ report: inout CrashReport, _ reverted: inout Set<CrashFileID>) {
        do throws(Errno) {
            switch step {
            case .setSize(let file, let size):
                guard let fd = dataFD(file) else { return }
                try sysCall { ftruncate(fd, off_t(size)) }
                report.filesTruncated += 1
            case .restore(let file, let offset, let length, let spillOffset):
                guard let fd = dataFD(file) else { return }
                var copied: Int64 = 0
                while copied < length {
                    var from = off_t(spillOffset + copied), to = off_t(offset + copied)
                    let n = try sysCall { csys_copy_file_range(spillFD, &from, fd, &to, Int(length - copied), 0) }
                    if n == 0 { throw .EIO }  // the spill file is shorter than the journal says
                    copied += Int64(n)
                }
                report.bytesReverted += length
                reverted.insert(file)
            case .zero(let file, let offset, let length):
                guard let fd = dataFD(file) else { return }
                let zeros = [UInt8](repeating: 0, count: Int(length))
                _ = try sysCall { zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } }
                report.bytesReverted += length
                reverted.insert(file)
            case .restoreAttributes(let file, let attributes):
                guard let handle = handles[file] else { return }
                let fd: Int32
                do throws(Errno) { fd = try tree.openBacking(handle: handle, flags: Int32(CSYS_O_PATH) | O_NOFOLLOW) } catch { return }
                defer { close(fd) }
                try Self.apply(attributes, at: fd, name: "")
            case .undoName(let change):
                try undoName(change)
                report.namesUndone += 1
            }
        } catch {
            report.undoErrors += 1
            log("crash: undo step failed (\(error.description)): \(step)")
        }
    }

    private mutating func undoName(_ change: NameChange) throws(Errno) {
        switch change {
        case .created(let parent, let name, let isDirectory, _):
            let dirfd = try directoryFD(parent)
            if isDirectory {
                guard CrashSimulator.removeTree(dirfd, name) else { throw Errno.current }
            } else {
                try sysCall { unlinkat(dirfd, name, 0) }
            }
        case .linked(let parent, let name, _):
            let dirfd = try directoryFD(parent)
            try sysCall { unlinkat(dirfd, name, 0) }
        case .unlinked(let parent, let name, let grave):
            guard let grave else { throw .ENOENT }
            let dirfd = try directoryFD(parent)
            try sysCall { linkat(graveyardFD, grave, dirfd, name, 0) }
        case .removedDirectory(let parent, let name, let attributes):
            try Self.makeDirectory(try directoryFD(parent), name, attributes)
        case .renamed(let from, let fromName, let to, let toName, let replaced, let exchanged, _):
            let fromFD = try directoryFD(from), toFD = try directoryFD(to)
            if exchanged {
                try sysCall { csys_renameat2(toFD, toName, fromFD, fromName, UInt32(CSYS_RENAME_EXCHANGE)) }
                return
            }
            try sysCall { renameat(toFD, toName, fromFD, fromName) }
            switch replaced {
            case .file(let grave)?: try sysCall { linkat(graveyardFD, grave, toFD, toName, 0) }
            case .directory(let attributes)?: try Self.makeDirectory(toFD, toName, attributes)
            case .lost?: throw .ENOENT
            case nil: break
            }
        }
    }

    private static func makeDirectory(_ dirfd: Int32, _ name: String, _ attributes: SavedAttributes) throws(Errno) {
        try sysCall { mkdirat(dirfd, name, mode_t(attributes.mode & 0o7777)) }
        let fd = try sysCall { openat(dirfd, name, Int32(CSYS_O_PATH) | O_NOFOLLOW | O_CLOEXEC) }
        defer { close(fd) }
        try apply(attributes, at: fd, name: "")
    }

    /// Owner, then mode (chown clears set-id bits), then times.
    static func apply(_ a: SavedAttributes, at fd: Int32, name: String) throws(Errno) {
        let flags = Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW
        try sysCall { fchownat(fd, name, a.uid, a.gid, flags) }
        var st = stat()
        try sysCall { fstatat(fd, "", &st, flags) }
        if (st.st_mode & S_IFMT) != S_IFLNK {
            try sysCall { chmod("/proc/self/fd/\(fd)", mode_t(a.mode & 0o7777)) }
        }
        var times = (timespec(tv_sec: Int(a.atimeSeconds), tv_nsec: Int(a.atimeNanoseconds)),
                     timespec(tv_sec: Int(a.mtimeSeconds), tv_nsec: Int(a.mtimeNanoseconds)))
        try withUnsafePointer(to: &times) { (p) throws(Errno) -> Void in
            try p.withMemoryRebound(to: timespec.self, capacity: 2) { (ts) throws(Errno) -> Void in
                _ = try sysCall { utimensat(fd, name, ts, flags) }
            }
        }
    }
}

extension SavedAttributes {
    init(_ st: stat) {
        self.init(mode: UInt32(st.st_mode), uid: st.st_uid, gid: st.st_gid,
                  atimeSeconds: Int64(st.st_atim.tv_sec), atimeNanoseconds: Int64(st.st_atim.tv_nsec),
                  mtimeSeconds: Int64(st.st_mtim.tv_sec), mtimeNanoseconds: Int64(st.st_mtim.tv_nsec))
    }
}

/// open(2) flags glibc's headers hide from Swift.
private let O_TMPFILE_RDWR: Int32 = 0o20200000 | O_RDWR  // O_TMPFILE (with O_DIRECTORY) | O_RDWR
private let O_DSYNC_BIT: Int32 = 0o10000
