@testable import FaultLayer
@testable import FaultRules
import FuseKit
import Glibc
import Testing

/// `corrupt read|write`: the call succeeds and the data changes in exactly
/// the bytes the rule's seed chooses.
@Suite struct CorruptTests {
    let data: [UInt8] = Array("0123456789abcdefghijklmnopqrstuvwxyz\0\0\0\0ABCDEFGHIJ".utf8)

    /// What the rule does to `bytes` on its first hit: its first draw seeds the choice.
    func expected(_ bytes: [UInt8], count: Int64, _ pattern: CorruptionPattern, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        var copy = bytes
        _ = copy.withUnsafeMutableBytes {
            Corruption.apply(to: $0, bytes: count, pattern: pattern, seed: generator.next())
        }
        return copy
    }

    func differences(_ a: [UInt8], _ b: [UInt8]) -> [Int] { a.indices.filter { a[$0] != b[$0] } }

    @Test("corrupt write: acknowledged in full, stored with exactly the chosen bytes changed",
          arguments: CorruptionPattern.allCases)
    func write(pattern: CorruptionPattern) throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("corrupt write bytes=3 pattern=\(pattern) seed=5 path=f")
        #expect(try layer.write(file, data, at: 100) == data.count)
        let stored = Array(layer.inner.contents(of: file.node).dropFirst(100))
        #expect(stored == expected(data, count: 3, pattern, seed: 5))
        let changed = differences(data, stored)
        #expect(changed.count == 3)
        for i in changed {
            switch pattern {
            case .flip: #expect(stored[i] == ~data[i])
            case .zero: #expect(stored[i] == 0 && data[i] != 0)
            case .random: #expect(stored[i] != data[i])
            }
        }
        #expect(layer.stats(.syncwrite)["corrupted"] == 1)
        let event = try #require(layer.events().last)
        #expect(event.action == "corrupt" && event.op == "syncwrite" && event.path == "f")
        #expect(event.offset == 100 && event.length == data.count && event.errno == 0)
        #expect(event.changed == 3)
        #expect(event.changedOffsets == changed.map { 100 + $0 })
    }

    @Test("corrupt read: the caller gets changed bytes, the file keeps its own")
    func read() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        try layer.write(file, data)
        layer.arm("corrupt read bytes=2 seed=8")
        let got = try layer.read(file, at: 4, size: 10)
        #expect(got == expected(Array(data[4..<14]), count: 2, .flip, seed: 8))
        #expect(differences(Array(data[4..<14]), got).count == 2)
        #expect(layer.inner.contents(of: file.node) == data)
        #expect(layer.stats(.read)["corrupted"] == 1)
        let event = try #require(layer.events().last)
        #expect(event.action == "corrupt" && event.op == "read" && event.path == "f")
        #expect(event.offset == 4 && event.length == 10 && event.changed == 2)
        #expect(event.changedOffsets == differences(Array(data[4..<14]), got).map { 4 + $0 })
    }

    @Test("a read that meets the end of the file: the event's length is what was read")
    func readAtTheEnd() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        try layer.write(file, data)
        layer.arm("corrupt read bytes=100")
        let got = try layer.read(file, at: 40, size: 4096)
        #expect(got.count == data.count - 40)
        #expect(got == data.dropFirst(40).map { ~$0 }, "bytes= beyond the data changes all of it")
        let event = try #require(layer.events().last)
        #expect(event.length == data.count - 40 && event.changed == data.count - 40)
        #expect(event.changedOffsets == Array(40..<48), "the first \(Corruption.shownPositions) offsets")
    }

    @Test("the same seed, the same corruption; another seed, another")
    func reproducible() throws {
        func run(_ rule: String) throws -> [[UInt8]] {
            let layer = try Layer()
            let file = try layer.create("f")
            layer.arm(rule)
            var stored: [[UInt8]] = []
            for round in 0..<5 {
                try layer.write(file, Array(repeating: UInt8(round + 1), count: 512), at: off_t(round * 512))
                stored.append(Array(layer.inner.contents(of: file.node)[(round * 512)..<((round + 1) * 512)]))
            }
            return stored
        }
        let first = try run("corrupt write bytes=4 pattern=random seed=11 prob=0.5")
        #expect(try run("corrupt write bytes=4 pattern=random seed=11 prob=0.5") == first)
        #expect(try run("corrupt write bytes=4 pattern=random seed=12 prob=0.5") != first)
    }

    @Test("corrupt write hits writeback writes (pid 0) as other write rules do; corrupt syncwrite does not")
    func writeback() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("corrupt syncwrite id=s")
        #expect(try layer.write(file, data, writeback: true) == data.count)
        #expect(layer.inner.contents(of: file.node) == data)
        layer.arm("corrupt write id=w")
        #expect(try layer.write(file, data, writeback: true) == data.count)
        #expect(differences(data, layer.inner.contents(of: file.node)).count == 1)
        #expect(layer.stats(.writeback)["corrupted"] == 1)
        let event = try #require(layer.events().last)
        #expect(event.rule == "w" && event.op == "writeback" && event.writeback && event.pid == 0)
    }

    @Test("zero: only bytes that are not 0 are chosen; the count is what changed")
    func zeroCountsHonestly() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        layer.arm("corrupt write bytes=8 pattern=zero")
        var sparse = [UInt8](repeating: 0, count: 64)
        sparse[10] = 7; sparse[20] = 9
        #expect(try layer.write(file, sparse) == 64)
        #expect(layer.inner.contents(of: file.node) == [UInt8](repeating: 0, count: 64))
        let event = try #require(layer.events().last)
        #expect(event.changed == 2 && event.changedOffsets == [10, 20])
    }

    @Test("a corrupt write that then fails corrupted nothing: no event, not counted")
    func failedWriteRecordsNothing() throws {
        let layer = try Layer(writebackCache: false)
        let file = try layer.create("f")
        layer.arm("capacity 4096")
        layer.arm("corrupt write")
        #expect(errnoOf { try layer.write(file, [UInt8](repeating: 1, count: 8192)) } == .ENOSPC)
        #expect(layer.stats(.syncwrite)["corrupted"] == 0)
        #expect(!layer.events().contains { $0.action == "corrupt" })
    }

    @Test("other ops, and reads or writes of other files, pass untouched")
    func untouched() throws {
        let layer = try Layer()
        let file = try layer.create("f")
        let other = try layer.create("g")
        layer.arm("corrupt read,write path=f count=1")
        try layer.write(other, data)
        #expect(try layer.read(other) == data)
        #expect(layer.inner.contents(of: other.node) == data)
        try layer.write(file, data)  // the one hit
        try layer.write(file, data, at: 100)
        #expect(Array(layer.inner.contents(of: file.node).dropFirst(100)) == data, "count=1: the rule is dormant")
        #expect(layer.events().filter { $0.action == "corrupt" }.count == 1)
    }
}
