// Keeps a `fuse:fuse_request_send` event only when its request fails: the
// kernel cannot filter sends on the reply to come, and a writer's own
// writeback (or every write(2) without the writeback cache) sends one per
// request, thousands a second. A send is held until the `fuse_request_end`
// with an error and the same request id arrives (that event is filtered on
// `error != 0` in the kernel), then passed on just before it. Sends whose
// request succeeded are forgotten, two generations of `capacity` at most.
public struct RequestSendFilter: Sendable {
    struct Key: Hashable { var connection: UInt32; var req: UInt64 }
    private var current: [Key: TraceEvent] = [:]
    private var previous: [Key: TraceEvent] = [:]
    public let capacity: Int

    public init(capacity: Int = 65536) { self.capacity = capacity }

    /// The events to record, in their order, with held sends let through
    /// before their failing end.
    public mutating func pass(_ events: [TraceEvent]) -> [TraceEvent] {
        var out: [TraceEvent] = []
        out.reserveCapacity(events.count)
        for e in events {
            switch e.payload {
            case .fuseRequestSend(let s):
                if current.count >= capacity { previous = current; current = [:] }
                current[Key(connection: s.connection, req: s.req)] = e
            case .fuseRequestEnd(let r):
                let k = Key(connection: r.connection, req: r.req)
                if r.error != 0, let send = current.removeValue(forKey: k) ?? previous.removeValue(forKey: k) { out.append(send) }
                out.append(e)
            default:
                out.append(e)
            }
        }
        return out
    }
}
