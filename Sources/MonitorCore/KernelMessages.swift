// The kernel's messages about a block-mode run's inner file system and its
// loop device, from /dev/kmsg. Pure: parsing a record, classifying its
// text, the kernel.jsonl line, and the one sentence the summary says about
// what the file system did. The Monitor module reads /dev/kmsg.
//
// A /dev/kmsg record is "PRIO,SEQ,USEC,FLAGS[,...];TEXT" (then optional
// continuation lines " KEY=VALUE"), USEC being CLOCK_MONOTONIC microseconds
// (Documentation/ABI/testing/dev-kmsg).
//
// kernel.jsonl, one object a line:
//   {"time_ns":1764558000123456789,"monotonic_us":14214136933,"seq":2045,"fs":"ext4","device":"loop3",
//    "kind":"journal_aborted","text":"Aborting journal on device loop3-8."}
// time_ns is on the run's clock (CLOCK_REALTIME ns, like events.jsonl); "fs"
// is absent for the block layer's own lines ("I/O error, dev loop3, ...").

import FaultRules

/// One /dev/kmsg record, split.
public struct KmsgRecord: Sendable, Equatable {
    public var priority: Int
    public var sequence: UInt64
    public var monotonicMicroseconds: Int64
    public var text: String

    /// nil when `record` is not "PRIO,SEQ,USEC,FLAGS;TEXT".
    public static func parse(_ record: String) -> KmsgRecord? {
        guard let semicolon = record.firstIndex(of: ";") else { return nil }
        let fields = record[..<semicolon].split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count >= 3, let prefix = Int(fields[0]), let seq = UInt64(fields[1]),
              let usec = Int64(fields[2]) else { return nil }
        // Only the first line is the message; the rest are " KEY=VALUE" dictionary lines.
        var text = record[record.index(after: semicolon)...]
        if let newline = text.firstIndex(of: "\n") { text = text[..<newline] }
        return KmsgRecord(priority: prefix & 7, sequence: seq, monotonicMicroseconds: usec,
                          text: unescapeKmsg(String(text)))
    }

