// The `.faultfs` directory, read and written through the FileSystem
// interface as the kernel would: `control` (rules in, rules and errors out),
// `stats`, `events`, the listing, and the names it keeps for itself.
@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Testing
import TestSupport

@Suite(.timeLimit(.minutes(1)))
struct ControlFileTests {
    @Test("rules written to control read back in canonical form with their counters")
    func rulesReadBack() throws {
        let layer = try Layer()
        try layer.control("fail write EIO id=w path=*.wal\ndelay READ 5ms\n")
        let file = try layer.create("x.wal")
        _ = errnoOf { try layer.write(file, [1]) }
        let text = try layer.controlFile("control")
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("# faultfs rules") == true)
        #expect(lines.contains("fail write EIO id=w path=*.wal  # matched=1 hits=1"), "\(text)")
        #expect(lines.contains("delay read 5ms id=r1  # matched=0 hits=0"), "\(text)")
        // Read in small pieces, the text is the same.
        #expect(try layer.controlFile("control", chunk: 7) == text)
    }

    @Test("a refused write fails with EINVAL, changes nothing, and control shows the error until the next good write")
    func refusedWrite() throws {
        let layer = try Layer()
        layer.arm("fail read EIO id=kept")
        #expect(errnoOf { try layer.control("fail write EIO id=new\nfail write ENOPE\n") } == .EINVAL)
        var text = try layer.controlFile("control")
        #expect(text.contains("id=kept") && !text.contains("id=new"), "all or nothing: \(text)")
        #expect(text.contains("# error: line 2, column 12: unknown errno \"ENOPE\""), "\(text)")
        layer.arm("clear kept")
        text = try layer.controlFile("control")
        #expect(!text.contains("# error"), "\(text)")
    }

    @Test("only root and the mounting user may write control; stats and events are read-only")
    func permissions() throws {
        let layer = try Layer()
        layer.caller.uid = 2000
        #expect(errnoOf { _ = try layer.open(".faultfs/control", flags: O_WRONLY) } == .EACCES)
        #expect(errnoOf { _ = try layer.open(".faultfs/control", flags: O_RDONLY) } == nil)
        layer.caller.uid = Layer.owner
        #expect(errnoOf { try layer.control("fail read EIO\n") } == nil)
        layer.caller.uid = 0
        #expect(errnoOf { _ = try layer.open(".faultfs/stats", flags: O_WRONLY) } == .EACCES)
        #expect(errnoOf { _ = try layer.open(".faultfs/events", flags: O_RDWR) } == .EACCES)
    }

    @Test("stats counts every request seen and what was done to it, per op; reset-counters zeroes it")
    func stats() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail write EIO every=2")
        for _ in 0..<5 { _ = errnoOf { try layer.write(file, [1]) } }
        let text = try layer.controlFile("stats")
        #expect(text.hasPrefix("op "), "\(text)")
        #expect(text.split(separator: "\n").count == FaultOp.allCases.count + 1)
        let row = layer.stats(.syncwrite)
        #expect(row["seen"] == 5 && row["failed"] == 2 && row["delayed"] == 0, "\(row)")
        #expect(layer.stats(.create)["seen"] == 1)
        layer.arm("reset-counters")
        #expect(layer.stats(.syncwrite)["seen"] == 0)
    }

    @Test("events: one JSON line per injection, and the file's size follows the log")
    func events() throws {
        let layer = try Layer()
        try layer.mkdir("d")
        let file = try layer.create("d/f")
        layer.caller.pid = getpid()
        layer.arm("fail fdatasync EIO id=e")
        #expect(errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: true) } == .EIO)
        let events = layer.events()
        try #require(events.count == 1)
        let e = events[0]
        #expect(e.rule == "e" && e.action == "fail" && e.op == "fdatasync" && e.path == "d/f")
        #expect(e.offset == nil && e.length == 0 && e.errno == Int(EIO) && e.errnoName == "EIO")
        #expect(e.pid == Int(getpid()) && e.comm == ownProcessName() && !e.writeback)

        let text = try layer.controlFile("events")
        let eventsNode = try layer.node(".faultfs/events")
        let size = try layer.fs.getattr(layer.caller, node: eventsNode, handle: nil).stat.st_size
        #expect(Int(size) == text.utf8.count)
        // A reader that resumes at the old end sees exactly the new line.
        _ = errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: true) }
        let reader = try layer.open(".faultfs/events", flags: O_RDONLY)
        defer { layer.close(reader) }
        let tail = try layer.read(reader, at: off_t(size))
        let all = try layer.controlFile("events")
        #expect(tail == Array(all.utf8.dropFirst(text.utf8.count)))
        #expect(all.split(separator: "\n").count == 2)
    }

    @Test("with an events file, every line of events is appended to it too")
    func eventsFile() throws {
        let (fd, path) = try makeScratchFile("events")
        close(fd)
        defer { unlink(path) }
        var text = ""
        do {
            let layer = try Layer(eventsPath: path)
            let file = try layer.create("f")
            layer.arm("fail read EIO count=2\ncapacity 1M")
            for _ in 0..<3 { _ = errnoOf { _ = try layer.read(file) } }
            text = try layer.controlFile("events")
        }  // the layer, and its events file, closed here
        #expect(text.split(separator: "\n").count == 3, "capacity and two failures: \(text)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
    }

    @Test("every lookup of control answers a new node with the text of that moment; forget drops it")
    func snapshots() throws {
        let layer = try Layer()
        let first = try layer.node(".faultfs/control")
        let firstSize = try layer.fs.getattr(layer.caller, node: first, handle: nil).stat.st_size
        layer.arm("fail read EIO")
        let second = try layer.node(".faultfs/control")
        #expect(first != second)
        #expect(try layer.fs.getattr(layer.caller, node: first, handle: nil).stat.st_size == firstSize)
        #expect(try layer.fs.getattr(layer.caller, node: second, handle: nil).stat.st_size > firstSize)
        #expect(layer.faults.control.snapshots.count == 2)
        layer.fs.forget(node: first, count: 1)
        layer.fs.forget(node: second, count: 1)
        #expect(layer.faults.control.snapshots.count == 0)
    }

    @Test("the control directory's names are its own: not made, removed or renamed over; nothing is made inside it")
    func reservedNames() throws {
        let layer = try Layer()
        #expect(errnoOf { try layer.mkdir(".faultfs") } == .EEXIST)
        #expect(errnoOf { try layer.create(".faultfs") } == .EEXIST)
        #expect(errnoOf { try layer.unlink(".faultfs") } == .EPERM)
        try layer.create("x")
        #expect(errnoOf { try layer.rename("x", ".faultfs") } == .EPERM)
        #expect(errnoOf { try layer.create(".faultfs/new") } == .EACCES)
        #expect(errnoOf { try layer.unlink(".faultfs/control") } == .EACCES)
        #expect(errnoOf { _ = try layer.node(".faultfs/nothing") } == .ENOENT)
        // Only at the root: elsewhere the name is the inner file system's.
        try layer.mkdir("sub")
        #expect(errnoOf { try layer.mkdir("sub/.faultfs") } == nil)
        #expect(layer.inner.calls("mkdir").last?.hasSuffix(" .faultfs") == true)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct DirectoryListingTests {
    private func list(_ layer: Layer, _ node: NodeID, offset: off_t = 0, plus: Bool = false,
                      capacity: Int = 4096) throws(Errno) -> [DirectoryEntry] {
        var buffer = DirectoryBuffer(capacity: capacity)
        try layer.fs.readdir(layer.caller, node: node, handle: 0, offset: offset, plus: plus, into: &buffer)
        return buffer.entries(plus: plus)
    }

    @Test("the control directory lists its four files, resuming at an offset")
    func controlDirectory() throws {
        let layer = try Layer()
        let dir = try layer.node(".faultfs")
        let entries = try list(layer, dir)
        #expect(entries.map(\.name) == [".", "..", "control", "stats", "events", "status"])
        #expect(entries.map(\.nextOffset) == [1, 2, 3, 4, 5, 6])
        #expect(entries.map(\.type) == [UInt32(S_IFDIR >> 12), UInt32(S_IFDIR >> 12)] + Array(repeating: UInt32(S_IFREG >> 12), count: 4))
        #expect(try list(layer, dir, offset: 3).map(\.name) == ["stats", "events", "status"])
    }

    @Test("readdirplus of the control directory: an entry that does not fit leaves no snapshot behind")
    func controlDirectoryPlus() throws {
        let layer = try Layer()
        let dir = try layer.node(".faultfs")
        // Each entry takes 160 bytes here: room for ".", ".." and not "control".
        let cut = try list(layer, dir, plus: true, capacity: 400)
        #expect(cut.map(\.name) == [".", ".."])
        #expect(layer.faults.control.snapshots.count == 0)
        let all = try list(layer, dir, plus: true)
        #expect(all.map(\.name) == [".", "..", "control", "stats", "events", "status"])
        #expect(all[4].node == layer.faults.control.eventsNode)
        #expect(all[2].node.flatMap(layer.faults.control.snapshots.kind(of:)) == .control, "control's entry is a snapshot node")
        #expect(layer.faults.control.snapshots.count == 3, "control, stats and status")
    }

    @Test("other directories are listed by the inner file system, through the same buffer")
    func innerDirectory() throws {
        let layer = try Layer()
        try layer.mkdir("d")
        try layer.create("d/b")
        try layer.create("d/a")
        let dir = try layer.node("d")
        #expect(try list(layer, dir).map(\.name) == [".", "..", "a", "b"])
        let plus = try list(layer, dir, plus: true)
        #expect(plus.map(\.name) == [".", "..", "a", "b"])
        #expect(plus[2].node == (try layer.node("d/a")))
        #expect(layer.inner.calls("readdir").count == 2)
    }
}
