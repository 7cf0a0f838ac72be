@testable import FaultRules
import Testing

@Suite struct InjectionEventTests {
    @Test func fullLine() {
        let event = InjectionEvent(timeNs: 1_700_000_000_000_000_000, ruleID: "r1", action: .fail, op: .writeback,
                                   path: "pg_wal/000001", inode: 42, offset: 8192, length: 4096, errno: 28,
                                   pid: 0, comm: nil, writeback: true)
        #expect(event.jsonLine() == #"{"time_ns":1700000000000000000,"rule":"r1","action":"fail","op":"writeback","path":"pg_wal/000001","inode":42,"offset":8192,"length":4096,"errno":28,"errno_name":"ENOSPC","pid":0,"comm":null,"writeback":true}"# + "\n")
    }

    @Test func noErrnoNoOffsetNoPath() {
        let line = InjectionEvent(timeNs: 5, ruleID: "a", action: .release, op: .fsync).jsonLine()
        #expect(line.contains(#""path":null"#))
        #expect(line.contains(#""offset":null"#))
        #expect(line.contains(#""errno":0,"errno_name":null"#))
        #expect(line.contains(#""op":"fsync""#))
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
    }

    @Test func escaping() {
        let event = InjectionEvent(timeNs: 0, ruleID: "r1", action: .delay, op: .copyFileRange,
                                   path: "dir/\"quoted\" back\\slash\nnew\tline\u{01}\u{1F}\u{7F}日本/é",
                                   comm: "a\"b")
        let line = event.jsonLine()
        #expect(line.contains(#""path":"dir/\"quoted\" back\\slash\nnew\tline\u0001\u001f"# + "\u{7F}日本/é\""))
        #expect(line.contains(#""comm":"a\"b""#))
        #expect(line.contains(#""op":"copy_file_range""#))
        #expect(line.filter { $0 == "\n" }.count == 1)
    }
}

@Suite struct InjectionEventDecodeTests {
    /// A line as the daemon has written it since the first release.
    static let written = #"{"time_ns":1700000000000000000,"rule":"r1","action":"fail","op":"writeback","path":"pg_wal/000001","inode":42,"offset":8192,"length":4096,"errno":28,"errno_name":"ENOSPC","pid":0,"comm":null,"writeback":true}"#

