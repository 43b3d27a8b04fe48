// What the report executables share: `--name value` options and a monotonic clock.
import Dispatch

/// The value after `name` on the command line (`--runs 3`), or `defaultValue`.
public func option(_ name: String, _ defaultValue: String) -> String {
    let args = Array(CommandLine.arguments.dropFirst())
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return defaultValue
}

/// Seconds on a monotonic clock.
public func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
