// `capacity SIZE`: the mount behaves like a disk of SIZE bytes. Writes,
// truncations and fallocate past it fail with ENOSPC, statfs agrees, and
// deletions give space back.
@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Synchronization
import Testing

@Suite(.timeLimit(.minutes(1)))
struct CapacityTests {
    private func freeBlocks(_ layer: Layer) throws -> UInt64 { UInt64(try layer.statfs().f_bfree) }

    @Test("writes past the limit fail with ENOSPC and never reach the inner file system; statfs agrees; unlink frees")
    func writes() throws {
        let layer = try Layer()
        let a = try layer.create("a")
        try layer.write(a, [UInt8](repeating: 1, count: 4096))
        layer.arm("capacity 16384")  // the 4096 bytes already there count
        #expect(layer.faults.capacity.usedBytes == 4096)
        var st = try layer.statfs()
        #expect(st.f_blocks == 4 && st.f_bfree == 3 && st.f_bavail == 3, "blocks \(st.f_blocks) free \(st.f_bfree)")

        let block = [UInt8](repeating: 2, count: 8192)
        #expect(errnoOf { try layer.write(a, block, at: 4096) } == nil)
        #expect(try freeBlocks(layer) == 1)
        let writesBefore = layer.inner.calls("write").count
        #expect(errnoOf { try layer.write(a, block, at: 12288) } == .ENOSPC)
        #expect(layer.inner.calls("write").count == writesBefore)
        let event = try #require(layer.events().last)
        #expect(event.rule == "capacity" && event.action == "fail" && event.errnoName == "ENOSPC" && event.op == "syncwrite")

        #expect(errnoOf { try layer.write(a, Array(block.prefix(4096)), at: 0) } == nil, "an overwrite needs no space")
        #expect(errnoOf { try layer.write(a, Array(block.prefix(4096)), at: 12288) } == nil, "exactly full")
        #expect(errnoOf { try layer.write(a, [1], at: 16384, writeback: true) } == .ENOSPC)
        #expect(layer.events().last?.op == "writeback")
        #expect(try freeBlocks(layer) == 0)
        #expect(try layer.controlFile("control").contains("# capacity 16384 bytes, used 16384 bytes"))

        try layer.unlink("a")
        #expect(layer.faults.capacity.usedBytes == 0)
        #expect(try freeBlocks(layer) == 4)

        layer.arm("capacity off")
        st = try layer.statfs()
        #expect(st.f_blocks == 262_144 && st.f_bfree == 131_072, "statfs is the inner file system's again")
        #expect(try !layer.controlFile("control").contains("# capacity"))
        #expect(layer.events().filter { $0.action == "capacity" }.map(\.length) == [16384, -1])
    }

    @Test("truncate and fallocate reserve what they grow; shrinking gives space back")
    func truncateAndFallocate() throws {
        let layer = try Layer()
        layer.arm("capacity 8192")
        let f = try layer.create("f")
        #expect(errnoOf { try layer.truncate(f, to: 10000) } == .ENOSPC)
        #expect(layer.inner.calls("setattr").isEmpty)
        #expect(errnoOf { try layer.truncate(f, to: 8192) } == nil)
        #expect(layer.faults.capacity.usedBytes == 8192)
        #expect(errnoOf { try layer.truncate(f, to: 0) } == nil)
        #expect(layer.faults.capacity.usedBytes == 0)
        #expect(errnoOf { try layer.fallocate(f, offset: 0, length: 9000) } == .ENOSPC)
        #expect(layer.inner.calls("fallocate").isEmpty)
        #expect(errnoOf { try layer.fallocate(f, offset: 0, length: 4096) } == nil)
        #expect(layer.faults.capacity.usedBytes == 4096)
        #expect(layer.events().filter { $0.rule == "capacity" }.map(\.op) == ["truncate", "fallocate"])
    }

    @Test("unlinking one of two hard links frees nothing; a rename over a file frees the file it replaces")
    func linksAndRenames() throws {
        let layer = try Layer()
        layer.arm("capacity 100000")
        let x = try layer.create("x")
        try layer.write(x, [UInt8](repeating: 1, count: 1000))
        _ = try withName("y") { (name) throws(Errno) in try layer.fs.link(layer.caller, node: x.node, newParent: rootNodeID, newName: name) }
        try layer.unlink("y")
        #expect(layer.faults.capacity.usedBytes == 1000)
        let z = try layer.create("z")
        try layer.write(z, [UInt8](repeating: 2, count: 500))
        #expect(layer.faults.capacity.usedBytes == 1500)
        try layer.rename("z", "x")
        #expect(layer.faults.capacity.usedBytes == 500)
    }

    @Test("a write the inner file system refuses gives its reservation back")
    func failedWriteFreesItsReservation() throws {
        let layer = try Layer()
        layer.arm("capacity 4096")
        let gone = try layer.create("gone")
        try layer.unlink("gone")  // the fake forgets the node: writes to it fail with ESTALE
        #expect(errnoOf { try layer.write(gone, [UInt8](repeating: 1, count: 4096)) } == .ESTALE)
        #expect(layer.faults.capacity.usedBytes == 0)
        let kept = try layer.create("kept")
        #expect(errnoOf { try layer.write(kept, [UInt8](repeating: 1, count: 4096)) } == nil)
    }

    @Test("concurrent writes never pass the limit together")
    func concurrentWrites() throws {
        let layer = try Layer()
        layer.arm("capacity 4096")
        let files = try (0..<8).map { i throws(Errno) in try layer.create("f\(i)") }
        let succeeded = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: files.count) { i in
            if errnoOf({ try layer.write(files[i], [UInt8](repeating: 1, count: 1024)) }) == nil {
                succeeded.withLock { $0 += 1 }
            }
        }
        #expect(succeeded.withLock { $0 } == 4)
        #expect(layer.faults.capacity.usedBytes == 4096)
    }

    @Test("an open with O_TRUNC frees what the file held")
    func openWithTruncation() throws {
        let layer = try Layer()
        layer.arm("capacity 10000")
        let f = try layer.create("f")
        try layer.write(f, [UInt8](repeating: 1, count: 4000))
        layer.close(f)
        let again = try layer.open("f", flags: O_WRONLY | O_TRUNC)
        #expect(layer.inner.contents(of: again.node).isEmpty)
        #expect(layer.faults.capacity.usedBytes == 0, "the file is empty again; capacity still counts its 4000 bytes")
    }

}
