// `faultfs monitor`, `faultfs run`, `faultfs report`, `faultfs demo` (and the
// hidden `faultfs demo-writer`): argument parsing only; the work is in the
// Monitor module.
import ArgumentParser
import FaultRules
import Glibc
import Monitor
import MonitorCore
import System

/// "100ms", "1s" → ns, for --interval and --duration (the control language's grammar).
private func duration(_ text: String, _ option: String) throws -> Int64 {
    guard let ns = parseDuration(text).map(Int64.init), ns > 0 else {
        throw ValidationError("\(option) \(text): expected a duration such as 100ms, 1s, 2.5s")
    }
    return ns
}

private func printOut(_ s: String) {
    var t = s
    if !t.hasSuffix("\n") { t += "\n" }
    t.withUTF8 { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
}

struct MonitorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monitor",
        abstract: "Record what the kernel's memory and writeback machinery do on a mount, until Ctrl-C.",
        discussion: """
            Writes samples.jsonl, samples.csv, events.jsonl, report.html and summary.txt
            into --out. Uses tracefs (mounted if needed) for the error trail.
            """)

    @Argument(help: "The (faultfs) mount point to watch.")
    var mountpoint: String

    @Option(help: ArgumentHelp("Run folder.", valueName: "DIR"))
    var out: String = "faultfs-monitor"

    @Option(help: ArgumentHelp("Sampling interval.", valueName: "DURATION"))
    var interval: String = "100ms"

    @Option(help: ArgumentHelp("Stop after this long instead of waiting for Ctrl-C.", valueName: "DURATION"))
    var duration: String?

    @Flag(help: "No live status line.")
    var quiet = false

    func run() throws {
        let i = try Monitor_duration(interval, "--interval")
        let d = try duration.map { try Monitor_duration($0, "--duration") }
        try reportingFailures {
            do {
                let r = try StandaloneMonitor.run(mountPoint: mountpoint, outDir: out, intervalNs: i, durationNs: d, live: !quiet, settings: BuildInfo.settings)
                printOut(r.summary + "report: " + r.report)
            } catch { throw CLIError("\(error)") }
        }
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Mount faultfs, run a command under a fault plan while monitoring, unmount, write the report.",
        discussion: """
            Each --fault LINE (a control-file line) is applied at the trigger that follows it:
            --at T (after the command starts), --after-bytes N (once the command has written
            N bytes), --when REGEX (when it prints a matching line). Without a trigger: at once.
            A plan file has one step a line: "at 2s: LINE", "after-bytes 64M: LINE",
            "when /REGEX/: LINE", or just "LINE".
            Example: faultfs run --fault 'fail writeback ENOSPC' --at 2s --out runs/2 -- ./bench --dir /srv/db
            The command sees the mounted directory as $FAULTFS_DIR. Its stdout and stderr are
            copied to ours and saved as workload.out and workload.err in the run folder.
            Exits with its status.
            """)

    @Option(help: ArgumentHelp("Mount over this directory (default: a fresh temporary one).", valueName: "DIR"))
    var dir: String?

    @Option(help: ArgumentHelp("Run folder.", valueName: "DIR"))
    var out: String = "faultfs-run"

    @Option(help: ArgumentHelp("Sampling interval.", valueName: "DURATION"))
    var interval: String = "100ms"

    @Option(help: ArgumentHelp("A control line to apply (repeatable).", valueName: "LINE"))
    var fault: [String] = []

    @Option(help: ArgumentHelp("When to apply the preceding --fault (after the command starts).", valueName: "TIME"))
    var at: [String] = []

    @Option(name: .customLong("after-bytes"), help: ArgumentHelp("Apply the preceding --fault once the command wrote N bytes.", valueName: "N"))
    var afterBytes: [String] = []

    @Option(help: ArgumentHelp("Apply the preceding --fault when the command prints a line matching REGEX.", valueName: "REGEX"))
    var when: [String] = []

    @Option(help: ArgumentHelp("Read plan steps from FILE (after those given with --fault).", valueName: "FILE"))
    var plan: String?

    @Option(name: .customLong("memory-limit"), help: ArgumentHelp("Run the command in a memory cgroup of this size (the daemon stays outside).", valueName: "SIZE"))
    var memoryLimit: String?

    @Option(name: .customShort("o"), help: ArgumentHelp("Extra mount options.", valueName: "OPTS"))
    var mountOptions: [String] = []

    @Option(name: .customLong("bdi-max-ratio"), help: ArgumentHelp("Set the mount's bdi max_ratio (percent of the dirty limit; FUSE's default is 1) for the run.", valueName: "N"))
    var bdiMaxRatio: String?

    @Option(name: .customLong("bdi-max-bytes"), help: ArgumentHelp("Set the mount's bdi max_bytes (the same limit in bytes) for the run.", valueName: "SIZE"))
    var bdiMaxBytes: String?

    @Option(name: .customLong("bdi-strict-limit"), help: ArgumentHelp("Turn the mount's bdi strict_limit on or off (FUSE's default: on) for the run.", valueName: "on|off"))
    var bdiStrictLimit: String?

    @Flag(help: "No live status line.")
    var quiet = false

    @Flag(name: .customLong("no-trace"), help: "Do not use tracefs.")
    var noTrace = false

    @Option(help: ArgumentHelp("Block mode: run on this file system (ext4, xfs, btrfs) whose disk faultfs serves; --fault lines are disk rules (sectors=, region=, file=); -o holds its mount options.", valueName: "FS"))
    var fs: String?

    @Option(help: ArgumentHelp("Block mode: the image's size (default 1G).", valueName: "SIZE"))
    var size: String?

    @Argument(parsing: .postTerminator, help: "The command to run.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty { throw ValidationError("no command given: faultfs run [OPTIONS] -- COMMAND [ARGS...]") }
    }

    func run() throws {
        var o = RunOptions(outDir: out, command: command)
        o.settings = BuildInfo.settings
        o.dir = dir
        o.intervalNs = try Monitor_duration(interval, "--interval")
        o.live = !quiet
        o.trace = !noTrace
        o.mountOptions = mountOptions
        if let fs { o.block = BlockRunOptions(fileSystem: fs, size: size) } else if size != nil {
            throw ValidationError("--size needs --fs")
        }
        do {
            // The order of --fault and its triggers matters, so read them from the raw arguments.
            let raw = Array(CommandLine.arguments.dropFirst())
            o.plan = try Plan.fromArguments(raw, valued: ["--dir", "--out", "--interval", "--plan", "--memory-limit", "-o", "--fs", "--size",
                                                     "--bdi-max-ratio", "--bdi-max-bytes", "--bdi-strict-limit"],
                                          blockMode: fs != nil)
            if let plan {
                guard let text = File.readText(plan) else { throw ValidationError("--plan \(plan): cannot read it") }
                o.plan += try Plan.parse(text, blockMode: fs != nil)
            }
        } catch let e as PlanError { throw ValidationError(e.description) }
        if let m = memoryLimit {
            guard let b = parseSize(m), b > 0 else { throw ValidationError("--memory-limit \(m): expected a size such as 256M") }
            o.memoryLimit = b
        }
        o.bdiLimits = try bdiLimits()
        var status: Int32 = 1
        try reportingFailures {
            do {
                let r = try Runner.run(o)
                printOut(r.summary + "report: " + r.reportPath)
                status = r.exitCode
                // The workload's status, unless it succeeded but the plan did
                // not run as written (a refused step, a trigger that never came).
                if status == 0 && !r.planProblems.isEmpty {
                    printError("faultfs run: the plan did not run as written:\n  " + r.planProblems.joined(separator: "\n  "))
                    status = 1
                }
            } catch { throw CLIError("\(error)") }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

extension RunCommand {
    /// --bdi-max-ratio, --bdi-max-bytes, --bdi-strict-limit; nil when none is given.
    func bdiLimits() throws -> BdiLimits? {
        var l = BdiLimits()
        if let r = bdiMaxRatio {
            guard let v = Int64(r), (0...100).contains(v) else { throw ValidationError("--bdi-max-ratio \(r): expected a percentage, 0 to 100") }
            l.maxRatio = v
        }
        if let b = bdiMaxBytes {
            guard let v = parseSize(b) else { throw ValidationError("--bdi-max-bytes \(b): expected a size such as 512M") }
            l.maxBytes = v
        }
        if let s = bdiStrictLimit {
            guard let v = BdiLimits.parseSwitch(s) else { throw ValidationError("--bdi-strict-limit \(s): expected on or off") }
            l.strictLimit = v
        }
        if l.isEmpty { return nil }
        if fs != nil { throw ValidationError("--bdi-* options need a FUSE mount: with --fs the bdi is the loop device's, which outlives the run") }
        return l
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "(Re)build report.html and summary.txt from a run folder.")

    @Argument(help: "The run folder.")
    var runDir: String

    func run() throws {
        try reportingFailures {
            do {
                let summary = try ReportWriter.write(runDir: runDir)
                printOut(summary + "report: " + runDir + "/report.html")
            } catch { throw CLIError("\(error)") }
        }
    }
}

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show a failed writeback, fsync reporting it once, lost data, a stall, and a stall with the bdi limit lifted in a small memory cgroup: with a built-in writer and plan.",
        discussion: "Plan:\n" + Demo.planText)

    @Option(help: ArgumentHelp("Run folder (default: faultfs-demo-<time> in the current directory).", valueName: "DIR"))
    var out: String?

    @Option(help: ArgumentHelp("Sampling interval.", valueName: "DURATION"))
    var interval: String = "100ms"

    func run() throws {
        let i = try Monitor_duration(interval, "--interval")
        let dir = out ?? "faultfs-demo-\(time(nil))"
        try reportingFailures {
            do {
                let r = try Demo.run(outDir: dir, intervalNs: i, settings: BuildInfo.settings)
                printOut("\n" + r.checks.joined(separator: "\n") + "\n\n" + r.summary + "report: " + r.reportPath)
            } catch { throw CLIError("\(error)") }
        }
    }
}

/// The demo's writer, started by `faultfs demo` inside the mount.
struct DemoWriterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-writer", shouldDisplay: false)

    @Argument(help: "Directory (default: $FAULTFS_DIR).")
    var dir: String?

    func run() throws {
        guard let d = dir ?? getenv("FAULTFS_DIR").map({ String(cString: $0) }) else {
            throw ValidationError("no directory: give one or set FAULTFS_DIR")
        }
        let rc = DemoWriter.run(dir: d)
        if rc != 0 { throw ExitCode(rc) }
    }
}

// The option helpers keep their own name so they never clash with the
// properties called `duration`.
private func Monitor_duration(_ text: String, _ option: String) throws -> Int64 { try duration(text, option) }
