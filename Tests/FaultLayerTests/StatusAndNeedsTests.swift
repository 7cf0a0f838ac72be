// The control files' node ids (asked of the inner file system), the
// `status` file, capacity measured off the request path, and what a
// request's check gathers before the rule engine locks.
@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Testing

@Suite(.timeLimit(.minutes(1)))
struct ControlNodeIDTests {
    @Test("the control files' node ids come from the range the inner file system leaves free")
    func idsFromTheInnerFileSystem() throws {
        let layer = try Layer()
        let free = MemoryFileSystem.freeNodeIDs
        #expect(try layer.node(".faultfs") == free.lowerBound)
        for name in ["control", "stats", "events", "status"] {
            let node = try layer.node(".faultfs/" + name)
            #expect(free.contains(node), "\(name): \(node)")
            #expect(layer.faults.control.kind(of: node)?.fileName == name)
        }
        let file = try layer.create("f")
        #expect(layer.faults.control.kind(of: file.node) == nil)
        #expect(layer.faults.control.kind(of: free.upperBound + 1) == nil)
        #expect(layer.faults.control.kind(of: free.lowerBound - 1) == nil)
    }

    @Test("an inner file system that promises no free node ids cannot be decorated")
    func noPromiseNoLayer() {
        final class Promiseless: FileSystem, BackingTree, Sendable {
            func path(of node: NodeID) -> String? { nil }
            func inodeNumber(of node: NodeID) -> UInt64 { node }
            func usedBytes() -> Int64 { 0 }
        }
        let inner = Promiseless()
        #expect(throws: Errno.EINVAL) { try FaultLayer(wrapping: inner, tree: inner, options: FaultLayerOptions()) }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct StatusFileTests {
    private func status(_ layer: Layer) throws -> [String: Any] {
        let text = try layer.controlFile("status")
        #expect(text.hasSuffix("}\n") && text.split(separator: "\n").count == 1, "one line: \(text)")
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test("status: the daemon's pid, the mount, its options, armed rules and capacity, keys in order")
    func statusText() throws {
        let layer = try Layer(writebackCache: false) { options in
            options.mountPoint = "/srv/db"
            options.source = "/data/db"
            options.mountOptions = ["rules=/x", "nowriteback"]
        }
        let text = try layer.controlFile("status")
        #expect(text == #"{"version":"dev","pid":\#(getpid()),"mountpoint":"/srv/db","source":"/data/db","options":["rules=/x","nowriteback"],"writeback_cache":false,"armed_rules":0,"capacity":{"state":"off"},"crashsim":"off","crashes":0}"# + "\n")
        layer.arm("fail read EIO\ndelay 1ms fsync count=1")
        #expect(try status(layer)["armed_rules"] as? Int == 2)
        layer.arm("capacity 1M")
        let capacity = try status(layer)["capacity"] as? [String: Any]
        #expect(capacity?["state"] as? String == "ready")
        #expect(capacity?["limit"] as? Int == 1 << 20)
        #expect(capacity?["used"] as? Int == 0)
        layer.arm("capacity off")
        #expect((try status(layer)["capacity"] as? [String: Any])?["state"] as? String == "off")
    }

    @Test("status is read-only for everyone, and each lookup is sized to its text")
    func statusNode() throws {
        let layer = try Layer()
        let node = try layer.node(".faultfs/status")
        let st = try layer.fs.getattr(layer.caller, node: node, handle: nil).stat
        #expect(st.st_mode == S_IFREG | 0o444)
        #expect(Int(st.st_size) == (try layer.controlFile("status")).utf8.count)
        #expect(errnoOf { _ = try layer.open(".faultfs/status", flags: O_WRONLY) } == .EACCES)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct CapacityMeasuringTests {
    /// A layer whose `capacity` command returns at once, before the walk ends.
    private func layerNotWaiting() throws -> Layer {
        try Layer { $0.capacityMeasureWaitNanoseconds = 0 }
    }

    @Test("while the tree is measured: state measuring, requests counted but not refused; then the limit holds")
    func measuring() throws {
        let layer = try layerNotWaiting()
        let file = try layer.create("f")
        try layer.write(file, [UInt8](repeating: 1, count: 1000))
        layer.inner.holdMeasuring()
        layer.arm("capacity 3000")
        #expect(layer.faults.capacity.state == .measuring(limit: 3000))
        #expect(layer.faults.control.controlText().contains("# capacity 3000 bytes, measuring"))
        #expect(try layer.statfs().f_blocks != 3000 / 4096, "statfs shows the backing file system meanwhile")
        #expect(eventually { layer.inner.measuringStarted == 1 })  // the walk has seen the tree
        // Not refused, though past the limit: the total is not known yet.
        try layer.write(file, [UInt8](repeating: 2, count: 3000), at: 1000)
        layer.inner.releaseMeasuring()
        #expect(eventually { layer.faults.capacity.state != .measuring(limit: 3000) })
        // The walk saw 1000 bytes; the write through the mount added 3000.
        #expect(layer.faults.capacity.state == .ready(limit: 3000, used: 4000))
        #expect(errnoOf { try layer.write(file, [3], at: 4000) } == .ENOSPC)
        try layer.truncate(file, to: 2000)
        #expect(layer.faults.capacity.state == .ready(limit: 3000, used: 2000))
    }

    @Test("capacity off, or a new capacity, while measuring: the old walk's result is dropped")
    func supersededWalk() throws {
        let layer = try layerNotWaiting()
        let file = try layer.create("f")
        try layer.write(file, [UInt8](repeating: 1, count: 500))
        layer.inner.holdMeasuring()
        layer.arm("capacity 1K")
        layer.arm("capacity off")
        #expect(layer.faults.capacity.state == .off)
        layer.inner.releaseMeasuring()
        #expect(eventually { layer.inner.measured == 1 })
        usleep(20_000)  // the dropped walk's thread ends
        #expect(layer.faults.capacity.state == .off)
        layer.arm("capacity 2K")
        #expect(eventually { layer.faults.capacity.state == .ready(limit: 2048, used: 500) })
    }

    @Test("with the default wait a small tree is measured before the command returns")
    func smallTreeAtOnce() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        try layer.write(file, [UInt8](repeating: 1, count: 100))
        layer.arm("capacity 150")
        #expect(layer.faults.capacity.state == .ready(limit: 150, used: 100))
        #expect(errnoOf { try layer.write(file, [UInt8](repeating: 1, count: 100), at: 100) } == .ENOSPC)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct NeedsGatheringTests {
    /// A layer whose requests come from this thread (so /proc can be read).
    private func layerAsThisThread() throws -> Layer {
        let layer = try Layer()
        layer.caller = Caller(uid: 0, gid: 0, pid: ownThreadID(), umask: 0o022)
        return layer
    }

    @Test("a rule on comm reads /proc, and resolves no path unless it injects")
    func commRuleResolvesNoPath() throws {
        let layer = try layerAsThisThread()
        let file = try layer.create("f")
        layer.arm("fail read EIO comm=no-such-process")
        for _ in 0..<3 { _ = try layer.read(file) }
        #expect(layer.inner.pathsAsked == 0)
        #expect(layer.faults.injector.callerLookups.load(ordering: .relaxed) == 3)
    }

    @Test("a rule on path resolves the path, and reads nothing from /proc")
    func pathRuleReadsNoProc() throws {
        let layer = try layerAsThisThread()
        let file = try layer.create("f")
        layer.arm("fail read EIO path=elsewhere/*\nfail write EIO path=f")
        for _ in 0..<3 { _ = try layer.read(file) }
        #expect(errnoOf { try layer.write(file, [1]) } == .EIO)
        #expect(layer.inner.pathsAsked == 1, "once, then cached")
        #expect(layer.faults.injector.callerLookups.load(ordering: .relaxed) == 0)
        #expect(layer.events().last?.comm != nil, "the event still names the caller")
    }

    @Test("a path is resolved under no engine lock: resolving it may change the rules")
    func noEngineLockWhileResolving() throws {
        let layer = try Layer()
        try layer.mkdir("db")
        let file = try layer.create("db/f")
        layer.arm("fail read EIO path=db/*")
        let faults = layer.faults
        layer.inner.onNextPath { _ = faults.applyControl("fail write ENOSPC path=db/*") }
        let read = Background { errnoOf { _ = try layer.read(file) } }
        #expect(read.result(within: 10) == .some(.EIO), "no deadlock")
        #expect(errnoOf { try layer.write(file, [1]) } == .ENOSPC)
    }
}
