@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Passthrough
import Synchronization
import Testing
import TestSupport

extension PassthroughFileSystem: BackingTree {}

/// The passthrough over a fresh directory, with the fault layer and crash
/// simulation on, called as the kernel's requests would call it; `crash`
/// then undoes in that directory, which the tests read directly.
final class CrashFixture: RequestDriver, @unchecked Sendable {
    let directory: String
    let passthrough: PassthroughFileSystem
    let faults: FaultLayer
    let fs: any FileSystem
    let caller = Caller(uid: 0, gid: 0, pid: 0, umask: 0o022)
    /// What `onCrash` was asked (the server would end the session and call `crash`).
    final class Asked: Sendable { let requests = Mutex<[CrashRequest]>([]) }
    let asked = Asked()

    init(names: NameDurability? = .posix, spill: String = "/var/tmp") throws {
        directory = try makeScratchDirectory("crash")
        let root = Glibc.open(directory, Int32(CSYS_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        var options = PassthroughOptions()
        options.hiddenRootNames = [FaultLayer.crashGraveyardName]
        passthrough = try PassthroughFileSystem(root: root, options: options)
        var layerOptions = FaultLayerOptions()
        layerOptions.crashSimulation = names
        layerOptions.crashSpillDirectory = spill
        layerOptions.log = { _ in }
        let asked = self.asked
        layerOptions.onCrash = { request in asked.requests.withLock { $0.append(request) } }
        faults = try FaultLayer(wrapping: passthrough, tree: passthrough, options: layerOptions)
        fs = faults.fileSystem
    }

    deinit { _ = Subprocess.run(["/bin/rm", "-rf", directory]) }

    // MARK: requests (the rest: `RequestDriver`)

    /// Only the release: the tests look names up again by path.
    func close(_ file: OpenFile) { fs.release(caller, node: file.node, handle: file.handle) }

    func crash(_ request: CrashRequest = CrashRequest()) -> CrashReport { faults.crash(request) }

    // MARK: the backing directory

    func path(_ relative: String) -> String { directory + "/" + relative }
    func contents(_ relative: String) -> [UInt8]? { try? File.read(path(relative), limit: 1 << 30) }
    func exists(_ relative: String) -> Bool { var st = stat(); return lstat(path(relative), &st) == 0 }
    func status(_ relative: String) -> stat? { var st = stat(); return lstat(path(relative), &st) == 0 ? st : nil }
    /// The names in a backing directory, but the graveyard.
    func names(_ relative: String = "") -> [String] {
        (File.names(inDirectory: path(relative)) ?? []).filter { $0 != FaultLayer.crashGraveyardName }.sorted()
    }
    var graves: [String] { File.names(inDirectory: path(FaultLayer.crashGraveyardName)) ?? [] }

    /// A file that is durable as it is (data and name), `bytes` long.
    func durableFile(_ relative: String, _ bytes: [UInt8]) throws(Errno) {
        let file = try create(relative)
        try write(file, bytes, at: 0)
        try fsync(file)
        close(file)
        let parent = relative.split(separator: "/").dropLast().joined(separator: "/")
        try fsyncDirectory(parent)
    }
}

func bytes(_ byte: Character, _ count: Int) -> [UInt8] { [UInt8](repeating: byte.asciiValue!, count: count) }

@Suite(.serialized) struct CrashSimulatorTests {
    @Test func fsyncedBytesSurviveAndTheRestReverts() throws {
        let f = try CrashFixture()
        try f.durableFile("data", bytes("A", 8192))
        let file = try f.open("data")
        try f.write(file, bytes("B", 100), at: 4096)       // overwrite, not synced
        try f.write(file, bytes("C", 5000), at: 8192)      // append, not synced
        let synced = try f.create("synced")
        try f.write(synced, bytes("S", 3000), at: 0)
        try f.fsync(synced, dataOnly: true)                 // data durable, and its name with it
        let unsynced = try f.create("unsynced")
        try f.write(unsynced, bytes("U", 3000), at: 0)      // neither
        #expect(f.contents("data")?.count == 13192)
        let report = f.crash()
        #expect(f.contents("data") == bytes("A", 8192))
        #expect(f.contents("synced") == bytes("S", 3000))
        #expect(!f.exists("unsynced"))
        #expect(report.filesReverted == 1 && report.bytesReverted == 100 && report.filesTruncated == 2)  // data, unsynced
        #expect(report.namesUndone == 1 && report.undoErrors == 0)
        #expect(f.graves.isEmpty)
    }

    @Test func fdatasyncAndFsyncKeepEverythingBeforeThem() throws {
        let f = try CrashFixture()
        try f.durableFile("log", [])
        let file = try f.open("log")
        try f.write(file, bytes("1", 4096), at: 0)
        try f.fsync(file, dataOnly: true)
        try f.write(file, bytes("2", 4096), at: 4096)
        try f.write(file, bytes("3", 10), at: 0)
        try f.fsync(file)
        try f.write(file, bytes("4", 10), at: 10)
        _ = f.crash()
        #expect(f.contents("log") == bytes("3", 10) + bytes("1", 4086) + bytes("2", 4096))
    }

    @Test func sizesRevertAfterTruncationAndGrowth() throws {
        let f = try CrashFixture()
        let original = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try f.durableFile("shrunk", original)
        try f.durableFile("grown", original)
        let shrunk = try f.open("shrunk"), grown = try f.open("grown")
        try f.truncate(shrunk, to: 100)
        try f.write(shrunk, bytes("x", 50), at: 3000)   // a hole, then new bytes, in the cut part
        try f.truncate(grown, to: 1 << 20)
        #expect(f.status("shrunk")?.st_size == 3050 && f.status("grown")?.st_size == 1 << 20)
        let report = f.crash()
        #expect(f.contents("shrunk") == original)
        #expect(f.contents("grown") == original)
        #expect(report.filesTruncated == 2)
    }

    @Test func anOTruncOpenIsUndone() throws {
        let f = try CrashFixture()
        try f.durableFile("t", bytes("o", 1000))
        let file = try f.open("t", flags: O_RDWR | O_TRUNC)
        #expect(f.status("t")?.st_size == 0)
        try f.write(file, bytes("n", 10), at: 0)
        _ = f.crash()
        #expect(f.contents("t") == bytes("o", 1000))
    }

    @Test func posixNamesNeedAnFsyncOfTheirDirectory() throws {
        let f = try CrashFixture(names: .posix)
        try f.mkdir("d")
        try f.fsyncDirectory("")
        let kept = try f.create("d/kept")
        try f.write(kept, bytes("k", 10), at: 0)
        try f.fsync(kept)
        try f.fsyncDirectory("d")
        let gone = try f.create("d/gone")       // after the directory's fsync, and never fsync'd
        try f.write(gone, bytes("g", 10), at: 0)
        try f.link("d/kept", "d/hard")
        try f.symlink("kept", "d/sym")
        try f.mkdir("undone")
        let report = f.crash()
        #expect(f.names("d") == ["kept"])
        #expect(f.contents("d/kept") == bytes("k", 10))
        #expect(f.names() == ["d"])
        #expect(report.namesUndone == 4 && report.undoErrors == 0)
    }

    @Test func aNewFileFsyncedSurvivesWithoutItsDirectory() throws {
        let f = try CrashFixture(names: .posix)
        try f.mkdir("db")                        // the top directory is never fsync'd
        let data = try f.create("db/data.mdb")
        try f.write(data, bytes("d", 8192), at: 0)
        try f.fsync(data, dataOnly: true)        // LMDB: fdatasync of the file, never of a directory
        let lock = try f.create("db/lock.mdb")   // not fsync'd: gone
        try f.write(lock, bytes("l", 10), at: 0)
        let report = f.crash()
        #expect(f.names() == ["db"])
        #expect(f.names("db") == ["data.mdb"])
        #expect(f.contents("db/data.mdb") == bytes("d", 8192))
        #expect(report.namesUndone == 1 && report.undoErrors == 0)
    }

    @Test func aTempFileRenamedIntoAnFsyncedDirectoryStaysWhole() throws {
        let f = try CrashFixture(names: .posix)
        try f.mkdir("appendonlydir")             // Redis 7: made once, its parent never fsync'd
        let temp = try f.create("temp-rewriteaof-42.aof")
        try f.write(temp, bytes("r", 5000), at: 0)
        try f.fsync(temp)
        f.close(temp)
        try f.rename("temp-rewriteaof-42.aof", "appendonlydir/appendonly.aof.1.base.aof")
        try f.fsyncDirectory("appendonlydir")
        let report = f.crash()
        #expect(report.namesUndone == 0 && report.undoErrors == 0)
        #expect(f.names() == ["appendonlydir"])
        #expect(f.contents("appendonlydir/appendonly.aof.1.base.aof") == bytes("r", 5000))
    }

    @Test func aDeleteWithoutADirectoryFsyncComesBackUntilTheNameIsMadeAgain() throws {
        let f = try CrashFixture(names: .posix)
        try f.durableFile("db", bytes("D", 100))
        // SQLite's rollback journal: made durable by its fsync, deleted at commit without a directory fsync.
        let journal = try f.create("db-journal")
        try f.write(journal, bytes("1", 512), at: 0)
        try f.fsync(journal)
        f.close(journal)
        try f.unlink("db-journal")
        let first = f.crash()
        #expect(f.contents("db-journal") == bytes("1", 512))  // the delete was undone: a hot journal again
        #expect(first.namesUndone == 1 && first.undoErrors == 0)
        // The next transaction's journal, fsync'd: the delete before it is durable with it.
        try f.unlink("db-journal")
        let again = try f.create("db-journal")
        try f.write(again, bytes("2", 512), at: 0)
        try f.fsync(again, dataOnly: true)
        f.close(again)
        let second = f.crash()
        #expect(f.contents("db-journal") == bytes("2", 512))
        #expect(second.namesUndone == 0 && second.undoErrors == 0)
    }

    @Test func journalNamesAreDurableWithAnyFsync() throws {
        let f = try CrashFixture(names: .journal)
        try f.durableFile("anchor", bytes("a", 1))
        try f.mkdir("dir")
        let a = try f.create("dir/a")
        try f.write(a, bytes("A", 100), at: 0)
        try f.unlink("anchor")
        let anchor2 = try f.create("other")
        try f.fsync(anchor2, dataOnly: true)     // any fsync: every name operation so far is durable
        let b = try f.create("dir/b")            // after it: not durable
        f.close(b)
        _ = f.crash()
        #expect(f.names("dir") == ["a"])
        #expect(f.contents("dir/a") == [])     // its name is durable, its data was never synced
        #expect(!f.exists("anchor"))
        #expect(f.exists("other"))
    }

    @Test func anUndoneUnlinkBringsTheSameInodeBack() throws {
        let f = try CrashFixture()
        try f.durableFile("victim", bytes("v", 5000))
        let inode = try #require(f.status("victim")).st_ino
        try f.unlink("victim")
        #expect(!f.exists("victim"))
        #expect(f.graves.count == 1)
        // The graveyard is invisible through the mount.
        #expect(errnoOf { _ = try f.node(FaultLayer.crashGraveyardName) } == .ENOENT)
        let report = f.crash()
        #expect(f.status("victim")?.st_ino == inode)
        #expect(f.status("victim")?.st_nlink == 1)
        #expect(f.contents("victim") == bytes("v", 5000))
        #expect(report.namesUndone == 1)
        #expect(f.graves.isEmpty)
    }

    @Test func aDurableUnlinkStaysAndItsGraveGoes() throws {
        let f = try CrashFixture()
        try f.durableFile("victim", bytes("v", 10))
        try f.unlink("victim")
        try f.fsyncDirectory("")
        #expect(f.graves.isEmpty)
        _ = f.crash()
        #expect(!f.exists("victim"))
    }

    @Test func anUndoneRenameRestoresBothNames() throws {
        let f = try CrashFixture()
        try f.durableFile("new", bytes("n", 10))
        try f.durableFile("old", bytes("o", 20))
        let newInode = try #require(f.status("new")).st_ino, oldInode = try #require(f.status("old")).st_ino
        try f.mkdir("sub")
        try f.fsyncDirectory("")
        try f.rename("new", "old")               // the classic atomic replace, not made durable
        try f.rename("old", "sub/moved")
        let report = f.crash()
        #expect(f.status("new")?.st_ino == newInode)
        #expect(f.status("old")?.st_ino == oldInode)
        #expect(f.contents("old") == bytes("o", 20))
        #expect(f.names("sub") == [])
        #expect(report.namesUndone == 2 && report.undoErrors == 0)
    }

    @Test func aRenameDurableInItsNewDirectoryStays() throws {
        let f = try CrashFixture()
        try f.durableFile("tmp", bytes("t", 10))
        try f.durableFile("final", bytes("f", 10))
        try f.rename("tmp", "final")
        try f.fsyncDirectory("")
        _ = f.crash()
        #expect(f.names() == ["final"])
        #expect(f.contents("final") == bytes("t", 10))
    }

    @Test func directoriesComeAndGo() throws {
        let f = try CrashFixture()
        try f.mkdir("keep", mode: 0o750)
        try f.fsyncDirectory("")
        try f.rmdir("keep")
        try f.mkdir("tree")
        try f.mkdir("tree/inner")
        let file = try f.create("tree/inner/file")
        try f.write(file, bytes("x", 10), at: 0)
        f.close(file)
        try f.chmod("", 0o700)
        _ = f.crash()
        #expect(f.names() == ["keep"])
        #expect(f.status("").map { $0.st_mode & 0o7777 } == 0o700)  // mkdtemp's mode: the chmod was undone
        #expect(f.status("keep").map { $0.st_mode & 0o7777 } == 0o750)
    }

    @Test func attributesRevertUnlessFsynced() throws {
        let f = try CrashFixture()
        try f.durableFile("a", bytes("a", 1))
        try f.durableFile("b", bytes("b", 1))
        try f.chmod("a", 0o600)
        try f.chmod("b", 0o600)
        let b = try f.open("b")
        try f.fsync(b)
        _ = f.crash()
        #expect(f.status("a").map { $0.st_mode & 0o7777 } == 0o644)
        #expect(f.status("b").map { $0.st_mode & 0o7777 } == 0o600)
    }

    @Test func aWriteThroughAnOSyncHandleIsDurableAtOnce() throws {
        let f = try CrashFixture()
        try f.durableFile("s", bytes("o", 100))
        let plain = try f.open("s")
        try f.write(plain, bytes("p", 10), at: 0)           // not durable by itself...
        let sync = try f.open("s", flags: O_RDWR | O_SYNC)
        try f.write(sync, bytes("s", 10), at: 50)           // ...but the O_SYNC write makes the file's data durable
        f.close(sync)
        let reopened = try f.open("s", flags: O_RDWR)
        try f.write(reopened, bytes("x", 10), at: 90)       // the handle is forgotten once released
        _ = f.crash()
        #expect(f.contents("s") == bytes("p", 10) + bytes("o", 40) + bytes("s", 10) + bytes("o", 40))
    }

    @Test func holesPunchedAndCopiedRangesAreUndone() throws {
        let f = try CrashFixture()
        let original = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 * 13 + 1) }
        try f.durableFile("punched", original)
        try f.durableFile("target", original)
        try f.durableFile("source", bytes("s", 20_000))
        let punched = try f.open("punched")
        try f.fs.fallocate(f.caller, node: punched.node, handle: punched.handle, mode: 0x02 | 0x01, offset: 4096, length: 8192)
        try f.fs.fallocate(f.caller, node: punched.node, handle: punched.handle, mode: 0, offset: 0, length: 100_000)
        #expect(f.contents("punched")?[5000] == 0 && f.status("punched")?.st_size == 100_000)
        let source = try f.open("source"), target = try f.open("target")
        let copied = try f.fs.copyFileRange(f.caller, from: source.node, sourceHandle: source.handle, sourceOffset: 0,
                                            to: target.node, destinationHandle: target.handle, destinationOffset: 1000,
                                            length: 30_000, flags: 0)
        #expect(copied == 20_000)
        let report = f.crash()
        #expect(f.contents("punched") == original)
        #expect(f.contents("target") == original)
        #expect(f.contents("source") == bytes("s", 20_000))
        #expect(report.filesReverted == 2 && report.filesTruncated == 2)
    }