    @Test func decodesAWrittenLine() throws {
        let event = try InjectionEvent.decode(Self.written + "\n")
        #expect(event == InjectionEvent(timeNs: 1_700_000_000_000_000_000, ruleID: "r1", action: .fail, op: .writeback,
                                        path: "pg_wal/000001", inode: 42, offset: 8192, length: 4096, errno: 28,
                                        pid: 0, comm: nil, writeback: true))
        #expect(event.jsonLine() == Self.written + "\n")
    }

    @Test func decodesTheMonitorsInjectionLine() throws {
        let line = #"{"kind":"injection","# + Self.written.dropFirst()
        #expect(try InjectionEvent.decode(line).errno == 28)
    }

    @Test(arguments: InjectionEvent.Action.allCases)
    func roundTripsEveryAction(_ action: InjectionEvent.Action) throws {
        let event = InjectionEvent(timeNs: -5, ruleID: "a \"b\"", action: action, op: .copyFileRange, path: "dir/ü\n",
                                   inode: UInt64.max, offset: Int64.max, length: -1, errno: 511, pid: Int32.max,
                                   comm: "c\u{1}", writeback: false, crash: action == .crash ? CrashReport() : nil)
        #expect(try InjectionEvent.decode(event.jsonLine()) == event)
        #expect(event.jsonLine().contains(#""action":"\#(action.name)""#))
    }

    @Test func everyRuleActionHasAnEventWord() {
        let actions: [FaultAction] = [.fail(errno: 5), .delay(nanoseconds: 1), .stall(timeoutNanoseconds: nil), .drop, .short(bytes: nil)]
        for action in actions { #expect(InjectionEvent.Action(action).name == action.name) }
    }

    @Test func roundTripsEveryOp() throws {
        for op in FaultOp.allCases {
            let event = InjectionEvent(timeNs: 1, ruleID: "r", action: .stall, op: op)
            #expect(try InjectionEvent.decode(event.jsonLine()) == event)
        }
    }

    /// The written line with `old` replaced by `new`: the error it must give.
    @Test(arguments: [
        (#""action":"fail""#, #""action":"explode""#, JSONRecordError.badValue("action")),
        (#""action":"fail""#, #""action":null"#, .badValue("action")),
        (#""op":"writeback""#, #""op":"martian""#, .badValue("op")),
        (#","comm":null"#, "", .missingKey("comm")),
        (#""time_ns":1700000000000000000,"#, "", .missingKey("time_ns")),
        (#""time_ns":1700000000000000000"#, #""time_ns":1.7e18"#, .badValue("time_ns")),
        (#""inode":42"#, #""inode":-42"#, .badValue("inode")),
        (#""offset":8192"#, #""offset":-2"#, .badValue("offset")),
        (#""offset":8192"#, #""offset":"8192""#, .badValue("offset")),
        (#""errno":28"#, #""errno":-28"#, .badValue("errno")),
        (#""pid":0"#, #""pid":2147483648"#, .badValue("pid")),
        (#""writeback":true"#, #""writeback":1"#, .badValue("writeback")),
        (#""path":"pg_wal/000001""#, #""path":7"#, .badValue("path")),
        (#""errno_name":"ENOSPC""#, #""errno_name":28"#, .badValue("errno_name")),
        (#""rule":"r1""#, #""rule":"r1","extra":1"#, .unknownKey("extra")),
        (#"{"time_ns""#, #"{"kind":"setting","time_ns""#, .unknownKey("kind")),
    ])
    func refuses(_ old: String, _ new: String, _ expected: JSONRecordError) {
        let text = Self.written.replacingFirst(old, with: new)
        #expect(text != Self.written)
        #expect(throws: expected) { try InjectionEvent.decode(text) }
    }

    @Test(arguments: ["", "not json", "[]", "{}", Self.written + ",", Self.written + Self.written])
    func refusesBrokenText(_ text: String) {
        #expect(throws: JSONRecordError.self) { try InjectionEvent.decode(text) }
    }
}

@Suite struct CrashEventTests {
    @Test func aCrashEventCarriesTheReport() throws {
        var report = CrashReport()
        report.request = CrashRequest(torn: true, seed: 7, sectorSize: 4096)
        report.filesReverted = 1; report.bytesReverted = 10; report.filesTruncated = 2; report.namesUndone = 3
        report.tornSectorsKept = 4; report.undoErrors = 0
        let event = InjectionEvent(timeNs: 1, ruleID: "crash", action: .crash, op: .fsync, crash: report)
        let line = event.jsonLine()
        #expect(line.hasSuffix(#""writeback":false,"files_reverted":1,"bytes_reverted":10,"files_truncated":2,"names_undone":3,"torn_sectors_kept":4,"seed":7,"undo_errors":0,"torn":true,"sector":4096}"# + "\n"))
        #expect(try InjectionEvent.decode(line) == event)
    }

    @Test func reportKeysBelongToCrashEventsOnly() {
        let line = InjectionEvent(timeNs: 1, ruleID: "r", action: .fail, op: .fsync).jsonLine()
        let withReport = String(line.dropLast(2)) + #","files_reverted":1}"#
        #expect(throws: JSONRecordError.unknownKey("files_reverted")) { try InjectionEvent.decode(withReport) }
        let crashWithout = InjectionEvent(timeNs: 1, ruleID: "crash", action: .crash, op: .fsync).jsonLine()
        #expect(throws: JSONRecordError.missingKey("files_reverted")) { try InjectionEvent.decode(crashWithout) }
    }

    @Test func theStopEventHasItsWord() throws {
        let event = InjectionEvent(timeNs: 1, ruleID: "crashsim", action: .crashsimStopped, op: .syncwrite, errno: 28)
        #expect(event.jsonLine().contains(#""action":"crashsim-stopped""#))
        #expect(try InjectionEvent.decode(event.jsonLine()) == event)
    }
}
