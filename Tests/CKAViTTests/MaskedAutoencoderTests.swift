import CKACheckpoint
import CKAIO
import CKATensor
import CKAViT
import Foundation
import Testing
import _CKATestSupport

/// The fixture written by `notebooks-export/reference/landscape/make_mae_fixtures.py` from the official
/// facebookresearch/mae `models_mae.py` and youngwanLEE/rc-mae `models_rc.py` (+ its engine's loss lines).
struct MAEFixture {
    let student: MaskedAutoencoder
    let teacher: MaskedAutoencoder
    let images: Tensor<Float>
    let noise: Tensor<Float>
    let idsShuffle: [Int64]
    let idsRestore: [Int64]
    let mask: Tensor<Float>
    let studentPred: Tensor<Float>
    let teacherPred: Tensor<Float>
    let attributes: [String: Double]

    static func model(_ name: String) throws -> MaskedAutoencoder {
        let url = officialFixtures.appendingPathComponent("mae_loss_small.\(name).safetensors")
        let ckpt = try Checkpoint(contentsOf: url, options: Checkpoint.Options(source: .mae, heads: 4))
        return try MaskedAutoencoder(checkpoint: ckpt, decoderHeads: 4)
    }

    init() throws {
        student = try Self.model("student")
        teacher = try Self.model("teacher")
        let file = try HDF5File(path: officialFixtures.appendingPathComponent("mae_loss_small.h5").path)
        images = try file.dataset("images").readFloat()
        noise = try file.dataset("noise").readFloat()
        idsShuffle = try file.dataset("ids_shuffle").readInt64()
        idsRestore = try file.dataset("ids_restore").readInt64()
        mask = try file.dataset("mask").readFloat()
        studentPred = try file.dataset("student_pred").readFloat()
        teacherPred = try file.dataset("teacher_pred").readFloat()
        var attrs: [String: Double] = [:]
        for name in [
            "loss_raw", "loss_norm_pix", "rcmae_reconstruction", "rcmae_consistency", "rcmae_total", "gamma",
            "mask_ratio",
        ] {
            attrs[name] = try file.attribute(name)?.doubleValue
        }
        attributes = attrs
    }

    /// The official masks: argsort of the stored noise.
    func masksFromNoise() throws -> [MAEMask] {
        let b = noise.shape[0], p = noise.shape[1], ratio = attributes["mask_ratio"] ?? .nan
        return try (0..<b).map { i in try MAEMask(noise: (0..<p).map { noise[i, $0] }, ratio: ratio) }
    }

    /// Masks rebuilt from the stored 0/1 rows only.
    func masksFromRows() throws -> [MAEMask] {
        let b = mask.shape[0], p = mask.shape[1]
        return try (0..<b).map { i in try MAEMask(maskRow: (0..<p).map { mask[i, $0] }) }
    }
}

func relativeError(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }

@Suite("MAE / RC-MAE pre-training loss against the official code (small model)")
struct MaskedAutoencoderTests {
    static let tolerance = 1e-4

    @Test("Masks from the stored noise equal the official ids_shuffle, ids_restore and mask")
    func masks() throws {
        let f = try MAEFixture()
        let masks = try f.masksFromNoise()
        let p = f.noise.shape[1]
        #expect(f.student.patchCount == p && f.student.targetWidth == 192)
        #expect(f.student.decoderWidth == 32 && f.student.decoderDepth == 2 && f.student.decoderHeads == 4)
        for (i, m) in masks.enumerated() {
            #expect(m.keepCount == 4)
            #expect(m.idsShuffle == (0..<p).map { Int(f.idsShuffle[i * p + $0]) })
            #expect(m.idsRestore == (0..<p).map { Int(f.idsRestore[i * p + $0]) })
            #expect(m.mask.map(Float.init) == (0..<p).map { f.mask[i, $0] })
        }
    }

    @Test("Prediction and loss (raw and norm_pix_loss) within 1e-4 relative of models_mae.py")
    func maeLoss() throws {
        let f = try MAEFixture()
        let masks = try f.masksFromNoise()
        for normPix in [false, true] {
            let out = try f.student.forward(f.images, masks: masks, normPixLoss: normPix)
            #expect(out.prediction.shape == f.studentPred.shape)
            let predErr = relativeMaxError(out.prediction, f.studentPred)
            let ref = try #require(f.attributes[normPix ? "loss_norm_pix" : "loss_raw"])
            let lossErr = relativeError(out.loss, ref)
            #expect(out.sums.maskedPatches == 36)
            #expect(predErr <= Self.tolerance, "pred relative error \(predErr)")
            #expect(lossErr <= Self.tolerance, "loss \(out.loss) vs official \(ref)")
            print(
                "MAE small, norm_pix_loss \(normPix): pred max rel err \(String(format: "%.3g", predErr)), loss \(out.loss) vs "
                    + "\(ref) (rel \(String(format: "%.3g", lossErr)))")
        }
    }

