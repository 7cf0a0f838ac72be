import FuseKit
import Glibc
import Testing
import TestSupport

/// The memory-backed write source and directory buffer behave like those of
/// a request: the fault layer's unit tests rely on them.
@Suite struct MemoryBuffersTests {
    @Test func writeSourceOverBytes() throws {
        let data: [UInt8] = Array(0..<100)
        try WriteSource.withBytes(data) { (source) throws(Errno) in
            #expect(source.count == 100)
            source.withPrefix(30) { #expect($0.count == 30) }
            #expect(try source.bytes() == data)
            // The data is taken once, as from a spliced pipe.
            #expect(try source.bytes() == [])
        }
        try WriteSource.withBytes(data) { (source) throws(Errno) in
            #expect(try source.bytes(limit: 10) == Array(data.prefix(10)))
        }
        WriteSource.withBytes([]) { #expect($0.count == 0) }
    }

    @Test func writeSourceStoresToAFile() throws {
        let (fd, path) = try makeScratchFile("buffers")
        defer { close(fd); unlink(path) }
        let data: [UInt8] = Array(repeating: 7, count: 5000)
        let stored = try WriteSource.withBytes(data) { (source) throws(Errno) in try source.store(to: fd, at: 10, limit: 4000) }
        #expect(stored == 4000)
        var back = [UInt8](repeating: 0, count: 5000)
        #expect(pread(fd, &back, back.count, 0) == 4010)
        #expect(back[10..<4010].allSatisfy { $0 == 7 } && back[0..<10].allSatisfy { $0 == 0 })
    }

    @Test func readDataInMemory() throws {
        let (fd, path) = try makeScratchFile("buffers")
        defer { close(fd) }
        unlink(path)
        let data: [UInt8] = (0..<300).map { UInt8(truncatingIfNeeded: $0) }
        #expect(pwrite(fd, data, data.count, 0) == 300)
        #expect(try ReadData.file(fd: fd, offset: 100, count: 50).inMemory() == Array(data[100..<150]))
        #expect(try ReadData.file(fd: fd, offset: 250, count: 4096).inMemory() == Array(data[250...]), "cut at the end of the file")
        #expect(try ReadData.file(fd: fd, offset: 400, count: 10).inMemory() == [])
        #expect(try ReadData.file(fd: fd, offset: 0, count: 0).inMemory() == [])
        #expect(try ReadData.bytes([1, 2]).inMemory() == [1, 2])
        #expect(throws: Errno.EBADF) { try ReadData.file(fd: -1, offset: 0, count: 1).inMemory() }
    }

    @Test func directoryBufferInMemory() {
        var buffer = DirectoryBuffer(capacity: 64)
        let wasEmpty = buffer.isEmpty
        #expect(wasEmpty)
        var st = stat()
        st.st_ino = 42
        st.st_mode = S_IFREG | 0o644
        // "a" takes 32 bytes (24 of header, the name, padding to 8): two fit, a third does not.
        let first = buffer.add("a", attributes: st, nextOffset: 1)
        st.st_mode = S_IFDIR | 0o755
        let second = buffer.add("b", attributes: st, nextOffset: 2)
        let third = buffer.add("c", attributes: st, nextOffset: 3)
        #expect(first && second && !third)
        let entries = buffer.entries(plus: false)
        #expect(entries == [
            DirectoryEntry(name: "a", inode: 42, type: UInt32(S_IFREG >> 12), nextOffset: 1, node: nil),
            DirectoryEntry(name: "b", inode: 42, type: UInt32(S_IFDIR >> 12), nextOffset: 2, node: nil),
        ])
    }

    @Test func directoryBufferPlusInMemory() {
        var buffer = DirectoryBuffer(capacity: 4096)
        var st = stat()
        st.st_ino = 7
        st.st_mode = S_IFREG | 0o600
        let entry = Entry(node: 1234, attributes: st, attributesTimeout: 1, entryTimeout: 1)
        let added = buffer.addPlus("a-long-name", entry: entry, nextOffset: 9)
        let entries = buffer.entries(plus: true)
        #expect(added)
        #expect(entries == [
            DirectoryEntry(name: "a-long-name", inode: 7, type: UInt32(S_IFREG >> 12), nextOffset: 9, node: 1234),
        ])
    }
}
