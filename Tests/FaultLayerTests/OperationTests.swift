// Which requests each op word of the rules selects: for every word, a fail
// rule is armed and one request of every kind is sent; exactly the kinds the
// word names must fail, and a failed request never reaches the inner file
// system.
@testable import FaultLayer
import FaultRules
import FuseKit
import Glibc
import Testing

/// A layer with a file, a second file and a directory, that sends one
/// request of a given kind on demand.
final class OneOfEach {
    let layer: Layer
    let file: OpenFile
    let other: OpenFile
    let dir: NodeID
    private var serial = 0

    init() throws {
        layer = try Layer()
        file = try layer.create("f")
        other = try layer.create("g")
        dir = try layer.mkdir("d")
        try layer.write(file, [1, 2, 3, 4])
    }

    /// The name the inner file system records the request under.
    static func innerName(_ op: FaultOp) -> String {
        switch op {
        case .writeback, .syncwrite: "write"
        case .truncate: "setattr"
        default: op.name
        }
    }

    /// Makes `d/iN` in the inner file system directly, behind the fault
    /// layer's back: the setup of an unlink must not meet a create rule.
    private func inner(_ make: (FileName) throws(Errno) -> Void) throws(Errno) {
        try withName("i\(serial)", make)
    }

    /// Sends one request of kind `op`; names are new each time.
    func send(_ op: FaultOp) throws(Errno) {
        serial += 1
        let fs = layer.fs, caller = layer.caller, n = serial
        switch op {
        case .writeback: try layer.write(file, [5], at: 4, writeback: true)
        case .syncwrite: try layer.write(file, [5], at: 4)
        case .flush: try fs.flush(caller, node: file.node, handle: file.handle)
        case .fsync: try fs.fsync(caller, node: file.node, handle: file.handle, dataOnly: false)
        case .fdatasync: try fs.fsync(caller, node: file.node, handle: file.handle, dataOnly: true)
        case .fsyncdir: try fs.fsyncdir(caller, node: dir, handle: 0, dataOnly: false)
        case .create: try layer.create("d/c\(n)")
        case .mkdir: try layer.mkdir("d/m\(n)")
        case .mknod:
            _ = try withName("n\(n)") { (name) throws(Errno) in try fs.mknod(caller, parent: dir, name: name, mode: S_IFREG | 0o644, device: 0) }
        case .symlink:
            _ = try withName("f") { (target) throws(Errno) in
                try withName("s\(n)") { (name) throws(Errno) in try fs.symlink(caller, target: target, parent: dir, name: name) }
            }
        case .link:
            _ = try withName("l\(n)") { (name) throws(Errno) in try fs.link(caller, node: other.node, newParent: dir, newName: name) }
        case .rename:
            try inner { (name) throws(Errno) in _ = try layer.inner.create(caller, parent: dir, name: name, mode: 0o644, flags: O_RDWR) }
            try layer.rename("d/i\(n)", "d/i\(n)-renamed")
        case .unlink:
            try inner { (name) throws(Errno) in _ = try layer.inner.create(caller, parent: dir, name: name, mode: 0o644, flags: O_RDWR) }
            try layer.unlink("d/i\(n)")
        case .rmdir:
            try inner { (name) throws(Errno) in _ = try layer.inner.mkdir(caller, parent: dir, name: name, mode: 0o755) }
            try withName("i\(n)") { (name) throws(Errno) in try fs.rmdir(caller, parent: dir, name: name) }
        case .truncate: try layer.truncate(file, to: 4)
        case .setattr:
            _ = try fs.setattr(caller, node: file.node, changes: AttributeChanges(
                fields: [.mode], mode: 0o600, uid: 0, gid: 0, size: 0, atime: timespec(), mtime: timespec(), handle: nil))
        case .fallocate: try layer.fallocate(file, offset: 0, length: 4)
        case .copyFileRange:
            _ = try fs.copyFileRange(caller, from: file.node, sourceHandle: file.handle, sourceOffset: 0,
                                     to: other.node, destinationHandle: other.handle, destinationOffset: 0, length: 2, flags: 0)
        case .setxattr:
            let value: [UInt8] = [1]
            try withName("user.x") { (name) throws(Errno) in
                let result = value.withUnsafeBytes { raw in
                    Result { () throws(Errno) in try fs.setxattr(caller, node: file.node, name: name, value: raw, flags: 0) }
                }
                try result.get()
            }
        case .open: _ = try fs.open(caller, node: file.node, flags: O_RDONLY)
        case .read: _ = try layer.read(file)
        }
    }
}

