@testable import FaultRules
import Testing

@Suite struct SavedRangesTests {
    @Test func gapsAreWhatIsNotSaved() {
        var r = SavedRanges()
        #expect(r.gaps(in: 0..<100) == [0..<100])
        r.insert(10..<20, spillOffset: 0)
        r.insert(40..<50, spillOffset: 100)
        #expect(r.gaps(in: 0..<100) == [0..<10, 20..<40, 50..<100])
        #expect(r.gaps(in: 12..<18) == [])
        #expect(r.gaps(in: 15..<45) == [20..<40])
        #expect(r.gaps(in: 20..<40) == [20..<40])
        #expect(r.gaps(in: 5..<5) == [])
        #expect(r.byteCount == 20)
    }

    @Test func contiguousPiecesJoin() {
        var r = SavedRanges()
        r.insert(0..<10, spillOffset: 0)
        r.insert(10..<20, spillOffset: 10)   // contiguous in file and spill: one piece
        r.insert(20..<30, spillOffset: 100)  // contiguous in the file only
        #expect(r.pieces == [.init(start: 0, end: 20, spillOffset: 0), .init(start: 20, end: 30, spillOffset: 100)])
    }
}

@Suite struct CrashJournalTests {
    @Test func aWriteSavesOnlyWhatIsUnsavedAndBelowTheDurableSize() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        // A file of 100 bytes: a write of [50, 150) saves [50, 100).
        #expect(j.overwrite(1, 50..<150, sizeBefore: 100, spillEnd: &spill) == [SavePiece(fileOffset: 50, length: 50, spillOffset: 0)])
        #expect(spill == 50)
        // Again: nothing new to save (and sizeBefore is ignored now: the durable size is known).
        #expect(j.overwrite(1, 60..<200, sizeBefore: 999, spillEnd: &spill) == [])
        // [0, 80): only [0, 50) is new.
        #expect(j.overwrite(1, 0..<80, sizeBefore: 0, spillEnd: &spill) == [SavePiece(fileOffset: 0, length: 50, spillOffset: 50)])
        #expect(spill == 100)
        // Past the durable size nothing is saved (a truncation undoes it).
        #expect(j.overwrite(1, 100..<4096, sizeBefore: 0, spillEnd: &spill) == [])
        #expect(j.files[1]?.durableSize == 100)
    }

    @Test func aWriteOverHolesSavesEachGapBackToBack() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 1000
        _ = j.overwrite(7, 10..<20, sizeBefore: 100, spillEnd: &spill)
        _ = j.overwrite(7, 30..<40, sizeBefore: 0, spillEnd: &spill)
        let pieces = j.overwrite(7, 0..<50, sizeBefore: 0, spillEnd: &spill)
        #expect(pieces == [SavePiece(fileOffset: 0, length: 10, spillOffset: 1020), SavePiece(fileOffset: 20, length: 10, spillOffset: 1030),
                           SavePiece(fileOffset: 40, length: 10, spillOffset: 1040)])
        #expect(spill == 1050)
    }

    @Test func fsyncMakesDataDurableAndFreesTheSpill() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        _ = j.overwrite(1, 0..<10, sizeBefore: 10, spillEnd: &spill)
        let (freed, graves) = j.fileSynced(1, dataOnly: true)
        #expect(freed == [.init(start: 0, end: 10, spillOffset: 0)])
        #expect(graves.isEmpty)
        #expect(j.files[1] == nil)
        // After the fsync the size is learned anew: the next change saves again.
        #expect(!j.knowsSize(of: 1))
        #expect(j.overwrite(1, 0..<10, sizeBefore: 20, spillEnd: &spill).count == 1)
    }

    @Test func fdatasyncKeepsAttributesFsyncDoesNot() {
        var j = CrashJournal(names: .posix)
        let old = SavedAttributes(mode: 0o100644, uid: 1, gid: 2)
        j.attributesChanging(1, old: old)
        j.attributesChanging(1, old: SavedAttributes(mode: 0o100600, uid: 1, gid: 2))  // the first is kept
        #expect(j.files[1]?.oldAttributes == old)
        _ = j.fileSynced(1, dataOnly: true)
        #expect(j.files[1]?.oldAttributes == old)
        _ = j.fileSynced(1, dataOnly: false)
        #expect(j.files[1] == nil)
    }

    @Test func posixNamesAreDurableWithTheirDirectory() {
        var j = CrashJournal(names: .posix)
        _ = j.record(.created(parent: 10, name: "a", isDirectory: false, inode: 100), timeNs: 0)
        _ = j.record(.unlinked(parent: 20, name: "b", grave: "g1"), timeNs: 1)
        _ = j.record(.renamed(from: 10, fromName: "c", to: 20, toName: "d", replaced: .file(grave: "g2"), exchanged: false, inode: 101), timeNs: 2)
        // An fsync of a file none of them names makes no name durable.
        _ = j.fileSynced(99, dataOnly: false)
        #expect(j.nameLog.count == 3)
        // A very old operation is not durable under posix.
        #expect(j.expire(nowNs: 1_000_000_000_000) == [])
        // fsync of 20: the unlink and the rename (its new parent) are durable; their graves go.
        #expect(j.directorySynced(20) == ["g1", "g2"])
        #expect(j.nameLog.map(\.change) == [.created(parent: 10, name: "a", isDirectory: false, inode: 100)])
        #expect(j.directorySynced(10) == [])
        #expect(j.nameLog.isEmpty)
    }

    @Test func posixFsyncOfTheFileMakesTheNamesOfItDurable() {
        var j = CrashJournal(names: .posix)
        _ = j.record(.created(parent: 1, name: "data", isDirectory: false, inode: 50), timeNs: 0)
        _ = j.record(.created(parent: 1, name: "other", isDirectory: false, inode: 51), timeNs: 1)
        _ = j.record(.linked(parent: 1, name: "hard", inode: 50), timeNs: 2)
        // fdatasync too: ext4, XFS and Btrfs persist a new file's name with it.
        #expect(j.fileSynced(50, dataOnly: true).graves == [])
        #expect(j.nameLog.map(\.change) == [.created(parent: 1, name: "other", isDirectory: false, inode: 51)])
        // A rename is durable with the file it moved.
        _ = j.record(.renamed(from: 1, fromName: "other", to: 2, toName: "moved", replaced: .file(grave: "g1"),
                              exchanged: false, inode: 51), timeNs: 3)
        #expect(j.fileSynced(51, dataOnly: false).graves == ["g1"])
        #expect(j.nameLog.isEmpty)
    }

    @Test func posixUnlinkAndRmdirStillNeedTheDirectory() {
        var j = CrashJournal(names: .posix)
        _ = j.record(.unlinked(parent: 1, name: "journal", grave: "g1"), timeNs: 0)
        _ = j.record(.removedDirectory(parent: 1, name: "d", attributes: SavedAttributes(mode: 0o40755, uid: 0, gid: 0)), timeNs: 1)
        // They name no file: no file's fsync makes them durable.
        _ = j.fileSynced(1, dataOnly: false)
        _ = j.fileSynced(2, dataOnly: false)
        #expect(j.nameLog.count == 2)
        let plan = j.undoPlan(request: CrashRequest(), currentSizes: [:])
        #expect(plan.steps.count == 2)
        #expect(j.directorySynced(1) == ["g1"])
        #expect(j.nameLog.isEmpty)
    }

    @Test func aDurableOperationTakesWhatMadeItsNamesAndDirectoriesAlong() {
        var j = CrashJournal(names: .posix)
        // Redis's rewrite: the directory, a temp file at the top, renamed into the directory, whose fsync follows.
        _ = j.record(.created(parent: 1, name: "appendonlydir", isDirectory: true, inode: 10), timeNs: 0)
        _ = j.record(.created(parent: 1, name: "temp.aof", isDirectory: false, inode: 11), timeNs: 1)
        _ = j.record(.created(parent: 1, name: "unrelated", isDirectory: false, inode: 12), timeNs: 2)
        _ = j.fileSynced(11, dataOnly: true)   // the temp file's fsync: its create is durable
        #expect(j.nameLog.count == 2)
        _ = j.record(.renamed(from: 1, fromName: "temp.aof", to: 10, toName: "base.aof", replaced: nil,
                              exchanged: false, inode: 11), timeNs: 3)
        _ = j.directorySynced(10)
        // The rename is durable, and with it the mkdir of its new directory; the unrelated create is not.
        #expect(j.nameLog.map(\.change) == [.created(parent: 1, name: "unrelated", isDirectory: false, inode: 12)])
    }

    @Test func aCreateDurableByItsFileTakesItsDirectoryAlong() {
        var j = CrashJournal(names: .posix)
        // LMDB: mkdir the environment, create data.mdb in it, fsync data.mdb; the top is never fsync'd.
        _ = j.record(.created(parent: 1, name: "env", isDirectory: true, inode: 10), timeNs: 0)
        _ = j.record(.created(parent: 10, name: "data.mdb", isDirectory: false, inode: 11), timeNs: 1)
        _ = j.record(.created(parent: 10, name: "lock.mdb", isDirectory: false, inode: 12), timeNs: 2)
        _ = j.fileSynced(11, dataOnly: true)
        #expect(j.nameLog.map(\.change) == [.created(parent: 10, name: "lock.mdb", isDirectory: false, inode: 12)])
    }

    @Test func aRenameChainIsDurableFromItsStart() {
        var j = CrashJournal(names: .posix)
        _ = j.record(.created(parent: 1, name: "a", isDirectory: false, inode: 20), timeNs: 0)
        _ = j.record(.renamed(from: 1, fromName: "a", to: 2, toName: "b", replaced: nil, exchanged: false, inode: 20), timeNs: 1)
        _ = j.record(.renamed(from: 2, fromName: "b", to: 3, toName: "c", replaced: .file(grave: "g1"), exchanged: false, inode: 20), timeNs: 2)
        _ = j.record(.created(parent: 2, name: "b", isDirectory: false, inode: 21), timeNs: 3)  // b again, a new file
        // Durable in 3: the last rename, the one before (it made b), the create of a.
        #expect(j.directorySynced(3) == ["g1"])
        #expect(j.nameLog.map(\.change) == [.created(parent: 2, name: "b", isDirectory: false, inode: 21)])
    }

    @Test func aNameMadeAgainTakesItsRemovalAlong() {
        var j = CrashJournal(names: .posix)
        // SQLite's rollback journal: made durable, deleted at commit, made again by the next transaction.
        _ = j.record(.created(parent: 1, name: "db-journal", isDirectory: false, inode: 30), timeNs: 0)
        _ = j.fileSynced(30, dataOnly: false)
        _ = j.record(.unlinked(parent: 1, name: "db-journal", grave: "g1"), timeNs: 1)
        // A crash now brings the journal back: the delete needs the directory's fsync.
        #expect(j.undoPlan(request: CrashRequest(), currentSizes: [:]).steps
            == [.undoName(.unlinked(parent: 1, name: "db-journal", grave: "g1"))])
        _ = j.record(.created(parent: 1, name: "db-journal", isDirectory: false, inode: 31), timeNs: 2)
        // The new journal's fsync: its create is durable, and so is the delete before it (else undoing
        // the delete would find the name taken).
        #expect(j.fileSynced(31, dataOnly: true).graves == ["g1"])
        #expect(j.nameLog.isEmpty)
    }

    @Test func journalNamesAreDurableWithAnyFsyncOrAfterTheCommitInterval() {
        var j = CrashJournal(names: .journal)
        _ = j.record(.unlinked(parent: 1, name: "x", grave: "g1"), timeNs: 0)
        _ = j.record(.created(parent: 2, name: "y", isDirectory: true, inode: 3), timeNs: 1_000_000_000)
        // Any fsync, even of an unrelated file, commits all.
        #expect(j.fileSynced(42, dataOnly: true).graves == ["g1"])
        #expect(j.nameLog.isEmpty)
        _ = j.record(.unlinked(parent: 1, name: "x", grave: "g2"), timeNs: 10_000_000_000)
        _ = j.record(.linked(parent: 1, name: "z", inode: 9), timeNs: 12_000_000_000)
        // 5 s later the first is durable, the second not yet.
        #expect(j.expire(nowNs: 15_000_000_000) == ["g2"])
        #expect(j.nameLog.count == 1)
        // An fsyncdir of any directory commits the rest.
        _ = j.directorySynced(777)
        #expect(j.nameLog.isEmpty)
        // A record made after the interval commits what is older.
        _ = j.record(.linked(parent: 1, name: "a", inode: 9), timeNs: 20_000_000_000)
        #expect(j.record(.linked(parent: 1, name: "b", inode: 9), timeNs: 26_000_000_000) == [])
        #expect(j.nameLog.map(\.change) == [.linked(parent: 1, name: "b", inode: 9)])
    }

    @Test func thePlanUndoesDataThenNamesNewestFirst() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        _ = j.overwrite(5, 0..<10, sizeBefore: 100, spillEnd: &spill)
        _ = j.overwrite(6, 0..<0, sizeBefore: 0, spillEnd: &spill)
        j.attributesChanging(6, old: SavedAttributes(mode: 0o100600, uid: 0, gid: 0))
        _ = j.record(.created(parent: 1, name: "a", isDirectory: false, inode: 7), timeNs: 0)
        _ = j.record(.linked(parent: 1, name: "b", inode: 7), timeNs: 1)
        let plan = j.undoPlan(request: CrashRequest(), currentSizes: [5: 200, 6: 0])
        #expect(plan.steps == [
            .setSize(file: 5, size: 100),
            .restore(file: 5, offset: 0, length: 10, spillOffset: 0),
            .restoreAttributes(file: 6, SavedAttributes(mode: 0o100600, uid: 0, gid: 0)),
            .undoName(.linked(parent: 1, name: "b", inode: 7)),
            .undoName(.created(parent: 1, name: "a", isDirectory: false, inode: 7)),
        ])
        #expect(plan.tornSectorsKept == 0)
    }

    @Test func sizesRevertBothWays() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        // Truncated from 8192 to 1000: the cut bytes are saved, the size comes back.
        _ = j.overwrite(1, 1000..<Int64.max, sizeBefore: 8192, spillEnd: &spill)
        let plan = j.undoPlan(request: CrashRequest(), currentSizes: [1: 1000])
        #expect(plan.steps == [.setSize(file: 1, size: 8192), .restore(file: 1, offset: 1000, length: 7192, spillOffset: 0)])
        // A file that only grew is cut back; one whose size did not change keeps it.
        var k = CrashJournal(names: .posix)
        _ = k.overwrite(2, 0..<0, sizeBefore: 10, spillEnd: &spill)
        #expect(k.undoPlan(request: CrashRequest(), currentSizes: [2: 5000]).steps == [.setSize(file: 2, size: 10)])
        #expect(k.undoPlan(request: CrashRequest(), currentSizes: [2: 10]).steps == [])
    }

    @Test func theJournalModelSkipsNamesOlderThanTheIntervalAtTheCrash() {
        var j = CrashJournal(names: .journal)
        _ = j.record(.linked(parent: 1, name: "old", inode: 9), timeNs: 0)
        _ = j.record(.linked(parent: 1, name: "new", inode: 9), timeNs: 4_000_000_000)
        let plan = j.undoPlan(request: CrashRequest(), currentSizes: [:], nowNs: 6_000_000_000)
        #expect(plan.steps == [.undoName(.linked(parent: 1, name: "new", inode: 9))])
    }

    /// A file of 64 KiB with 40 KiB overwritten from 2000 and 24 KiB appended.
    static func tornJournal() -> CrashJournal {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        _ = j.overwrite(1, 2000..<42_000, sizeBefore: 65_536, spillEnd: &spill)
        _ = j.overwrite(2, 0..<0, sizeBefore: 0, spillEnd: &spill)
        return j
    }

    @Test func tornIsReproducibleFromTheSeedAndDiffersAcrossSeeds() {
        let j = Self.tornJournal()
        let sizes: [CrashFileID: Int64] = [1: 90_112, 2: 40_000]
        let a = j.undoPlan(request: CrashRequest(torn: true, seed: 7), currentSizes: sizes)
        let b = j.undoPlan(request: CrashRequest(torn: true, seed: 7), currentSizes: sizes)
        #expect(a == b)
        let plans = (0..<8).map { j.undoPlan(request: CrashRequest(torn: true, seed: UInt64($0)), currentSizes: sizes) }
        #expect(Set(plans.map { "\($0.steps)" }).count > 1)
        // Some sectors survive, some do not (with 16 units, all-or-nothing at p=1/2 is 2^-15).
        #expect(a.tornSectorsKept > 0)
        #expect(a.steps.contains { if case .restore = $0 { true } else { false } })
    }

    @Test(arguments: [512, 4096])
    func tornWorksInSectors(_ sector: Int) {
        let j = Self.tornJournal()
        let sizes: [CrashFileID: Int64] = [1: 90_112, 2: 40_000]
        for seed in 0..<20 {
            let plan = j.undoPlan(request: CrashRequest(torn: true, seed: UInt64(seed), sectorSize: sector), currentSizes: sizes)
            var units = 0
            for step in plan.steps {
                switch step {
                case .restore(_, let offset, let length, let spillOffset):
                    units += 1
                    // A chunk never crosses a sector boundary, and its spill offset follows its file offset.
                    #expect(offset / Int64(sector) == (offset + length - 1) / Int64(sector))
                    #expect(spillOffset == offset - 2000)
                case .zero(_, let offset, let length):
                    units += 1
                    #expect(offset % Int64(sector) == 0 || offset == 65_536)
                    #expect(length <= Int64(sector))
                case .setSize(let file, let size):
                    // The size is the durable size or the end of a surviving appended sector.
                    let durable: Int64 = file == 1 ? 65_536 : 0
                    #expect(size >= durable && size <= sizes[file]!)
                    #expect(size == durable || size % Int64(sector) == 0 || size == sizes[file]!)
                default:
                    Issue.record("unexpected \(step)")
                }
            }
            #expect(units <= 40_000 / sector + 2 + 90_112 / sector + 40_000 / sector)
        }
    }

    @Test func tornNeverKeepsAHoleAboveTheSize() {
        var j = CrashJournal(names: .posix)
        var spill: Int64 = 0
        _ = j.overwrite(1, 0..<0, sizeBefore: 0, spillEnd: &spill)
        for seed in 0..<50 {
            let plan = j.undoPlan(request: CrashRequest(torn: true, seed: UInt64(seed), sectorSize: 512), currentSizes: [1: 4096])
            var size: Int64 = 4096
            for step in plan.steps {
                if case .setSize(_, let s) = step { size = s }
                if case .zero(_, let offset, let length) = step { #expect(offset + length <= size) }
            }
            let kept = plan.tornSectorsKept
            let zeros = plan.steps.filter { if case .zero = $0 { true } else { false } }.count
            #expect(Int64(kept + zeros) * 512 <= size)
        }
    }
}

@Suite struct CrashReportTests {
    @Test func roundTripsItsJSON() throws {
        var report = CrashReport()
        report.request = CrashRequest(torn: true, seed: .max, sectorSize: 512)
        report.filesReverted = 2; report.bytesReverted = 1 << 40; report.filesTruncated = 3
        report.namesUndone = 4; report.tornSectorsKept = 5; report.undoErrors = 6
        #expect(report.json() == #"{"files_reverted":2,"bytes_reverted":1099511627776,"files_truncated":3,"names_undone":4,"torn_sectors_kept":5,"seed":18446744073709551615,"undo_errors":6,"torn":true,"sector":512}"#)
        #expect(try CrashReport.decode(report.json()) == report)
        #expect(throws: JSONRecordError.badValue("sector")) {
            try CrashReport.decode(report.json().replacingFirst("\"sector\":512", with: "\"sector\":1024"))
        }
        #expect(throws: JSONRecordError.unknownKey("extra")) {
            try CrashReport.decode(report.json().replacingFirst("{", with: "{\"extra\":1,"))
        }
        #expect(report.summary.contains("reverted 1099511627776 bytes in 2 files"))
    }
}
