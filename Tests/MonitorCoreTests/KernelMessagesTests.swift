import FaultRules
import Testing
@testable import MonitorCore

// Lines as Linux 6.18 wrote them on this machine during block-mode runs
// (faultfs mount --fs ...; faultfs ctl ... 'fail write EIO region=journal' / 'fail flush EIO').
@Suite struct KernelMessagesTests {
    @Test func splitsAKmsgRecord() throws {
        let r = try #require(KmsgRecord.parse("3,2045,14214136933,-;I/O error, dev loop0, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 0 prio class 2\n SUBSYSTEM=block\n DEVICE=b7:0\n"))
        #expect(r.priority == 3)
        #expect(r.sequence == 2045)
        #expect(r.monotonicMicroseconds == 14_214_136_933)
        #expect(r.text == "I/O error, dev loop0, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 0 prio class 2")
        // The facility sits in the upper bits of the first field; continuation flag "c".
        #expect(KmsgRecord.parse("11,7,100,c;x")?.priority == 3)
        #expect(KmsgRecord.parse("6,1,5,-;tab\\x09here")?.text == "tab\there")
        #expect(KmsgRecord.parse("no semicolon") == nil)
        #expect(KmsgRecord.parse("a,b,c,-;text") == nil)
    }

    @Test(arguments: [
        ("I/O error, dev loop0, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 0 prio class 2", nil, "loop0", KernelMessageKind.ioError),
        ("blk_update_request: I/O error, dev loop12, sector 4096 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0", nil, "loop12", .ioError),
        ("Buffer I/O error on dev loop3, logical block 131072, lost sync page write", nil, "loop3", .ioError),
        ("Aborting journal on device loop3-8.", "ext4", "loop3", .journalAborted),
        ("JBD2: I/O error when updating journal superblock for loop3-8.", "ext4", "loop3", .ioError),
        ("EXT4-fs error (device loop3): ext4_journal_check_start:84: comm sh: Detected aborted journal", "ext4", "loop3", .journalAborted),
        ("EXT4-fs (loop3): Remounting filesystem read-only", "ext4", "loop3", .readOnly),
        ("EXT4-fs error (device loop3): ext4_find_entry:1593: inode #2: comm ls: reading directory lblock 0", "ext4", "loop3", .fsError),
        ("EXT4-fs warning (device loop3): ext4_end_bio:342: I/O error 10 writing to inode 12 starting block 34816)", "ext4", "loop3", .ioError),
        ("XFS (loop4): log I/O error -5", "xfs", "loop4", .ioError),
        ("XFS (loop4): Filesystem has been shut down due to log error (0x2).", "xfs", "loop4", .shutdown),
        ("XFS (loop4): Log I/O Error (0x2) detected at xlog_ioend_work+0x6d/0x70 (fs/xfs/xfs_log.c:1256).  Shutting down filesystem.", "xfs", "loop4", .shutdown),
        ("XFS (loop4): metadata I/O error in \"xfs_buf_ioend+0x1f0/0x560\" at daddr 0x2 len 1 error 5", "xfs", "loop4", .ioError),
        ("BTRFS error (device loop0): bdev /dev/loop0 errs: wr 0, rd 0, flush 1, corrupt 0, gen 0", "btrfs", "loop0", .fsError),
        ("BTRFS: error (device loop0) in write_all_supers:4088: errno=-5 IO failure (errors while submitting device barriers.)", "btrfs", "loop0", .fsError),
        ("BTRFS info (device loop0 state E): forced readonly", "btrfs", "loop0", .readOnly),
        ("BTRFS error (device loop0 state EA): Transaction aborted (error -5)", "btrfs", "loop0", .journalAborted),
    ] as [(String, String?, String, KernelMessageKind)])
    func classifies(text: String, fs: String?, device: String, kind: KernelMessageKind) throws {
        let c = try #require(KernelMessage.classify(text: text))
        #expect(c.fileSystem == fs)
        #expect(c.device == device)
        #expect(c.kind == kind)
    }

