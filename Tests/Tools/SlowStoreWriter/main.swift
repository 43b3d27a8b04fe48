// Test aid (not part of the toolkit): writes a synthetic activation store slowly, so a test can kill it
// mid-way and check that no file appears under the final name.
//
//     slow-store-writer OUT [ROWS] [DELAY_MS]
import CKAIO
import CKATensor
import Foundation

let args = CommandLine.arguments
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("usage: slow-store-writer OUT [ROWS] [DELAY_MS]\n".utf8))
    exit(2)
}
let rows = args.count > 2 ? Int(args[2]) ?? 64 : 64
let delayMs = args.count > 3 ? Int(args[3]) ?? 50 : 50
do {
    let w = try ActivationStoreWriter(
        path: args[1], ids: (0..<rows).map { "x\($0)" }, metadata: StoreMetadata(model: "test"))
    try w.addLayer("blocks.0", kind: .block, block: 0, featureShape: [16])
    for i in 0..<rows {
        try w.append(Tensor<Float>(shape: [1, 16]) { Float($0 + i) }, to: "blocks.0")
        usleep(UInt32(delayMs * 1000))
    }
    try w.finish()
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
