import CKACheckpoint
import CKAIO
import CKALandscape
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

@Suite("Paths between checkpoints")
struct PathTests {
    let scratch: ScratchDirectory
    var dir: URL { scratch.url }
    init() throws { scratch = try ScratchDirectory() }

    /// `Fixtures/path_small.h5` (make_hessian_fixtures.py): a backbone A without head, its fine-tuned B with a
    /// head, and the float64 PyTorch cross-entropy along θ(t) with the head held at B's value.
    @Test("θ(t) = (1 − t)·θ_A + t·θ_B: the losses equal a float64 PyTorch evaluation; one-sided tensors are held")
    func pathAgainstTorch() throws {
        let f = try HDF5File(
            path: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Fixtures/path_small.h5").path)
        func write(_ group: String) throws -> Checkpoint {
            let url = dir.appendingPathComponent("\(group).safetensors")
            try SafeTensorsWriter.write(
                try f.children(of: group).map {
                    try SafeTensorsWriter.Entry(name: $0, tensor: f.dataset("\(group)/\($0)").readFloat())
                }, to: url)
            return try Checkpoint(contentsOf: url, options: .init(heads: 2))
        }
        let a = try write("a"), b = try write("b")
        let labels = try f.dataset("labels").readInt64().map { Int($0) }
        let examples = LandscapeExamples(
            batches: [LandscapeBatch(pixels: try f.dataset("pixels").readFloat(), labels: labels)],
            ids: (0..<labels.count).map { "img\($0)" })
        var o = LandscapeRun.Options(
            objective: LandscapeObjectiveOptions(loss: .ce, checkpoint: b.file),
            out: dir.appendingPathComponent("p.h5").path)
        o.grid = "-0.25:1.25:7"
        o.quiet = true
        var printed = ""
        try LandscapeRun(options: o, checkpoint: b, teacher: nil, examples: examples, path: (a, b)).run(output: {
            printed = $0
        })
        let s = try LandscapeSurface(contentsOf: o.out)
        #expect(s.dimensions == 1 && s.attributes["axis"] == .string("t"))
        #expect(s.x == (try f.dataset("t").readDouble().scalars))
        let reference = try f.dataset("loss").readDouble().scalars
        for (got, want) in zip(s.loss, reference) { expectClose(got, want, rtol: 1e-5) }
        #expect(s.attributes["held"] == .strings(["head.weight", "head.bias"]))
        #expect(s.attributes["only_in_to"] == .strings(["head.bias", "head.weight"]))
        #expect(s.attributes["only_in_from"]?.normalized == HDF5AttributeValue.strings(["none"]).normalized)
        #expect(printed.contains("7 points on the path") && printed.contains("loss at t = 1"))
    }
}
