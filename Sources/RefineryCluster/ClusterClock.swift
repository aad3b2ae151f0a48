import Foundation

/// The time the cluster core reads (seconds since 1970). Production uses the system clock;
/// tests advance a manual one, so lease logic runs without sleeps.
public protocol ClusterClock: AnyObject, Sendable {
    var now: Double { get }
}

/// The wall clock.
public final class SystemClock: ClusterClock {
    public init() {}
    public var now: Double { Date().timeIntervalSince1970 }
}

/// A clock that moves only when told to.
public final class ManualClock: ClusterClock, @unchecked Sendable {
    private let lock = NSLock()
    private var time: Double

    public init(start: Double = 1_000_000) { time = start }

    public var now: Double {
        lock.lock()
        defer { lock.unlock() }
        return time
    }

    /// Moves the clock forward by `seconds`.
    public func advance(_ seconds: Double) {
        lock.lock()
        time += seconds
        lock.unlock()
    }
}
