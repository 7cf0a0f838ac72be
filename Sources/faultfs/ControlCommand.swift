// `faultfs ctl MNT 'line' ...`: the control file, without echo, with a
// message and an exit status on bad input.
import ArgumentParser
import FaultRules
import Glibc
import System

struct ControlCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Send fault commands to a mount (or show its rules when none is given).",
        discussion: """
            Each argument is one line of the control language, e.g.
              faultfs ctl /srv/db 'fail writeback ENOSPC path=*.wal count=1'
              faultfs ctl /srv/db release
            All lines are applied together, or none is.
            """)

    @Argument(help: "The faultfs mount point.") var mountpoint: String
    @Argument(help: "Control lines; none: print the active rules.") var lines: [String] = []
    @Option(help: "The control directory's name (-o control=NAME at mount).") var control = ".faultfs"

    func run() throws {
        try reportingFailures {
            // Block mode: the rules go to the faultfs mount that serves TARGET's disk.
            let block = BlockTarget.find(mountpoint)
            let path = "\(block?.faultMount ?? mountpoint)/\(control)/control"
            if lines.isEmpty {
                // A `faultfs mount --fs` image's control file names its facts itself.
                if let block, block.stateDirectory == nil { print(block.factLines.joined(separator: "\n")) }
                print(try readFile(path), terminator: "")
                return
            }
            var lines = self.lines
            var records: [FileRuleRecord] = []
            defer {
                // Refused: no rule for the re-resolver to keep.
                if let state = block?.stateDirectory {
                    for record in records { FileRuleRecord.remove(ruleID: record.ruleID, inState: state) }
                }
            }
            if let block {
                let prepared: (lines: [String], records: [FileRuleRecord], cleared: [String?])
                do throws(BlockRuleError) {
                    prepared = try block.prepare(lines, rules: (try? readFile(path)) ?? "")
                } catch {
                    throw CLIError("refused: \(error.description)")
                }
                lines = prepared.lines
                if let state = block.stateDirectory {
                    // Records first: the control write wakes the re-resolver.
                    for id in prepared.cleared { FileRuleRecord.remove(ruleID: id, inState: state) }
                    for record in prepared.records {
                        try record.write(inState: state)
                        records.append(record)
                    }
                }
            }
            let text = lines.joined(separator: "\n") + "\n"
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw openFailed(path, errno: errno) }
            let written = text.utf8CString.withUnsafeBytes { write(fd, $0.baseAddress, $0.count - 1) }
            let failure = errno
            close(fd)
            if written < 0 {
                guard failure == EINVAL else { throw CLIError("\(path): \(Errno(failure))") }
                // The layer keeps the reason of the last refusal in the control file.
                let reason = (try? readFile(path))?.split(separator: "\n").last { $0.hasPrefix("# error: ") }
                throw CLIError("refused: " + (reason.map { String($0.dropFirst("# error: ".count)) } ?? "invalid command"))
            }
            records = []
        }
    }

    /// Says what is wrong: only a missing control file suggests that the
    /// directory is no faultfs mount.
    private func openFailed(_ path: String, errno code: Int32) -> CLIError {
        switch code {
        case EACCES, EPERM:
            var st = stat()
            let owner = stat(path, &st) == 0 ? " (uid \(st.st_uid))" : ""
            return CLIError("\(path): permission denied: only root and the user who mounted it\(owner) may write the control file")
        case ENOENT, ENOTDIR:
            return CLIError("\(path): \(Errno(code).description) (is \(mountpoint) a faultfs mount?)")
        default:
            return CLIError("\(path): \(Errno(code).description)")
        }
    }

    private func readFile(_ path: String) throws(CLIError) -> String {
        do {
            return String(decoding: try File.read(path), as: UTF8.self)
        } catch {
            throw openFailed(path, errno: error.rawValue)
        }
    }
}
