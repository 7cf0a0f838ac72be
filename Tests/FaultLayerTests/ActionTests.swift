// Each action of the fault layer, in process over MemoryFileSystem: what the
// caller gets, what reaches the inner file system, what stats and events say.
@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ActionTests {
    @Test("fail: the caller gets the errno, the inner file system never sees the request, stats and events say so")
    func fail() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail write EIO id=w path=f")
        #expect(errnoOf { try layer.write(file, [1, 2, 3]) } == .EIO)
        #expect(layer.inner.calls("write").isEmpty)
        #expect(layer.stats(.syncwrite)["failed"] == 1)
        let event = try #require(layer.events().last)
        #expect(event.rule == "w" && event.action == "fail" && event.op == "syncwrite")
        #expect(event.errno == Int(EIO) && event.errnoName == "EIO")
        #expect(event.path == "f" && event.offset == 0 && event.length == 3 && !event.writeback)

        layer.arm("clear")
        #expect(try layer.write(file, [1, 2, 3]) == 3)
        #expect(layer.inner.contents(of: file.node) == [1, 2, 3])
    }

    @Test("delay: the request is answered no earlier than the delay, and passed on")
    func delay() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        try layer.write(file, [7, 7])
        layer.arm("delay read 50ms")
        let start = ContinuousClock.now
        #expect(try layer.read(file) == [7, 7])
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        #expect(layer.stats(.read)["delayed"] == 1)
        #expect(layer.events().last?.action == "delay")
    }

    @Test("stall: the request waits until release, then goes on; stats show it stalled meanwhile")
    func stallUntilRelease() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("stall fsync id=s")
        let call = Background { errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: false) } }
        #expect(eventually { layer.stats(.fsync)["stalled_now"] == 1 }, "the fsync never stalled")
        #expect(call.result(within: 0.05) == nil, "the fsync finished although stalled")
        #expect(layer.inner.calls("fsync").isEmpty)

        layer.arm("release s")
        let outcome = finish(call, layer)
        #expect(outcome == .some(nil), "the released fsync: \(String(describing: outcome))")
        #expect(layer.inner.calls("fsync").count == 1)
        #expect(layer.stats(.fsync)["stalled_now"] == 0)
        #expect(layer.stats(.fsync)["stalled_total"] == 1)
        #expect(layer.events().map(\.action) == ["stall", "release"])
        #expect(!layer.faults.engine.armedOps.contains(.fsync), "release removes the stall rule")
    }

    @Test("stall: release of all, or clear of the rule, lets its stalled request go; so does the end of the session",
          arguments: ["release", "clear", "clear s", "destroy"])
    func otherWaysToRelease(command: String) throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("stall flush id=s")
        let call = Background { errnoOf { try layer.fs.flush(layer.caller, node: file.node, handle: file.handle) } }
        #expect(eventually { layer.stats(.flush)["stalled_now"] == 1 }, "the flush never stalled")
        if command == "destroy" { layer.fs.destroy() } else { layer.arm(command) }
        #expect(finish(call, layer) == .some(nil))
        #expect(layer.inner.calls("flush").count == 1)
    }

    @Test("stall with timeout= lets go by itself, no earlier than the timeout")
    func stallTimeout() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("stall write timeout=100ms")
        let start = ContinuousClock.now
        let call = Background { Result { () throws(Errno) in try layer.write(file, [1, 2, 3, 4]) } }
        let outcome = finish(call, layer)
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(try outcome?.get() == 4)
        #expect(layer.inner.contents(of: file.node) == [1, 2, 3, 4])
        #expect(layer.events().map(\.action) == ["stall", "release"])
        #expect(layer.faults.engine.armedOps.contains(.syncwrite), "a timeout does not remove the rule")
    }

    @Test("stall: a release that comes while the stall is being logged still lets the request go")
    func releaseWhileStalling() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("stall fsync")
        // The layer asks for the path first when it logs the stall, after
        // the rule chose the request and before the request waits.
        layer.inner.onNextPath { _ = layer.faults.applyControl("release") }
        let call = Background { errnoOf { try layer.fs.fsync(layer.caller, node: file.node, handle: file.handle, dataOnly: false) } }
        let outcome = call.result(within: 5)
        #expect(outcome == .some(nil), "the fsync is still held although released (and its rule is gone)")
        if outcome == nil { _ = finish(call, layer) }
    }

    @Test("drop: the write is acknowledged in full and never stored")
    func drop() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        try layer.write(file, [1, 1, 1, 1])
        layer.arm("drop write")
        #expect(try layer.write(file, [9, 9, 9, 9]) == 4)
        #expect(try layer.write(file, [9, 9], at: 4, writeback: true) == 2)
        #expect(layer.inner.calls("write").count == 1, "only the write before the rule arrived: \(layer.inner.calls)")
        #expect(layer.inner.contents(of: file.node) == [1, 1, 1, 1])
        #expect(layer.stats(.syncwrite)["dropped"] == 1)
        #expect(layer.stats(.writeback)["dropped"] == 1)
        #expect(layer.events().map(\.action) == ["drop", "drop"])
    }

    @Test("short: the inner file system gets and the caller is told only the first bytes",
          arguments: [("short write bytes=3", 3), ("short write", 5), ("short write bytes=64", 9)])
    func short(rule: String, stored: Int) throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm(rule)
        let data: [UInt8] = Array(1...10)
        #expect(try layer.write(file, data, at: 2) == stored)
        #expect(layer.inner.calls("write") == ["write \(file.node) @2+\(stored)"])
        #expect(layer.inner.contents(of: file.node) == [0, 0] + data.prefix(stored))
        #expect(layer.stats(.syncwrite)["shortened"] == 1)
        let event = try #require(layer.events().last)
        #expect(event.action == "short" && event.length == 10)
    }
}

/// The call's result, releasing every stall if it does not come: a broken
/// stall fails the test rather than hanging it.
func finish<T>(_ call: Background<T>, _ layer: Layer, within seconds: Double = 10,
               sourceLocation: SourceLocation = #_sourceLocation) -> T? {
    if let result = call.result(within: seconds) { return result }
    Issue.record("the call did not finish within \(seconds) s; releasing every stall", sourceLocation: sourceLocation)
    layer.fs.destroy()
    return call.result(within: 10)
}

