// libFuzzer harness: CheckpointFuzzing.safetensors over arbitrary bytes (built by run_fuzzers.sh).
import CKACheckpoint

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    CheckpointFuzzing.safetensors(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
