// A seeded random sequence of file operations applied to a tree under the
// mount and to a shadow tree in a plain directory: every return value,
// errno, read and stat must agree, and so must the final trees.
//
// Reproduce a failure with the seed it prints: FAULTFS_SEED=<seed> swift test ...
@testable import FaultRules
import Foundation
import Glibc
import Testing

/// The seed: $FAULTFS_SEED, else a fixed default (so CI runs are repeatable).
private let seed: UInt64 = ProcessInfo.processInfo.environment["FAULTFS_SEED"].flatMap { UInt64($0) } ?? 20_260_101
private let operationCount = 3_000

/// SplitMix64 (from FaultRules) as a RandomNumberGenerator.
struct SeededRandom: RandomNumberGenerator {
    private var base: SplitMix64
    init(seed: UInt64) { base = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { base.next() }
}

/// The two trees and the files open on both.
private final class TwinTrees {
    struct OpenPair { var mount: Int32; var shadow: Int32; var path: String }

    let mountRoot: String, shadowRoot: String
    var random: SeededRandom
    var open: [OpenPair] = []
    private(set) var mismatches: [String] = []
    /// How many operations succeeded (to see that the run did something).
    private(set) var successes = 0
    private var step = 0

    init(mountRoot: String, shadowRoot: String) {
        self.mountRoot = mountRoot
        self.shadowRoot = shadowRoot
        random = SeededRandom(seed: seed)
    }

    /// Paths come from a small name space, so that operations collide often.
    /// Directories: x, x/y, z (they may or may not exist at a given step).
    func randomDirectory() -> String { ["x", "x/y", "z"].randomElement(using: &random)! }

    /// A file name in the root or one of the directories.
    func randomFilePath() -> String {
        let directory = ["", "x/", "x/y/", "z/"].randomElement(using: &random)!
        return directory + ["a", "b", "c", "d", "e"].randomElement(using: &random)!
    }

    /// Mostly a file path, sometimes a directory (for rename, link, stat, chmod).
    func randomPath() -> String {
        Int.random(in: 0..<5, using: &random) == 0 ? randomDirectory() : randomFilePath()
    }

    /// Runs `operation` on both trees (given the root) and expects equal results.
    func both<T: Equatable>(_ description: String, _ operation: (String) -> T) {
        let onMount = operation(mountRoot), onShadow = operation(shadowRoot)
        count(onMount)
        expect(onMount == onShadow, "\(description): through the mount \(onMount), in the shadow \(onShadow)")
    }

    /// Runs `operation` on the two fds of an open file and expects equal results.
    func bothFDs<T: Equatable>(_ description: String, _ pair: OpenPair, _ operation: (Int32) -> T) {
        let onMount = operation(pair.mount), onShadow = operation(pair.shadow)
        count(onMount)
        expect(onMount == onShadow, "\(description) (fd of \(pair.path)): through the mount \(onMount), in the shadow \(onShadow)")
    }

    /// Counts a success: an Outcome without errno, or a description without an errno name.
    private func count<T>(_ result: T) {
        let succeeded = (result as? Outcome)?.ok ?? (result as? String).map { !$0.contains(" E") } ?? false
        if succeeded { successes += 1 }
    }

    func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        guard !condition else { return }
        let text = "seed \(seed), step \(step): \(message())"
        mismatches.append(text)
        Issue.record(Comment(rawValue: text))
    }

    // MARK: the operations

    func runStep(_ n: Int) {
        step = n
        let roll = Int.random(in: 0..<100, using: &random)
        switch roll {
        case 0..<16: openRandom()
        case 16..<23: closeFile()
        case 23..<42: pwriteRandom()
        case 42..<46: writeSequential()
        case 46..<58: readRandom()
        case 58..<62: truncateRandom()
        case 62..<67: renameRandom()
        case 67..<70: linkRandom()
        case 70..<74: unlinkRandom()
        case 74..<79: mkdirRandom()
        case 79..<82: rmdirRandom()
        case 82..<85: fsyncRandom()
        case 85..<94: statRandom()
        case 94..<98: listRandom()
        default: chmodRandom()
        }
    }

