// The kernel's per-device knobs in sysfs, found by device number: a block
// device's queue and a backing device info (bdi), which a FUSE mount has too.
import Glibc

public enum DeviceKnobs {
    /// "MAJOR:MINOR" of a device number, as sysfs names devices.
    public static func name(of device: dev_t) -> String {
        let d = UInt64(device)
        return "\((d >> 8) & 0xfff | (d >> 32) & ~0xfff):\((d & 0xff) | ((d >> 12) & 0xffff_ff00))"
    }

    /// read_ahead_kb of the block device that holds `device` (a partition
    /// answers with its disk's queue); nil where there is none (tmpfs, the
    /// anonymous devices of btrfs, overlayfs, FUSE...).
    public static func blockReadaheadKiB(of device: dev_t) -> Int? {
        let base = "/sys/dev/block/\(name(of: device))"
        for path in [base + "/queue/read_ahead_kb", base + "/../queue/read_ahead_kb"] {
            if let kib = File.readText(path).flatMap({ Int($0.trimmingBlanks) }) { return kib }
        }
        return nil
    }

    /// read_ahead_kb of the bdi "MAJOR:MINOR" (a FUSE mount's: its st_dev).
    public static func bdiReadaheadKiB(_ bdi: String) -> Int? {
        File.readText("/sys/class/bdi/\(bdi)/read_ahead_kb").flatMap { Int($0.trimmingBlanks) }
    }

    public static func setBdiReadahead(_ bdi: String, kib: Int) throws(Errno) {
        try File.write("/sys/class/bdi/\(bdi)/read_ahead_kb", String(kib))
    }
}