    @Test func aDirectoryFsyncMakesItsAttributesDurable() throws {
        let f = try CrashFixture()
        try f.mkdir("d", mode: 0o755)
        try f.fsyncDirectory("")
        try f.chmod("d", 0o711)
        try f.fsyncDirectory("d")
        try f.chmod("", 0o701)
        _ = f.crash()
        #expect(f.status("d").map { $0.st_mode & 0o7777 } == 0o711)
        #expect(f.status("").map { $0.st_mode & 0o7777 } == 0o700)
    }

    /// A durable file of 16 KiB overwritten with new bytes and grown by 16 KiB.
    static func tornRun(seed: UInt64, sector: Int) throws -> [UInt8] {
        let f = try CrashFixture()
        try f.durableFile("t", bytes("o", 16_384))
        let file = try f.open("t")
        try f.write(file, bytes("n", 32_768), at: 0)
        let report = f.crash(CrashRequest(torn: true, seed: seed, sectorSize: sector))
        let result = f.contents("t") ?? []
        #expect(report.tornSectorsKept >= 0 && report.undoErrors == 0)
        return result
    }

    @Test(arguments: [512, 4096])
    func tornIsReproducibleAndCutAtSectors(_ sector: Int) throws {
        let a = try Self.tornRun(seed: 7, sector: sector)
        let b = try Self.tornRun(seed: 7, sector: sector)
        #expect(a == b)
        var differs = false
        for seed in 8..<12 where try Self.tornRun(seed: UInt64(seed), sector: sector) != a { differs = true }
        #expect(differs)
        #expect(a.count >= 16_384 && a.count <= 32_768 && a.count % sector == 0)
        // Each sector is all old, all new, or (appended, lost below a kept one) all zero.
        for start in stride(from: 0, to: a.count, by: sector) {
            let chunk = Set(a[start..<min(a.count, start + sector)])
            #expect(chunk.count == 1, "sector at \(start) is mixed: \(chunk)")
            let byte = chunk.first!
            #expect(start < 16_384 ? (byte == UInt8(ascii: "o") || byte == UInt8(ascii: "n")) : (byte == UInt8(ascii: "n") || byte == 0))
        }
    }