    @Test("Masks rebuilt from stored 0/1 rows (visible order ascending) give the same prediction and loss")
    func masksFromRows() throws {
        let f = try MAEFixture()
        let fromRows = try f.masksFromRows()
        #expect(fromRows.map(\.mask) == (try f.masksFromNoise()).map(\.mask))
        let out = try f.student.forward(f.images, masks: fromRows, normPixLoss: true)
        let ref = try #require(f.attributes["loss_norm_pix"])
        #expect(relativeMaxError(out.prediction, f.studentPred) <= Self.tolerance)
        #expect(relativeError(out.loss, ref) <= Self.tolerance, "\(out.loss) vs \(ref)")
    }

    @Test("RC-MAE: reconstruction, consistency and total within 1e-4 relative of the official student/teacher")
    func rcmae() throws {
        let f = try MAEFixture()
        let masks = try f.masksFromNoise()
        let gamma = try #require(f.attributes["gamma"])
        let out = try MaskedAutoencoder.rcmaeForward(
            student: f.student, teacher: f.teacher, pixels: f.images, masks: masks,
            normPixLoss: true, gamma: gamma)
        let teacherErr = relativeMaxError(out.teacherPrediction, f.teacherPred)
        let rec = try #require(f.attributes["rcmae_reconstruction"]),
            cons = try #require(f.attributes["rcmae_consistency"])
        let total = try #require(f.attributes["rcmae_total"])
        #expect(teacherErr <= Self.tolerance)
        #expect(relativeMaxError(out.studentPrediction, f.studentPred) <= Self.tolerance)
        #expect(relativeError(out.sums.reconstruction, rec) <= Self.tolerance, "\(out.sums.reconstruction) vs \(rec)")
        #expect(relativeError(out.sums.consistency, cons) <= Self.tolerance, "\(out.sums.consistency) vs \(cons)")
        #expect(relativeError(out.loss, total) <= Self.tolerance, "\(out.loss) vs \(total)")
        print(
            "RC-MAE small: teacher pred max rel err \(String(format: "%.3g", teacherErr)); reconstruction rel "
                + "\(String(format: "%.3g", relativeError(out.sums.reconstruction, rec))), consistency rel "
                + "\(String(format: "%.3g", relativeError(out.sums.consistency, cons))), total rel "
                + "\(String(format: "%.3g", relativeError(out.loss, total)))")
        // The teacher identical to the student: no consistency term.
        let same = try MaskedAutoencoder.rcmaeForward(
            student: f.student, teacher: f.student, pixels: f.images, masks: masks,
            normPixLoss: true)
        #expect(same.sums.consistencySum == 0 && same.loss == same.sums.reconstruction)
    }

    @Test("Sums of sub-batches add up to the whole batch; repeated calls reuse buffers and agree")
    func aggregation() throws {
        let f = try MAEFixture()
        let masks = try f.masksFromNoise()
        let whole = try f.student.forward(f.images, masks: masks, normPixLoss: true)
        let again = try f.student.forward(f.images, masks: masks, normPixLoss: true)
        #expect(again.sums == whole.sums && again.prediction == whole.prediction)
        let first = try f.student.forward(f.images.rows(0..<2), masks: Array(masks[0..<2]), normPixLoss: true)
        let last = try f.student.forward(f.images.rows(2..<3), masks: [masks[2]], normPixLoss: true)
        let sum = first.sums + last.sums
        #expect(sum.maskedPatches == whole.sums.maskedPatches)
        expectClose(sum.squaredErrorSum, whole.sums.squaredErrorSum, rtol: 1e-6)
        #expect(first.prediction.shape == [2, 16, 192])
    }

    @Test("patchify puts pixel (c, gy·p + i, gx·p + j) of patch gy·g + gx at index (i·p + j)·3 + c")
    func patchifyOrder() throws {
        let f = try MAEFixture()
        let s = 32, p = 8, g = 4
        let pixels = Tensor<Float>(shape: [1, 3, s, s]) { k in Float(k) }  // value = flat index
        let out = try f.student.patchify(pixels)
        #expect(out.shape == [1, 16, 192])
        for (gy, gx, i, j, c) in [(0, 0, 0, 0, 0), (1, 2, 3, 5, 2), (3, 3, 7, 7, 1), (2, 1, 0, 6, 2)] {
            #expect(out[0, gy * g + gx, (i * p + j) * 3 + c] == Float((c * s + gy * p + i) * s + gx * p + j))
        }
    }

