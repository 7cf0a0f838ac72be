import FuseKit
import Glibc
import Passthrough
import System
import Testing
import TestSupport

/// The passthrough's readdir over a real directory, without a mount: replies
/// cut to a small buffer and resumed at the offsets they name, as the kernel
/// would ask for them.
@Suite(.timeLimit(.minutes(1)))
struct PassthroughListingTests {
    static let count = 3_000
    let directory: String
    let fs: PassthroughFileSystem
    let caller = Caller(uid: 0, gid: 0, pid: 0, umask: 0o022)
    let names: Set<String>

    init() throws { try self.init(lookupBudget: nil) }

    init(lookupBudget: Int64?) throws {
        directory = try makeScratchDirectory("listing")
        names = Set((0..<Self.count).map { "file-\($0)" })
        for name in names {
            let fd = Glibc.open("\(directory)/\(name)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { let e = Errno.current; Self.remove(directory, names); throw e }
            close(fd)
        }
        var options = PassthroughOptions()
        if let lookupBudget { options.unadvisedLookupBudgetNanoseconds = lookupBudget }
        do {
            fs = try PassthroughFileSystem(root: Glibc.open(directory, Int32(CSYS_O_PATH) | O_DIRECTORY | O_CLOEXEC),
                                           options: options)
        } catch {
            Self.remove(directory, names)
            throw error
        }
    }

    /// Every test calls this (deferred) for each fixture it made.
    func removeDirectory() { Self.remove(directory, names) }

    static func remove(_ directory: String, _ names: Set<String>) {
        for name in names { _ = unlink("\(directory)/\(name)") }
        _ = rmdir(directory)
    }

    /// One reply of at most `capacity` bytes, from `offset`.
    func reply(_ handle: UInt64, offset: off_t, plus: Bool, capacity: Int = 4096) throws -> [DirectoryEntry] {
        var buffer = DirectoryBuffer(capacity: capacity)
        try fs.readdir(caller, node: rootNodeID, handle: handle, offset: offset, plus: plus, into: &buffer)
        return buffer.entries(plus: plus)
    }

    @Test("a listing in small replies names every entry once, and a seek back starts over")
    func resumesWhereTheLastReplyStopped() throws {
        defer { removeDirectory() }
        let handle = try fs.opendir(caller, node: rootNodeID, flags: O_RDONLY).handle
        defer { fs.releasedir(caller, node: rootNodeID, handle: handle) }
        var listed: [String] = []
        var offset: off_t = 0
        var replies = 0
        while true {
            let entries = try reply(handle, offset: offset, plus: false)
            if entries.isEmpty { break }
            listed += entries.map(\.name)
            offset = entries.last!.nextOffset
            replies += 1
            if replies == 3 {
                // The kernel may ask again from the start (a rewinddir): the
                // entry kept from the last reply must not leak into this one.
                let again = try reply(handle, offset: 0, plus: false)
                #expect(again.first?.name == listed.first)
                #expect(again.map(\.name) == Array(listed.prefix(again.count)))
            }
        }
        #expect(replies > 10, "4 KiB replies: \(replies)")
        #expect(listed.count == Self.count + 2)
        #expect(Set(listed) == names.union([".", ".."]))
    }

    @Test("the first readdirplus reply sends names alone once its lookup budget is spent; later ones look every entry up")
    func unadvisedPlusReplyWithinItsBudget() throws {
        defer { removeDirectory() }
        let spent = try PassthroughListingTests(lookupBudget: 0)
        defer { spent.removeDirectory() }
        let handle = try spent.fs.opendir(caller, node: rootNodeID, flags: O_RDONLY).handle
        defer { spent.fs.releasedir(caller, node: rootNodeID, handle: handle) }
        let first = try spent.reply(handle, offset: 0, plus: true)
        #expect(first.count > 10)
        #expect(first.allSatisfy { $0.node == 0 }, "no entry looked up")
        #expect(first.filter { $0.name.hasPrefix("file-") }.allSatisfy { $0.type == UInt32(S_IFREG >> 12) && $0.inode != 0 })
        // Offset > 0: the kernel asks for plus only when a lookup advised it.
        let next = try spent.reply(handle, offset: first.last!.nextOffset, plus: true)
        #expect(!next.isEmpty)
        #expect(next.allSatisfy { $0.node != 0 && $0.node != nil })
        for e in next { spent.fs.forget(node: e.node!, count: 1) }
        #expect(Set(first.map(\.name)).isDisjoint(with: next.map(\.name)))
    }

    @Test("with an unbounded budget the first readdirplus reply looks every entry up")
    func unboundedPlusReplyIsFull() throws {
        defer { removeDirectory() }
        let unbounded = try PassthroughListingTests(lookupBudget: .max)
        defer { unbounded.removeDirectory() }
        let handle = try unbounded.fs.opendir(caller, node: rootNodeID, flags: O_RDONLY).handle
        defer { unbounded.fs.releasedir(caller, node: rootNodeID, handle: handle) }
        let files = try unbounded.reply(handle, offset: 0, plus: true).filter { $0.name.hasPrefix("file-") }
        #expect(files.count > 10)
        #expect(files.allSatisfy { $0.node != 0 && $0.node != nil })
        for e in files { unbounded.fs.forget(node: e.node!, count: 1) }
    }

    // No timing is asserted (a loaded machine may spend the 1 ms on one
    // entry): only that the budget, once spent, stays spent within a reply.
    @Test("with the default budget the entries looked up in a first readdirplus reply come first, names alone after")
    func defaultBudgetCutsOnce() throws {
        defer { removeDirectory() }
        let handle = try fs.opendir(caller, node: rootNodeID, flags: O_RDONLY).handle
        defer { fs.releasedir(caller, node: rootNodeID, handle: handle) }
        let files = try reply(handle, offset: 0, plus: true).filter { $0.name.hasPrefix("file-") }
        #expect(files.count > 10)
        let looked = files.prefix { $0.node != 0 }
        #expect(files.dropFirst(looked.count).allSatisfy { $0.node == 0 })
        #expect(files.allSatisfy { $0.type == UInt32(S_IFREG >> 12) && $0.inode != 0 })
        // Forgetting node 0 is a no-op, as the kernel never counts a lookup for it.
        for e in files { fs.forget(node: e.node!, count: 1) }
    }
}