    private func openRandom() {
        if open.count >= 12 { closeFile() }
        let path = randomFilePath()
        let flags = [O_RDWR | O_CREAT, O_WRONLY | O_CREAT | O_TRUNC, O_RDONLY, O_RDWR, O_RDWR | O_CREAT | O_EXCL,
                     O_WRONLY | O_APPEND | O_CREAT, O_RDWR | O_APPEND].randomElement(using: &random)!
        let mode: mode_t = [0o644, 0o600, 0o755].randomElement(using: &random)!
        let onMount = openFileAt(mountRoot, path, flags, mode), onShadow = openFileAt(shadowRoot, path, flags, mode)
        expect(onMount.ok == onShadow.ok && onMount.errno == onShadow.errno,
               "open \(path) flags=\(String(flags, radix: 8)): through the mount \(onMount), in the shadow \(onShadow)")
        if onMount.ok && onShadow.ok {
            successes += 1
            open.append(OpenPair(mount: Int32(onMount.value), shadow: Int32(onShadow.value), path: path))
        } else {
            if onMount.ok { Glibc.close(Int32(onMount.value)) }
            if onShadow.ok { Glibc.close(Int32(onShadow.value)) }
        }
    }

    private func openFileAt(_ root: String, _ path: String, _ flags: Int32, _ mode: mode_t) -> Outcome {
        openFile(root + "/" + path, flags | O_CLOEXEC, mode)
    }

    private func randomOpenFile() -> OpenPair? { open.randomElement(using: &random) }

    private func closeFile() {
        guard !open.isEmpty else { return }
        let pair = open.remove(at: Int.random(in: 0..<open.count, using: &random))
        bothFDs("close", pair) { fd in sys { Glibc.close(fd) } }
    }

    /// Mostly small offsets; sometimes far beyond EOF, making holes.
    private func randomOffset() -> Int {
        Int.random(in: 0..<10, using: &random) == 0 ? Int.random(in: 0..<2_000_000, using: &random) : Int.random(in: 0..<200_000, using: &random)
    }

