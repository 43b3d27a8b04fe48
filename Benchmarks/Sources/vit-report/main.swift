// vit-report: ViT-B/16 forward throughput at batch 32 — no hooks, and with the seed paper's hooks
// (norm1, attn.qkv, mlp.fc1 and block outputs of all 12 blocks) stored as per-minibatch Grams through
// the extractor — next to PyTorch/timm on the same machine, same thread count, same batch, measured in
// the same run by scripts/torch_vit_forward.py (skipped with a note when torch/timm are missing).
//
//   swift run -c release vit-report [--batch 32] [--batches 2] [--threads 1,2]
import CKAKit
import Foundation
import ReportSupport

#if DEBUG
    FileHandle.standardError.write(Data("vit-report: build with -c release\n".utf8))
    exit(1)
#endif

configureAllocatorForStreaming()
let batch = Int(option("--batch", "32"))!
let batches = Int(option("--batches", "2"))!
let threadCounts = option("--threads", "1,2").split(separator: ",").compactMap { Int($0) }

let arch = ViTArchitecture.standard(width: 768, depth: 12, heads: 12, patchSize: 16, grid: 14)
let model = try VisionTransformer.randomlyInitialized(arch, seed: 0, layerScaleInit: 1)
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vit-report-\(getpid())")
try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: dir) }
let pixelsPath = dir.appendingPathComponent("pixels.h5").path
do {
    let w = try ActivationStoreWriter(
        path: pixelsPath, ids: (0..<batch * batches).map { "x\($0)" }, metadata: StoreMetadata(model: "pixels"))
    var s: UInt64 = 1
    try w.writeDataset(
        "inputs/pixels",
        Tensor<Float>(shape: [batch * batches, 3, 224, 224]) { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int32(truncatingIfNeeded: s >> 32)) * 0x1p-31 * 2
        })
    try w.finish()
}
let pixels = try ActivationStore(path: pixelsPath).readFloatDataset("inputs/pixels", rows: 0..<batch)

let scriptDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("scripts")
func torchFigures(threads: Int) -> [String: Any]? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
        "python3", scriptDir.appendingPathComponent("torch_vit_forward.py").path, "\(threads)",
        "--batch", "\(batch)",
    ]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0, let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last else {
        return nil
    }
    return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
}

print(
    "vit-report: ViT-B/16, batch \(batch), float32, OpenBLAS \(blasCoreName); load \((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first ?? "?")"
)
for threads in threadCounts {
    setBLASThreadCount(threads)
    _ = try model.forward(pixels)  // warm-up
    var tPlain = Double.infinity
    for _ in 0..<batches { let t = now(); _ = try model.forward(pixels); tPlain = min(tPlain, now() - t) }
    var options = ExtractionOptions()
    options.layers = ["blocks.*.norm1", "blocks.*.attn.qkv", "blocks.*.mlp.fc1", "blocks.*"]
    options.store = [.grams]
    options.batchSize = batch
    options.gramBatchSize = batch
    var input = try PixelStoreInput(path: pixelsPath)
    let t0 = now()
    let summary = try ActivationExtractor.run(
        model: model, checkpoint: nil, input: &input,
        to: dir.appendingPathComponent("grams.h5").path, options: options)
    let tHooks = (now() - t0) / Double(batches)
    let ours = Double(batch) / tPlain, oursHooks = Double(batch) / tHooks
    var line =
        "  \(threads) thread(s): ours \(String(format: "%.2f", ours)) img/s, with \(summary.gramLayers) hooks → Grams \(String(format: "%.2f", oursHooks)) img/s"
    if let torch = torchFigures(threads: threads), let tp = torch["images_per_second_no_hooks"] as? Double,
        let th = torch["images_per_second_hooks"] as? Double
    {
        line +=
            "; PyTorch \(torch["torch_version"] ?? "?") \(String(format: "%.2f", tp)) / \(String(format: "%.2f", th)) img/s"
        line +=
            " → ratio \(String(format: "%.2f", ours / tp))× without hooks, \(String(format: "%.2f", oursHooks / th))× with hooks"
    } else {
        line += "; PyTorch: not available (pip install torch timm to compare)"
    }
    print(line)
}