@Suite(.timeLimit(.minutes(1)))
struct OperationTests {
    /// Every op word and the ops it names.
    static let words: [(String, Set<FaultOp>)] =
        FaultOp.allCases.filter { $0 != .setattr }.map { ($0.word, [$0]) } + [
            ("write", [.writeback, .syncwrite]),
            ("fsync", [.fsync, .fdatasync]),
            ("setattr", [.setattr, .truncate]),
            ("all", Set(FaultOp.allCases)),
        ]

    @Test("a fail rule for one op word fails exactly the requests it names", arguments: words)
    func failSelects(word: String, named: Set<FaultOp>) throws {
        let each = try OneOfEach()
        each.layer.arm("fail \(word) EROFS")
        var failed: Set<FaultOp> = []
        for op in FaultOp.allCases {
            let before = each.layer.inner.calls(OneOfEach.innerName(op)).count
            switch errnoOf({ try each.send(op) }) {
            case Errno(EROFS)?:
                failed.insert(op)
                #expect(each.layer.inner.calls(OneOfEach.innerName(op)).count == before,
                        "the failed \(op.name) reached the inner file system")
                #expect(each.layer.events().last?.op == op.name)
            case nil: break
            case let other?: Issue.record("\(op.name) failed with \(other)")
            }
        }
        #expect(failed == named, "fail \(word): failed \(failed.map(\.name).sorted()), expected \(named.map(\.name).sorted())")
        for op in named { #expect(each.layer.stats(op)["failed"] == 1, "\(op.name) in stats") }

        each.layer.arm("clear")
        for op in FaultOp.allCases {
            #expect(errnoOf { try each.send(op) } == nil, "\(op.name) after clear")
        }
    }

    @Test("writeback and syncwrite are told apart by fromWriteback; the event says which")
    func writebackOrNot() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("fail writeback EIO")
        #expect(errnoOf { try layer.write(file, [1], writeback: true) } == .EIO)
        #expect(errnoOf { try layer.write(file, [1]) } == nil)
        layer.arm("clear\nfail syncwrite ENOSPC")
        #expect(errnoOf { try layer.write(file, [1], writeback: true) } == nil)
        #expect(errnoOf { try layer.write(file, [1]) } == .ENOSPC)
        let events = layer.events()
        #expect(events.map(\.op) == ["writeback", "syncwrite"])
        #expect(events.map(\.writeback) == [true, false])
        #expect(layer.inner.calls("write") == ["write \(file.node) @0+1", "write \(file.node) @0+1 writeback"])
    }

    @Test("a writeback rule on a mount without the writeback cache is accepted with a warning")
    func writebackWithoutCache() throws {
        let layer = try Layer(writebackCache: false)
        layer.arm("fail writeback EIO")
        #expect(try layer.controlFile("control").contains("# warning: rule r1 targets writeback, but this mount has no writeback cache"))
        let withCache = try Layer()
        withCache.arm("fail writeback EIO")
        #expect(try !withCache.controlFile("control").contains("# warning"))
    }

    @Test("the control file notes that fsync covers fdatasync too")
    func fsyncNote() throws {
        let layer = try Layer()
        layer.arm("fail fsync EIO")
        #expect(try layer.controlFile("control").contains("# note: fsync means fsync(2) and fdatasync(2)"))
        layer.arm("clear\nfail fsync-only EIO")
        #expect(try !layer.controlFile("control").contains("# note:"))
    }

    @Test("requests with no rule armed pass through untouched and are counted as seen")
    func passThrough() throws {
        let each = try OneOfEach()
        for op in FaultOp.allCases { #expect(errnoOf { try each.send(op) } == nil, "\(op.name)") }
        for op in FaultOp.allCases { #expect(each.layer.stats(op)["seen"] ?? 0 >= 1, "\(op.name) not counted") }
        #expect(each.layer.events().isEmpty)
    }
}