    private func randomBytes() -> [UInt8] {
        let count = Int.random(in: 0...[16, 4096, 65_536].randomElement(using: &random)!, using: &random)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    private func pwriteRandom() {
        guard let pair = randomOpenFile() else { return openRandom() }
        let offset = randomOffset(), bytes = randomBytes()
        bothFDs("pwrite \(bytes.count) at \(offset)", pair) { pwriteBytes($0, bytes, at: offset) }
    }

    private func writeSequential() {
        guard let pair = randomOpenFile() else { return openRandom() }
        let bytes = randomBytes()
        bothFDs("write \(bytes.count)", pair) { writeBytes($0, bytes) }
    }

    /// pread through any open fd (often not the writer's), or through a
    /// fresh open of the path (reopen after close).
    private func readRandom() {
        let offset = randomOffset(), count = Int.random(in: 0...100_000, using: &random)
        if let pair = randomOpenFile(), Bool.random(using: &random) {
            bothFDs("pread \(count) at \(offset)", pair) { fd in
                let (outcome, bytes) = preadBytes(fd, count: count, at: offset)
                return "\(outcome) \(fnv1a(bytes))"
            }
        } else {
            let path = randomFilePath()
            both("open+pread \(count) at \(offset)+close \(path)") { root in
                let opened = openFile(root + "/" + path, O_RDONLY | O_CLOEXEC)
                guard opened.ok else { return opened.description }
                defer { Glibc.close(Int32(opened.value)) }
                let (outcome, bytes) = preadBytes(Int32(opened.value), count: count, at: offset)
                return "\(outcome) \(fnv1a(bytes))"
            }
        }
    }

    private func truncateRandom() {
        let size = Int.random(in: 0..<300_000, using: &random)
        if let pair = randomOpenFile(), Bool.random(using: &random) {
            bothFDs("ftruncate \(size)", pair) { fd in sys { ftruncate(fd, off_t(size)) } }
        } else {
            let path = randomPath()
            both("truncate \(path) \(size)") { root in sys { truncate(root + "/" + path, off_t(size)) } }
        }
    }

    private func renameRandom() {
        let from = randomPath(), to = randomPath()
        both("rename \(from) \(to)") { root in sys { rename(root + "/" + from, root + "/" + to) } }
    }

    private func linkRandom() {
        let from = randomPath(), to = randomPath()
        both("link \(from) \(to)") { root in sys { link(root + "/" + from, root + "/" + to) } }
    }

    private func unlinkRandom() {
        let path = randomPath()  // sometimes a directory: EISDIR
        both("unlink \(path)") { root in sys { unlink(root + "/" + path) } }
    }

    private func mkdirRandom() {
        let path = Int.random(in: 0..<10, using: &random) == 0 ? randomFilePath() : randomDirectory()
        both("mkdir \(path)") { root in sys { mkdir(root + "/" + path, 0o755) } }
    }

    private func rmdirRandom() {
        let path = Int.random(in: 0..<10, using: &random) == 0 ? randomFilePath() : randomDirectory()
        both("rmdir \(path)") { root in sys { rmdir(root + "/" + path) } }
    }

    private func fsyncRandom() {
        guard let pair = randomOpenFile() else { return }
        bothFDs("fsync", pair) { fd in sys { fsync(fd) } }
    }

    private func statRandom() {
        let path = randomPath()
        both("lstat \(path)") { root -> String in
            guard var s = summary(root + "/" + path) else { return statOf(root + "/" + path).0.description }
            if s.isDirectory { s.size = 0 }  // depends on the directory's history, not on faultfs
            return s.description
        }
        if let pair = randomOpenFile() {
            bothFDs("fstat", pair) { fd -> String in
                var st = stat()
                let outcome = sys { fstat(fd, &st) }
                return outcome.ok ? FileSummary(st).description : outcome.description
            }
        }
    }

    private func listRandom() {
        let directory = Bool.random(using: &random) ? "" : randomDirectory()
        both("readdir \(directory)") { root -> String in
            let (outcome, entries) = listDirectory(root + "/" + directory)
            return "\(outcome) \(entries)"
        }
    }

    private func chmodRandom() {
        let path = randomPath(), mode: mode_t = [0o600, 0o644, 0o755, 0o640].randomElement(using: &random)!
        both("chmod \(path) \(String(mode, radix: 8))") { root in sys { chmod(root + "/" + path, mode) } }
    }

    func closeAll() {
        for pair in open {
            bothFDs("close at the end", pair) { fd in sys { Glibc.close(fd) } }
        }
        open = []
    }
}

extension AllMountTests {
    @Suite
    struct DifferentialTests {
        @Test("3,000 random operations agree with a plain directory, call by call and in the final tree",
              arguments: [[], ["nowriteback"], ["direct_io"]])
        func randomOperations(options: [String]) throws {
            try withMount(options: options) { fs in
                try withTemporaryDirectory("shadow") { shadow in
                    let trees = TwinTrees(mountRoot: fs.path("tree"), shadowRoot: shadow + "/tree")
                    umask(0o022)
                    try check("mkdir", sys { mkdir(trees.mountRoot, 0o755) })
                    try check("mkdir", sys { mkdir(trees.shadowRoot, 0o755) })
                    for step in 0..<operationCount {
                        trees.runStep(step)
                        if trees.mismatches.count >= 5 {  // the trees have diverged: later steps would only echo it
                            Issue.record("seed \(seed): stopped at step \(step) after 5 mismatches; options \(options)")
                            break
                        }
                    }
                    trees.closeAll()

                    let throughMount = try snapshotTree(trees.mountRoot), inShadow = try snapshotTree(trees.shadowRoot)
                    print("differential (seed \(seed), -o \(options)): \(trees.successes) of \(operationCount) operations succeeded; final tree \(throughMount.count) paths, \(throughMount.values.map(\.content.count).reduce(0, +)) bytes")
                    #expect(throughMount.count > 3, "seed \(seed): the random tree is nearly empty: \(throughMount.keys.sorted())")
                    for line in differences(throughMount, inShadow, names: ("mount", "shadow")) {
                        Issue.record("seed \(seed), final tree: \(line)")
                    }

                    #expect(fs.unmount().isEmpty, "seed \(seed): unmount failed")
                    let backing = try snapshotTree(fs.backing("tree"))
                    for line in differences(backing, inShadow, names: ("backing dir after unmount", "shadow")) {
                        Issue.record("seed \(seed), backing tree: \(line)")
                    }
                }
            }
        }
    }
}
