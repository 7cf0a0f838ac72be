// Which requests a rule selects among those of its ops: path, offset, caller
// (pid, comm) and the selection keys (after, every, count, prob with seed).
@testable import FaultLayer
import FaultRules
import FuseKit
import Glibc
import Testing

@Suite(.timeLimit(.minutes(1)))
struct TargetingTests {
    /// For `n` reads of one file: which ones failed (true).
    private func readPattern(_ layer: Layer, _ file: OpenFile, _ n: Int) -> [Bool] {
        (0..<n).map { _ in errnoOf { _ = try layer.read(file) } != nil }
    }

    @Test("path= selects by the node's path, names of new entries included, and follows renames")
    func path() throws {
        let layer = try Layer()
        try layer.mkdir("db")
        try layer.mkdir("other")
        let wal = try layer.create("db/a.wal"), data = try layer.create("db/a.dat"), elsewhere = try layer.create("other/a.wal")
        layer.arm("fail write EIO path=db/*.wal\nfail create EROFS path=db/*.tmp")
        #expect(errnoOf { try layer.write(wal, [1]) } == .EIO)
        #expect(errnoOf { try layer.write(data, [1]) } == nil)
        #expect(errnoOf { try layer.write(elsewhere, [1]) } == nil)
        #expect(errnoOf { try layer.create("db/x.tmp") } == Errno(EROFS))
        #expect(errnoOf { try layer.create("db/x.dat") } == nil)
        #expect(layer.events().map(\.path) == ["db/a.wal", "db/x.tmp"])

        // The path cache forgets on rename: a.dat is now b.wal.
        try layer.rename("db/a.dat", "db/b.wal")
        #expect(errnoOf { try layer.write(data, [1]) } == .EIO)
        #expect(layer.events().last?.path == "db/b.wal")
    }

    @Test("paths are looked up only for rules that need them, once per node until a rename")
    func pathLookups() throws {
        let each = try OneOfEach()
        let layer = each.layer
        for op in FaultOp.allCases { _ = errnoOf { try each.send(op) } }
        layer.arm("fail write EIO offset=1G-")
        for _ in 0..<3 { _ = errnoOf { _ = try layer.read(each.file) }; try layer.write(each.file, [1]) }
        #expect(layer.inner.pathsAsked == 0, "no rule needs a path")

        layer.arm("fail read EIO path=elsewhere/*")
        for _ in 0..<3 { _ = try layer.read(each.file) }
        #expect(layer.inner.pathsAsked == 1, "asked once, then cached")
        try layer.rename("f", "f2")
        _ = try layer.read(each.file)
        #expect(layer.inner.pathsAsked == 2, "a rename forgets the cached paths")
    }

    @Test("offset= selects requests whose byte range overlaps A-B")
    func offset() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail write EIO offset=4096-8192")
        let bytes = [UInt8](repeating: 1, count: 200)
        #expect(errnoOf { try layer.write(file, bytes, at: 0) } == nil)
        #expect(errnoOf { try layer.write(file, bytes, at: 4000) } == .EIO, "overlaps the start")
        #expect(errnoOf { try layer.write(file, bytes, at: 8191) } == .EIO, "overlaps the end")
        #expect(errnoOf { try layer.write(file, bytes, at: 8192) } == nil)
        #expect(layer.events().map(\.offset) == [4000, 8191])
    }

    @Test("count= fails the first N, then the rule is dormant; reset-counters re-arms it")
    func count() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail read EIO count=2")
        #expect(readPattern(layer, file, 4) == [true, true, false, false])
        #expect(try layer.controlFile("control").contains("# matched=2 hits=2 dormant"))
        #expect(!layer.faults.engine.armedOps.contains(.read), "a dormant rule arms nothing")
        layer.arm("reset-counters")
        #expect(readPattern(layer, file, 3) == [true, true, false])
    }

    @Test("after= lets N through first; every= then takes every Nth",
          arguments: [("after=2", [false, false, true, true, true, true]),
                      ("every=3", [false, false, true, false, false, true]),
                      ("after=1 every=2", [false, false, true, false, true, false])])
    func afterAndEvery(keys: String, expected: [Bool]) throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail read EIO " + keys)
        #expect(readPattern(layer, file, expected.count) == expected)
    }

    @Test("prob= with seed= picks the same requests every time; another seed picks others")
    func probability() throws {
        func pattern(seed: Int) throws -> [Bool] {
            let layer = try Layer()
            let file = try layer.create("f")
            layer.arm("fail read EIO prob=0.5 seed=\(seed)")
            let first = readPattern(layer, file, 64)
            layer.arm("reset-counters")
            #expect(readPattern(layer, file, 64) == first, "reset-counters restarts the sequence")
            return first
        }
        let seven = try pattern(seed: 7)
        #expect(try pattern(seed: 7) == seven)
        #expect(try pattern(seed: 8) != seven)
        let failures = seven.filter { $0 }.count
        #expect(failures > 0 && failures < 64, "\(failures) of 64 failed")
    }

    @Test("pid= names the caller's process (FUSE reports its thread); writeback has no caller")
    func pid() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.caller.pid = ownThreadID()
        layer.arm("fail write EIO pid=\(getpid())")
        #expect(errnoOf { try layer.write(file, [1]) } == .EIO)
        #expect(errnoOf { try layer.write(file, [1], writeback: true) } == nil)
        #expect(try layer.controlFile("control").contains("never match writeback writes"))
        layer.arm("clear\nfail write EIO pid=1")
        #expect(errnoOf { try layer.write(file, [1]) } == nil)
        #expect(layer.events().first?.pid == Int(layer.caller.pid))
    }

    @Test("comm= names the caller's process name")
    func comm() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        let name = ownProcessName()
        try #require(!name.isEmpty && !name.contains(" "), "this process's name \"\(name)\" cannot be written in a rule")
        layer.caller.pid = getpid()
        layer.arm("fail fsync EIO comm=\(name)")
        #expect(errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: true) } == .EIO)
        #expect(layer.events().last?.comm == name)
        layer.arm("clear\nfail fsync EIO comm=not-\(name.prefix(10))")
        #expect(errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: true) } == nil)
    }

    @Test("rules are tried in order: the first that selects a request acts")
    func firstMatchActs() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail read EIO every=2 id=a\nfail read EROFS id=b")
        let errors = (0..<4).map { _ in errnoOf { _ = try layer.read(file) } }
        #expect(errors == [Errno(EROFS), .EIO, Errno(EROFS), .EIO])
        #expect(layer.events().map(\.rule) == ["b", "a", "b", "a"])
    }
}
