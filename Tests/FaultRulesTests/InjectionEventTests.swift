import FaultRules
import Testing

@Suite struct InjectionEventTests {
    @Test func fullLine() {
        let event = InjectionEvent(timeNs: 1_700_000_000_000_000_000, ruleID: "r1", action: "fail", op: .writeback,
                                   path: "pg_wal/000001", inode: 42, offset: 8192, length: 4096, errno: 28,
                                   pid: 0, comm: nil, writeback: true)
        #expect(event.jsonLine() == #"{"time_ns":1700000000000000000,"rule":"r1","action":"fail","op":"writeback","path":"pg_wal/000001","inode":42,"offset":8192,"length":4096,"errno":28,"errno_name":"ENOSPC","pid":0,"comm":null,"writeback":true}"# + "\n")
    }

    @Test func noErrnoNoOffsetNoPath() {
        let line = InjectionEvent(timeNs: 5, ruleID: "a", action: "release", op: .fsync).jsonLine()
        #expect(line.contains(#""path":null"#))
        #expect(line.contains(#""offset":null"#))
        #expect(line.contains(#""errno":0,"errno_name":null"#))
        #expect(line.contains(#""op":"fsync""#))
        #expect(line.hasSuffix("}\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
    }

    @Test func escaping() {
        let event = InjectionEvent(timeNs: 0, ruleID: "r1", action: "delay", op: .copyFileRange,
                                   path: "dir/\"quoted\" back\\slash\nnew\tline\u{01}\u{1F}\u{7F}日本/é",
                                   comm: "a\"b")
        let line = event.jsonLine()
        #expect(line.contains(#""path":"dir/\"quoted\" back\\slash\nnew\tline\u0001\u001f"# + "\u{7F}日本/é\""))
        #expect(line.contains(#""comm":"a\"b""#))
        #expect(line.contains(#""op":"copy_file_range""#))
        #expect(line.filter { $0 == "\n" }.count == 1)
    }
}