    @Test func theControlFileAcceptsACrashOnceAtATime() throws {
        let f = try CrashFixture()
        #expect(f.faults.crashSimulation == .posix)
        #expect(try f.controlFile("status").contains(#""crashsim":"posix","crashes":0}"#))
        try f.control("crash torn seed=3\n")
        #expect(eventually { f.asked.requests.withLock { $0 } == [CrashRequest(torn: true, seed: 3)] })
        #expect(errnoOf { try f.control("crash\n") } == Errno(EBUSY))
        #expect(try f.controlFile("control").contains("# error: line 1, column 1: crash: a crash is already in progress"))
        var report = f.crash(CrashRequest(torn: true, seed: 3))
        try f.control("crash\n")  // accepted again
        report = f.crash()
        let status = try MountStatus.decode(f.controlFile("status"))
        #expect(status.crashes == 2 && status.lastCrash == report)
        let crashes = try f.controlFile("events").split(separator: "\n").compactMap { try? InjectionEvent.decode(String($0)) }
            .filter { $0.action == .crash }
        #expect(crashes.count == 2 && crashes.last?.crash == report)
    }

    @Test func withoutCrashSimulationTheCommandIsRefused() throws {
        let f = try CrashFixture(names: nil)
        #expect(f.faults.crashSimulation == .off)
        #expect(errnoOf { try f.control("fail write EIO\ncrash\n") } == .EINVAL)
        #expect(try f.controlFile("control").contains(
            "# error: line 2, column 1: crash: this mount has no crash simulation; mount it with -o crashsim"))
        #expect(!(try f.controlFile("control")).contains("fail write"))  // all or nothing
        #expect(try f.controlFile("status").contains(#""crashsim":"off","crashes":0}"#))
        #expect(f.faults.applyControl("crash").isSuccess == false)
    }

    @Test func theGraveyardIsHiddenAndUntouchable() throws {
        let f = try CrashFixture()
        #expect(f.exists(FaultLayer.crashGraveyardName))
        let name = FaultLayer.crashGraveyardName
        #expect(errnoOf { _ = try f.create(name) } == .EPERM)
        #expect(errnoOf { try f.mkdir(name) } == .EPERM)
        try f.durableFile("x", [])
        #expect(errnoOf { try f.rename("x", name) } == .EPERM)
        #expect(errnoOf { try f.unlink(name) } == .ENOENT)
        let root = try f.fs.opendir(f.caller, node: rootNodeID, flags: O_RDONLY).handle
        var buffer = DirectoryBuffer(capacity: 65_536)
        try f.fs.readdir(f.caller, node: rootNodeID, handle: root, offset: 0, plus: false, into: &buffer)
        f.fs.releasedir(f.caller, node: rootNodeID, handle: root)
        let listed = buffer.entries(plus: false).map(\.name)
        #expect(!listed.contains(name))
        #expect(listed.contains("x"))
        // A clean end of the session removes it.
        f.fs.destroy()
        #expect(!f.exists(name))
    }

    @Test func aFullSpillFileStopsTheModelNotTheRequests() throws {
        let spill = try makeScratchDirectory("spill")
        defer { _ = Glibc.rmdir(spill) }
        let mounted = Subprocess.run(["/bin/mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", spill])
        try #require(mounted.status == 0, "\(mounted.output)")
        defer { _ = umount2(spill, Int32(MNT_DETACH)) }
        let f = try CrashFixture(spill: spill)
        try f.durableFile("big", bytes("o", 1 << 20))
        let file = try f.open("big")
        // Saving 1 MiB of old bytes does not fit in 64 KiB: the model stops, the write succeeds.
        #expect(try f.write(file, bytes("n", 1 << 20), at: 0) == 1 << 20)
        #expect(f.faults.crashSimulation == .stopped)
        #expect(try f.controlFile("status").contains(#""crashsim":"stopped""#))
        #expect(f.contents("big") == bytes("n", 1 << 20))
        let stop = try f.controlFile("events").split(separator: "\n").compactMap { try? InjectionEvent.decode(String($0)) }
            .first { $0.action == .crashsimStopped }
        #expect(stop?.errno == ENOSPC && stop?.path == "big")
        // Requests go on; a crash is refused with the reason.
        try f.write(file, bytes("m", 10), at: 0)
        try f.unlink("big")
        #expect(errnoOf { try f.control("crash\n") } == .EINVAL)
        #expect(try f.controlFile("control").contains("crash simulation stopped (spill file: "))
        #expect(!f.exists(FaultLayer.crashGraveyardName))
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { true } else { false } }
}