    @Test("MAEMask: official keep count, ties by index, seeded random masks, invalid rows are typed errors")
    func maskConstruction() throws {
        #expect(MAEMask.keepCount(patches: 196, ratio: 0.75) == 49)
        #expect(MAEMask.keepCount(patches: 16, ratio: 0.6) == 6)
        let tie = try MAEMask(noise: [0.5, 0.5, 0.1, 0.9], ratio: 0.5)
        #expect(tie.idsShuffle == [2, 0, 1, 3] && tie.idsRestore == [1, 2, 0, 3] && tie.mask == [0, 1, 0, 1])
        let a = try MAEMask.random(images: 3, patches: 196, ratio: 0.75, seed: 7)
        let b = try MAEMask.random(images: 3, patches: 196, ratio: 0.75, seed: 7)
        #expect(a == b && a[0] != a[1])
        for m in a {
            #expect(m.keepCount == 49 && m.maskedCount == 147 && Set(m.idsShuffle) == Set(0..<196))
            #expect(m.mask.reduce(0) { $0 + Int($1) } == 147)
        }
        var rng = SplitMix64(seed: 7)
        let noise0 = (0..<196).map { _ in rng.unit() }
        #expect(try MAEMask(noise: noise0, ratio: 0.75) == a[0])
        #expect(throws: MAEError.self) { try MAEMask(maskRow: [0, 1, 0.5] as [Float]) }
        #expect(throws: MAEError.self) { try MAEMask(noise: [0.1, 0.2], ratio: 1.5) }
        #expect(throws: MAEError.self) { try MAEMask(idsShuffle: [0, 0, 1], keepCount: 1) }
    }

    @Test("Typed errors: no decoder, a missing decoder tensor, wrong image shape, wrong masks")
    func errors() throws {
        let f = try MAEFixture()
        let url = officialFixtures.appendingPathComponent("mae_loss_small.student.safetensors")
        let ckpt = try Checkpoint(contentsOf: url, options: Checkpoint.Options(source: .mae, heads: 4))
        #expect(throws: MAEError.noDecoder(file: "encoder-only")) {
            try MaskedAutoencoder(
                encoder: ckpt.parameters, architecture: ckpt.architecture, decoder: [:], file: "encoder-only")
        }
        // An encoder-only checkpoint file (like mae_pretrain_vit_base.pth): the convenience init names the file.
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let encoderOnly = dir.appendingPathComponent("encoder-only.safetensors")
        try SafeTensorsWriter.write(
            try ckpt.parameterNames.compactMap { name in
                try ckpt.parameters[name].map { try SafeTensorsWriter.Entry(name: name, tensor: $0) }
            }, to: encoderOnly)
        let encoderCkpt = try Checkpoint(contentsOf: encoderOnly, options: Checkpoint.Options(source: .mae, heads: 4))
        #expect(encoderCkpt.decoder.isEmpty)
        #expect(throws: MAEError.noDecoder(file: encoderCkpt.file)) { try MaskedAutoencoder(checkpoint: encoderCkpt) }
        #expect(MAEError.noDecoder(file: encoderCkpt.file).description.contains("encoder-only"))

        var decoder: [String: Tensor<Float>] = [:]
        for (k, t) in ckpt.decoder { decoder[k] = try t.floatTensor() }
        var missing = decoder
        missing["decoder_blocks.1.mlp.fc2.bias"] = nil
        #expect(throws: ViTError.missingParameter(name: "decoder_blocks.1.mlp.fc2.bias", file: "small")) {
            try MaskedAutoencoder(
                encoder: ckpt.parameters, architecture: ckpt.architecture, decoder: missing,
                decoderHeads: 4, file: "small")
        }
        var misshaped = decoder
        misshaped["decoder_pred.weight"] = Tensor(shape: [191, 32])
        #expect(throws: ViTError.parameterShape(name: "decoder_pred.weight", expected: [192, 32], got: [191, 32])) {
            try MaskedAutoencoder(
                encoder: ckpt.parameters, architecture: ckpt.architecture, decoder: misshaped,
                decoderHeads: 4, file: "small")
        }
        #expect(throws: ViTError.self) {  // width 32 with the default 32-wide heads is fine; 3 heads do not divide it
            try MaskedAutoencoder(
                encoder: ckpt.parameters, architecture: ckpt.architecture, decoder: decoder, decoderHeads: 3)
        }
        let masks = try f.masksFromNoise()
        do {
            _ = try f.student.forward(Tensor(shape: [3, 3, 32, 48]), masks: masks, normPixLoss: false)
            Issue.record("a 32×48 image was accepted")
        } catch let error as MAEError {
            guard case let .inputShape(parameter, expected, got) = error else { Issue.record("\(error)"); return }
            #expect(parameter == "pixels" && expected == "[B ≥ 1, 3, 32, 32]" && got == [3, 3, 32, 48])
        }
        #expect(throws: MAEError.self) {
            try f.student.forward(f.images, masks: Array(masks[0..<2]), normPixLoss: false)
        }
        let other = try MAEMask(noise: (0..<16).map { Double($0) }, ratio: 0.5)
        #expect(throws: MAEError.self) {
            try f.student.forward(f.images, masks: [masks[0], masks[1], other], normPixLoss: false)
        }
        let wrongCount = try MAEMask(noise: (0..<9).map { Double($0) }, ratio: 0.75)
        #expect(throws: MAEError.self) { try f.student.predict(f.images.rows(0..<1), masks: [wrongCount]) }
    }
}