    @Test(arguments: [
        "EXT4-fs (loop3): mounted filesystem 5c0c1d6e-7f1f-4d3e-9f5a-0a5d3c2f8b11 r/w with ordered data mode. Quota mode: none.",
        "EXT4-fs (loop3): unmounting filesystem 5c0c1d6e-7f1f-4d3e-9f5a-0a5d3c2f8b11.",
        "XFS (loop4): Mounting V5 Filesystem 0b6a0a3e-6a0c-4b4f-8d1e-3f4f4f0e2c51",
        "XFS (loop4): Ending clean mount",
        "BTRFS info (device loop0): first mount of filesystem eaf3f83d-f570-44ef-ab91-6bd04e697410",
        "loop3: detected capacity change from 0 to 2097152",
        "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    ])
    func ignoresNotices(text: String) {
        #expect(KernelMessage.classify(text: text) == nil)
    }

    @Test func recordBecomesAMessageOnTheRunClock() throws {
        let r = try #require(KmsgRecord.parse("2,88,5000000,-;Aborting journal on device loop3-8."))
        let m = try #require(KernelMessage.classify(r, offsetNs: 1_000_000_000_000))
        #expect(m.timeNs == 5_000_000_000 + 1_000_000_000_000)
        #expect(m.monotonicMicroseconds == 5_000_000)
        #expect(m.sequence == 88)
        #expect(KernelMessage.parse(jsonLine: m.jsonLine()) == m)
        let block = KernelMessage(timeNs: 1, monotonicMicroseconds: 1, sequence: 1, fileSystem: nil, device: "loop3",
                                  kind: .ioError, text: "I/O error, dev loop3, \"quoted\"")
        #expect(KernelMessage.parse(jsonLine: block.jsonLine()) == block)
        #expect(!block.jsonLine().contains("\"fs\""))
    }

    private func message(_ seconds: Double, _ text: String, seq: UInt64) -> KernelMessage {
        let c = KernelMessage.classify(text: text)!
        return KernelMessage(timeNs: Int64(seconds * 1e9), monotonicMicroseconds: 0, sequence: seq, fileSystem: c.fileSystem,
                             device: c.device, kind: c.kind, text: text)
    }

    private func injected(_ seconds: Double, _ op: FaultOp) -> InjectionEvent {
        InjectionEvent(timeNs: Int64(seconds * 1e9), ruleID: "r1", action: .fail, op: op, path: "disk.img", inode: 2, errno: 5)
    }

    @Test func sentenceForAnExt4JournalAbort() {
        let messages = [
            message(10.0, "I/O error, dev loop9, sector 1 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2", seq: 1),  // another disk
            message(10.1, "I/O error, dev loop3, sector 264192 op 0x1:(WRITE) flags 0x9800 phys_seg 1 prio class 2", seq: 2),
            message(10.21, "Aborting journal on device loop3-8.", seq: 3),
            message(10.3, "EXT4-fs error (device loop3): ext4_journal_check_start:84: comm sh: Detected aborted journal", seq: 4),
            message(10.31, "EXT4-fs (loop3): Remounting filesystem read-only", seq: 5),
        ]
        let s = KernelVerdict.sentence(fileSystem: "ext4", device: "loop3", messages: messages,
                                       injections: [injected(10.01, .syncwrite), injected(10.5, .syncwrite)])
        #expect(s == "ext4 aborted its journal 0.20 s after the first injected write error and remounted read-only")
    }

    @Test func sentenceForXfsShutdownAfterAFlushError() {
        let messages = [
            message(3.0, "XFS (loop4): log I/O error -5", seq: 1),
            message(3.05, "XFS (loop4): Filesystem has been shut down due to log error (0x2).", seq: 2),
        ]
        #expect(KernelVerdict.sentence(fileSystem: "xfs", device: "loop4", messages: messages, injections: [injected(3.0, .fsync)])
            == "xfs shut down 50 ms after the first injected flush error")
    }

    @Test func sentenceWhenTheFileSystemCarriedOnOrSaidNothing() {
        let io = [message(1.5, "Buffer I/O error on dev loop3, logical block 9, lost async page write", seq: 1),
                  message(1.6, "I/O error, dev loop3, sector 72 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 2", seq: 2)]
        #expect(KernelVerdict.sentence(fileSystem: "ext4", device: "loop3", messages: io, injections: [injected(1.0, .syncwrite)])
            == "ext4 logged 2 I/O errors on loop3 0.50 s after the first injected write error, and carried on")
        #expect(KernelVerdict.sentence(fileSystem: "ext4", device: "loop3", messages: [], injections: [injected(1.0, .syncwrite)])
            == "ext4 on loop3 logged nothing to the kernel log after the injected errors")
        #expect(KernelVerdict.sentence(fileSystem: "btrfs", device: "loop3", messages: [], injections: [])
            == "btrfs on loop3 logged nothing to the kernel log (no error was injected)")
    }

    /// The records of one `faultfs mount --fs ext4` + 'fail write EIO region=journal' + `echo x > f; sync`, as read from /dev/kmsg.
    static let ext4JournalRun = """
        6,3257,14775207879,-;loop0: detected capacity change from 0 to 524288
        6,3258,14775333389,-;EXT4-fs (loop0): mounted filesystem c896e445-2cf3-4a68-8977-9992fc0f29fc r/w with ordered data mode. Quota mode: none.
        3,3259,14775537786,-;I/O error, dev loop0, sector 229378 op 0x1:(WRITE) flags 0x9800 phys_seg 1 prio class 2
        3,3260,14775539782,-;Buffer I/O error on dev loop0, logical block 114689, lost sync page write
        3,3261,14775541034,-;JBD2: I/O error when updating journal superblock for loop0-8.
        3,3262,14775542338,-;Aborting journal on device loop0-8.
        3,3263,14775547990,-;I/O error, dev loop0, sector 229378 op 0x1:(WRITE) flags 0x9800 phys_seg 1 prio class 2
        2,3267,14776106506,-;EXT4-fs error (device loop0): ext4_journal_check_start:87: comm ext4lazyinit: Detected aborted journal
        2,3268,14776111341,-;EXT4-fs (loop0): Remounting filesystem read-only
        6,3269,14776855758,-;EXT4-fs (loop0): unmounting filesystem c896e445-2cf3-4a68-8977-9992fc0f29fc.
        """

    @Test func aRealExt4JournalAbort() throws {
        let messages = Self.ext4JournalRun.split(separator: "\n").compactMap { KmsgRecord.parse(String($0)) }
            .compactMap { KernelMessage.classify($0) }
        #expect(messages.map(\.kind) == [.ioError, .ioError, .ioError, .journalAborted, .ioError, .journalAborted, .readOnly])
        #expect(messages.allSatisfy { $0.device == "loop0" })
        // The injected error came 1 ms before the first kernel line, 5.6 ms before the abort.
        let first = InjectionEvent(timeNs: 14_775_536_786_000, ruleID: "r1", action: .fail, op: .syncwrite, path: "disk.img", inode: 2, errno: 5)
        #expect(KernelVerdict.sentence(fileSystem: "ext4", device: "loop0", messages: messages, injections: [first])
            == "ext4 aborted its journal 6 ms after the first injected write error and remounted read-only")
    }

    @Test(arguments: [
        ("1,3275,14782246891,-;XFS (loop0): log I/O error -5", KernelMessageKind.ioError),
        ("1,3276,14782248057,-;XFS (loop0): Filesystem has been shut down due to log error (0x2).", .shutdown),
        ("3,3287,14784228832,-;I/O error, dev loop0, sector 0 op 0x1:(WRITE) flags 0x800 phys_seg 0 prio class 2", .ioError),
        ("2,3290,14784232960,-;BTRFS: error (device loop0) in write_all_supers:4088: errno=-5 IO failure (errors while submitting device barriers.)", .fsError),
        ("6,3291,14784235361,-;BTRFS info (device loop0 state E): forced readonly", .readOnly),
        ("3,3293,14784235373,-;BTRFS error (device loop0 state EA): Transaction aborted (error -5)", .journalAborted),
    ] as [(String, KernelMessageKind)])
    func realXfsAndBtrfsRecords(record: String, kind: KernelMessageKind) throws {
        let m = try #require(KmsgRecord.parse(record).flatMap { KernelMessage.classify($0) })
        #expect(m.kind == kind)
        #expect(m.device == "loop0")
    }

    @Test(arguments: [
        "1,3277,14782249627,-;XFS (loop0): Please unmount the filesystem and rectify the problem(s).",
        "6,3280,14783943801,-;BTRFS: device fsid cd6d7c19-e040-4a10-aa34-82a21df89bb2 devid 1 transid 6 /dev/loop0 (7:0) scanned by mount (20236)",
        "4,3292,14784235369,-;BTRFS warning (device loop0 state E): Skipping commit of aborted transaction.",
    ])
    func realNoticesAreNotEvents(record: String) throws {
        let r = try #require(KmsgRecord.parse(record))
        #expect(KernelMessage.classify(r) == nil)
    }
}
