// 4 writer threads and 4 reader threads on 8 files at once. Each writer owns
// a quarter of every file and writes offset-derived bytes there, so every
// byte ever read is either 0 (not written yet) or the one `patternByte`
// gives; at the end every byte is the pattern, through the mount and, after
// unmounting, in the backing files. Bounded by operation counts.
@testable import FaultRules
import Foundation
import Glibc
import Synchronization
import Testing

private let fileCount = 8
private let fileSize = 4 << 20
private let threadsPerKind = 4
private let operationsPerThread = 400
private let regionSize = fileSize / threadsPerKind

/// Failures collected from all threads.
private final class Failures: Sendable {
    private let list = Mutex<[String]>([])
    func add(_ text: String) { list.withLock { if $0.count < 20 { $0.append(text) } } }
    var all: [String] { list.withLock { $0 } }
}

/// The first byte of `bytes` (read at `offset` of file `file`) that is
/// neither 0 nor the pattern, described; nil when all are fine.
private func firstBadByte(_ bytes: [UInt8], file: Int, offset: Int, allowZero: Bool) -> String? {
    for (i, byte) in bytes.enumerated() where byte != patternByte(file: file, offset: offset + i) && !(allowZero && byte == 0) {
        return "file \(file) offset \(offset + i): \(byte), expected \(patternByte(file: file, offset: offset + i))\(allowZero ? " or 0" : "")"
    }
    return nil
}

private func writer(_ index: Int, paths: [String], failures: Failures) {
    var random = SeededRandom(seed: 1000 + UInt64(index))
    let fds = paths.map { open($0, O_RDWR | O_CLOEXEC) }
    defer { fds.forEach { close($0) } }
    guard fds.allSatisfy({ $0 >= 0 }) else { return failures.add("writer \(index): open failed: \(errnoText(errno))") }
    let region = (index * regionSize)..<((index + 1) * regionSize)

    func write(file: Int, offset: Int, count: Int) {
        let outcome = pwriteBytes(fds[file], pattern(file: file, offset: offset, count: count), at: offset)
        if outcome.value != count { failures.add("writer \(index): pwrite \(count) at \(offset) of file \(file): \(outcome)") }
    }
    for step in 0..<operationsPerThread {
        let file = Int.random(in: 0..<fileCount, using: &random)
        let offset = Int.random(in: region, using: &random)
        write(file: file, offset: offset, count: min(Int.random(in: 1...65_536, using: &random), region.upperBound - offset))
        if step % 50 == 49 {
            let synced = sys { fsync(fds[file]) }
            if !synced.ok { failures.add("writer \(index): fsync file \(file): \(synced)") }
        }
    }
    // Finally the whole region, so that the end state is known.
    for file in 0..<fileCount {
        for offset in stride(from: region.lowerBound, to: region.upperBound, by: 256 << 10) {
            write(file: file, offset: offset, count: min(256 << 10, region.upperBound - offset))
        }
    }
}

private func reader(_ index: Int, paths: [String], failures: Failures) {
    var random = SeededRandom(seed: 2000 + UInt64(index))
    let fds = paths.map { open($0, O_RDONLY | O_CLOEXEC) }
    defer { fds.forEach { close($0) } }
    guard fds.allSatisfy({ $0 >= 0 }) else { return failures.add("reader \(index): open failed: \(errnoText(errno))") }
    for _ in 0..<operationsPerThread {
        let file = Int.random(in: 0..<fileCount, using: &random)
        let offset = Int.random(in: 0..<fileSize, using: &random)
        let count = min(Int.random(in: 1...65_536, using: &random), fileSize - offset)
        let (outcome, bytes) = preadBytes(fds[file], count: count, at: offset)
        if outcome.value != count { failures.add("reader \(index): pread \(count) at \(offset) of file \(file): \(outcome)") }
        if let bad = firstBadByte(bytes, file: file, offset: offset, allowZero: true) { failures.add("reader \(index): \(bad)") }
    }
}

/// Every byte of every file is the pattern.
private func verifyFiles(_ paths: [String], where place: String) {
    for (file, path) in paths.enumerated() {
        switch readFile(path) {
        case .success(let bytes):
            #expect(bytes.count == fileSize, "\(place): file \(file) has \(bytes.count) bytes")
            if let bad = firstBadByte(bytes, file: file, offset: 0, allowZero: false) { Issue.record("\(place): \(bad)") }
        case .failure(let error):
            Issue.record("\(place): \(error)")
        }
    }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct ConcurrencyTests {
        @Test("4 writers and 4 readers on 8 files: every byte read is 0 or right, every byte is right at the end")
        func writersAndReaders() throws {
            try withMount { fs in
                let names = (0..<fileCount).map { "file\($0)" }
                for name in names {
                    let fd = Int32(try check("create \(name)", openFile(fs.path(name), O_CREAT | O_RDWR | O_CLOEXEC)))
                    defer { close(fd) }
                    try check("ftruncate \(name)", sys { ftruncate(fd, off_t(fileSize)) })
                }
                let paths = names.map(fs.path)
                let failures = Failures()
                let done = DispatchGroup()
                for index in 0..<threadsPerKind {
                    for body in [writer, reader] {
                        done.enter()
                        Thread { body(index, paths, failures); done.leave() }.start()
                    }
                }
                done.wait()
                for failure in failures.all { Issue.record(Comment(rawValue: failure)) }

                verifyFiles(paths, where: "through the mount")
                #expect(fs.unmount().isEmpty, "unmount failed")
                verifyFiles(names.map(fs.backing), where: "in the backing files after unmount")
            }
        }
    }
}
