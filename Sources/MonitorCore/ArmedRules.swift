import FaultRules

// What was armed during a run, and when: replays the plan lines the runner
// wrote to the control file, the way the fault layer applies them (a write
// is applied whole or not at all; a rule without `id=` is named r1, r2, ...
// in order, never reusing a name; `clear` removes rules, `release` removes
// stall rules; `capacity` stays until `capacity off`). Pure.

public struct ArmedRule: Sendable, Equatable {
    /// The rule's id ("r1"), or "capacity" for the free-space limit.
    public var id: String
    /// The canonical control text, without the id.
    public var text: String
    /// nil: armed before recording started (seen in the control file).
    public var armedNs: Int64?
    /// nil: still armed at the end of the run.
    public var endedNs: Int64?
    /// The plan line that ended it ("clear", "release r2", "capacity off").
    public var endedBy: String?
    /// How many times it acted (injection events with its id).
    public var fired: Int
}

public enum ArmedRules {
    /// - Parameters:
    ///   - controls: the plan as applied; refused lines (result other than
    ///     "ok") changed nothing and are skipped.
    ///   - initial: rules armed before the start, as (id, text).
    ///   - injections: to count how often each rule fired.
    public static func timeline(controls: [ControlStep], initial: [Setting] = [],
                                injections: [InjectionEvent] = []) -> [ArmedRule] {
        var out = initial.map { ArmedRule(id: $0.key, text: $0.value, armedNs: nil, endedNs: nil, endedBy: nil, fired: 0) }
        var active = Array(out.indices)
        var capacity: Int?
        var nextAutoID = 1
        func end(_ i: Int, _ t: Int64, _ by: String) {
            out[i].endedNs = t
            out[i].endedBy = by
            active.removeAll { $0 == i }
        }
        for step in controls.sorted(by: { $0.timeNs < $1.timeNs }) where step.result == "ok" {
            guard case .success(let commands) = parseControl(step.line) else { continue }
            let by = step.line.trimmingSpaces()
            for command in commands {
                switch command {
                case .add(var rule):
                    var id = rule.id ?? ""
                    if rule.id == nil {
                        repeat { id = "r\(nextAutoID)"; nextAutoID += 1 } while active.contains { out[$0].id == id }
                    }
                    rule.id = nil
                    out.append(ArmedRule(id: id, text: rule.description, armedNs: step.timeNs, endedNs: nil, endedBy: nil, fired: 0))
                    active.append(out.count - 1)
                case .clear(let id):
                    for i in active where id == nil || out[i].id == id { if out[i].id != "capacity" { end(i, step.timeNs, by) } }
                case .release(let id):
                    for i in active where (id == nil || out[i].id == id) && out[i].text.hasPrefix("stall ") { end(i, step.timeNs, by) }
                case .capacity(let bytes):
                    if let c = capacity { end(c, step.timeNs, by); capacity = nil }
                    if bytes != nil {
                        out.append(ArmedRule(id: "capacity", text: by, armedNs: step.timeNs,
                                             endedNs: nil, endedBy: nil, fired: 0))
                        capacity = out.count - 1
                        active.append(out.count - 1)
                    }
                case .resetCounters, .crash:
                    break
                }
            }
        }
        // Count each rule's injections: from its arming to the next arming of
        // the same id (an explicit id may be used again after a clear). Not
        // up to its end: the clear is timed before it takes effect.
        for i in out.indices {
            let next = out[(i + 1)...].first { $0.id == out[i].id }?.armedNs
            out[i].fired = injections.filter { e in
                e.ruleID == out[i].id && e.action != .release && e.action != .capacity && e.action != .crash && e.action != .crashsimStopped
                    && (out[i].armedNs.map { e.timeNs >= $0 } ?? true) && (next.map { e.timeNs < $0 } ?? true)
            }.count
        }
        return out
    }

    /// The rules listed by reading MNT/.faultfs/control, as (id, text)
    /// settings for `timeline(initial:)`. Comment and warning lines, and
    /// anything that does not parse, are skipped.
    public static func listed(inControlFile text: String) -> [Setting] {
        var out: [Setting] = []
        for line in text.split(separator: "\n") {
            guard case .success(let commands) = parseControl(String(line)) else { continue }
            for case .add(var rule) in commands {
                guard let id = rule.id else { continue }
                rule.id = nil
                out.append(Setting(id, rule.description))
            }
        }
        return out
    }
}
