import Glibc

/// Runs `body` on a new detached thread (Foundation's Thread would pull in
/// Foundation for one call). If no thread can be made, runs it here.
public func startThread(_ body: @escaping @Sendable () -> Void) {
    final class Body { let run: @Sendable () -> Void; init(_ run: @escaping @Sendable () -> Void) { self.run = run } }
    let context = ObjectAddress.retain(Body(body))
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { context in
        ObjectAddress.take(context!, as: Body.self).run()
        return nil
    }, context)
    if rc == 0 { pthread_detach(thread) } else { ObjectAddress.take(context, as: Body.self).run() }
}

/// Names the calling thread (its comm, as ps and traces show it; 15 bytes at most).
public func setThreadName(_ name: String) {
    _ = csys_set_thread_name(name)
}