    /// /dev/kmsg writes non-printable bytes as \xNN.
    static func unescapeKmsg(_ s: String) -> String {
        guard s.contains("\\x") else { return s }
        var bytes: [UInt8] = []
        var u = Array(s.utf8)[...]
        while let b = u.first {
            if b == UInt8(ascii: "\\"), u.count >= 4, u[u.startIndex + 1] == UInt8(ascii: "x"),
               let v = UInt8(String(decoding: u[(u.startIndex + 2)...(u.startIndex + 3)], as: UTF8.self), radix: 16) {
                bytes.append(v)
                u = u.dropFirst(4)
            } else {
                bytes.append(b)
                u = u.dropFirst()
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a kernel message says happened.
public enum KernelMessageKind: String, Sendable, Equatable, CaseIterable {
    /// A failed block request or buffer ("I/O error, dev loop3, sector ...").
    case ioError = "io_error"
    /// ext4's journal (jbd2) aborted; Btrfs aborted a transaction.
    case journalAborted = "journal_aborted"
    /// The file system went read-only.
    case readOnly = "read_only"
    /// XFS (or ext4) shut itself down.
    case shutdown
    /// Any other error the file system reported.
    case fsError = "fs_error"
}

/// One classified kernel message.
public struct KernelMessage: Sendable, Equatable {
    /// On the run's clock (CLOCK_REALTIME ns).
    public var timeNs: Int64
    public var monotonicMicroseconds: Int64
    public var sequence: UInt64
    /// "ext4", "xfs", "btrfs"; nil for the block layer's lines.
    public var fileSystem: String?
    /// "loop3" (no /dev/, no jbd2 "-8" suffix).
    public var device: String
    public var kind: KernelMessageKind
    public var text: String

    public init(timeNs: Int64, monotonicMicroseconds: Int64, sequence: UInt64, fileSystem: String?, device: String,
                kind: KernelMessageKind, text: String) {
        self.timeNs = timeNs; self.monotonicMicroseconds = monotonicMicroseconds; self.sequence = sequence
        self.fileSystem = fileSystem; self.device = device; self.kind = kind; self.text = text
    }

    /// The message a record carries, if it is one about a file system or a
    /// block device that we recognise. `offsetNs` moves the record's
    /// monotonic time onto the run's clock (realtime - monotonic).
    public static func classify(_ record: KmsgRecord, offsetNs: Int64 = 0) -> KernelMessage? {
        guard let (fs, device, kind) = classify(text: record.text) else { return nil }
        return KernelMessage(timeNs: record.monotonicMicroseconds * 1000 + offsetNs,
                             monotonicMicroseconds: record.monotonicMicroseconds, sequence: record.sequence,
                             fileSystem: fs, device: device, kind: kind, text: record.text)
    }

    /// (file system, device, kind) of a message's text; nil for messages
    /// that are not about a recognised failure (mount notices, info lines).
    public static func classify(text: String) -> (fileSystem: String?, device: String, kind: KernelMessageKind)? {
        let t = text
        // Block layer: "I/O error, dev loop3, sector 2048 op 0x1:(WRITE) ...",
        // older "blk_update_request: I/O error, dev loop3, ...",
        // buffer heads: "Buffer I/O error on dev loop3, logical block 5, lost async page write".
        if let device = word(after: "I/O error, dev ", in: t) ?? word(after: "Buffer I/O error on dev ", in: t) {
            return (nil, device, .ioError)
        }
        // jbd2 (ext4's journal): "Aborting journal on device loop3-8."
        if let device = word(after: "Aborting journal on device ", in: t) {
            return ("ext4", device, .journalAborted)
        }
        // jbd2: "JBD2: I/O error when updating journal superblock for loop3-8.",
        // "JBD2: Detected IO errors while flushing file data on loop3-8"
        if t.hasPrefix("JBD2: "), let device = word(after: " for ", in: t) ?? word(after: " on ", in: t) {
            return ("ext4", device, .ioError)
        }
        if t.hasPrefix("EXT4-fs") {
            // "EXT4-fs (loop3): ..." or "EXT4-fs error (device loop3): ..." / "EXT4-fs warning (device loop3): ..."
            guard let device = word(after: "(device ", in: t) ?? word(after: "EXT4-fs (", in: t) else { return nil }
            if t.contains("Remounting filesystem read-only") { return ("ext4", device, .readOnly) }
            if t.contains("shut down") || t.contains("Shutting down") { return ("ext4", device, .shutdown) }
            if t.contains("Detected aborted journal") || t.contains("Journal has aborted") { return ("ext4", device, .journalAborted) }
            if t.hasPrefix("EXT4-fs error") { return ("ext4", device, .fsError) }
            if t.contains("I/O error") { return ("ext4", device, .ioError) }
            return nil
        }
        if t.hasPrefix("XFS (") {
            // "XFS (loop3): log I/O error -5", "XFS (loop3): Filesystem has been shut down due to log error (0x2).",
            // "XFS (loop3): metadata I/O error in \"xlog_...\" at daddr 0x2 len 1 error 5"
            guard let device = word(after: "XFS (", in: t) else { return nil }
            if t.contains("shut down") || t.contains("Shutting down") || t.contains("force_shutdown") { return ("xfs", device, .shutdown) }
            if t.contains("I/O error") || t.contains("I/O Error") { return ("xfs", device, .ioError) }
            if t.contains("Corruption") || t.contains("error") { return ("xfs", device, .fsError) }
            return nil
        }
        if t.hasPrefix("BTRFS") {
            // "BTRFS info (device loop3 state E): forced readonly",
            // "BTRFS error (device loop3 state EA): Transaction aborted (error -5)",
            // "BTRFS: error (device loop3) in write_all_supers:4088: errno=-5 IO failure ..."
            guard let device = word(after: "(device ", in: t) else { return nil }
            if t.contains("forced readonly") { return ("btrfs", device, .readOnly) }
            if t.contains("Transaction aborted") { return ("btrfs", device, .journalAborted) }
            if t.hasPrefix("BTRFS error") || t.hasPrefix("BTRFS: error") || t.hasPrefix("BTRFS critical") {
                return ("btrfs", device, .fsError)
            }
            return nil
        }
        return nil
    }

    /// The device name after `marker`, up to a space, comma, ")" or ":";
    /// jbd2's "loop3-8" (device-inode) becomes "loop3".
    static func word(after marker: String, in text: String) -> String? {
        guard let r = text.firstRange(of: marker) else { return nil }
        var name = String(text[r.upperBound...].prefix { !" ,):".contains($0) })
        if name.hasSuffix(".") { name.removeLast() }
        if name.hasPrefix("/dev/") { name.removeFirst(5) }
        if let dash = name.lastIndex(of: "-"), name[name.index(after: dash)...].allSatisfy(\.isNumber) {
            name = String(name[..<dash])
        }
        return name.isEmpty ? nil : name
    }

    // MARK: kernel.jsonl

    public static let fileName = "kernel.jsonl"

    public func jsonLine() -> String {
        "{\"time_ns\":\(timeNs),\"monotonic_us\":\(monotonicMicroseconds),\"seq\":\(sequence)"
            + (fileSystem.map { ",\"fs\":" + jsonString($0) } ?? "")
            + ",\"device\":" + jsonString(device) + ",\"kind\":\"\(kind.rawValue)\",\"text\":" + jsonString(text) + "}"
    }

    public static func parse(jsonLine line: String) -> KernelMessage? {
        guard let o = try? parseJSON(line), let t = o["time_ns"]?.int64, let device = o["device"]?.string,
              let kind = o["kind"]?.string.flatMap(KernelMessageKind.init(rawValue:)) else { return nil }
        return KernelMessage(timeNs: t, monotonicMicroseconds: o["monotonic_us"]?.int64 ?? 0,
                             sequence: o["seq"]?.integer(as: UInt64.self) ?? 0, fileSystem: o["fs"]?.string,
                             device: device, kind: kind, text: o["text"]?.string ?? "")
    }

    /// All messages of a kernel.jsonl text (unreadable lines skipped), in time order.
    public static func parseAll(_ text: String) -> [KernelMessage] {
        text.split(separator: "\n").compactMap { parse(jsonLine: String($0)) }.sorted { $0.sequence < $1.sequence }
    }
}

/// The one sentence the summary and the report say about what the inner
/// file system did, e.g. "ext4 aborted its journal 0.21 s after the first
/// injected write error and remounted read-only".
public enum KernelVerdict {
    /// - Parameters:
    ///   - fileSystem: the inner file system ("ext4"), as mounted.
    ///   - device: its loop device ("loop3").
    ///   - messages: kernel.jsonl of the run.
    ///   - injections: the injected events, for the time of the first error.
    public static func sentence(fileSystem: String, device: String, messages: [KernelMessage],
                                injections: [InjectionEvent]) -> String {
        let ours = messages.filter { $0.device == device }.sorted { $0.sequence < $1.sequence }
        let firstError = injections.filter(\.isError).min { $0.timeNs < $1.timeNs }
        guard !ours.isEmpty else {
            return firstError == nil
                ? "\(fileSystem) on \(device) logged nothing to the kernel log (no error was injected)"
                : "\(fileSystem) on \(device) logged nothing to the kernel log after the injected errors"
        }
        // The consequences, each once, in the order they happened.
        var consequences: [KernelMessage] = []
        for m in ours where [.journalAborted, .shutdown, .readOnly].contains(m.kind)
            && !consequences.contains(where: { $0.kind == m.kind }) {
            consequences.append(m)
        }
        let lead = consequences.first ?? ours.first { $0.kind == .fsError } ?? ours[0]
        var text = fileSystem + " " + phrase(lead, fileSystem: fileSystem, count: ours.count { $0.kind == lead.kind })
        if let firstError {
            // The disk's words: the loop device's writes reach the image as
            // direct (sync) writes, its cache flushes as fsync.
            let op = switch firstError.op {
            case .writeback, .syncwrite: "write"
            case .flush, .fsync, .fdatasync: "flush"
            default: firstError.op.name
            }
            let seconds = Double(lead.timeNs - firstError.timeNs) / 1e9
            let delay = seconds < 0.1 ? "\(Int((seconds * 1000).rounded())) ms" : "\(formatFixed(seconds, 2)) s"
            text += seconds >= 0 ? " \(delay) after the first injected \(op) error"
                : " before the first injected \(op) error"
        }
        let rest = consequences.dropFirst().map { phrase($0, fileSystem: fileSystem, count: 1) }
        if !rest.isEmpty { text += " and " + rest.joined(separator: " and ") }
        if consequences.isEmpty, lead.kind == .ioError { text += ", and carried on" }
        return text
    }

    static func phrase(_ m: KernelMessage, fileSystem: String, count: Int) -> String {
        switch m.kind {
        case .journalAborted: return fileSystem == "btrfs" ? "aborted a transaction" : "aborted its journal"
        case .shutdown: return "shut down"
        case .readOnly: return fileSystem == "btrfs" ? "went read-only" : "remounted read-only"
        case .fsError: return "reported an error (\"\(m.text)\")"
        case .ioError: return "logged \(count) I/O error" + (count == 1 ? "" : "s") + " on \(m.device)"
        }
    }
}
