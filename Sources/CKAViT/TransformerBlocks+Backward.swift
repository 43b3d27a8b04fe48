import CKATensor
import Foundation

/// Gradient buffers by parameter name, in the shapes the model uses internally (e.g. `cls_token` `[D]`), zeroed at
/// creation and accumulated into by the backward passes. A class so kernels can write through stable pointers.
final class GradientBuffers {
    private(set) var tensors: [String: Tensor<Float>] = [:]

    /// Zero buffers shaped like `parameters[name]` for every name (names without a tensor are skipped).
    init(like parameters: [String: Tensor<Float>], names: some Sequence<String>) {
        add(like: parameters, names: names)
    }

    /// Adds zero buffers shaped like `parameters[name]` for every name (names without a tensor are skipped).
    func add(like parameters: [String: Tensor<Float>], names: some Sequence<String>) {
        for n in names { if let t = parameters[n] { tensors[n] = Tensor(shape: t.shape) } }
    }

    /// The buffer of `name` (which must exist) for writing.
    func pointer(_ name: String) -> UnsafeMutablePointer<Float> { tensors[name]!.mutablePointer() }

    /// Adds the buffers into `total` under the caller's shapes (`shapes[name]`, same element count); names without a
    /// shape are skipped. A name missing from `total` is inserted.
    /// - Throws: `TensorError.shapeMismatch` if `total` holds a tensor of another shape.
    func add(into total: inout [String: Tensor<Float>], shapes: [String: [Int]]) throws {
        for (name, g) in tensors {
            guard let shape = shapes[name] else { continue }
            let src = try g.reshaped(shape)
            if total[name] == nil { total[name] = src; continue }
            guard total[name]!.shape == shape else {
                throw TensorError.shapeMismatch(
                    op: "gradient accumulation of \(name)", expected: describeShape(shape),
                    got: describeShape(total[name]!.shape))
            }
            let dst = total[name]!.mutablePointer(), s = src.pointer
            for i in 0..<src.count { dst[i] += s[i] }
        }
    }
}

/// Adds `gradients` into `total` tensor by tensor (a name missing from `total` is inserted), for summing the
/// per-batch gradients of loss sums.
/// - Throws: `TensorError.shapeMismatch` if a tensor of the same name has another shape.
public func accumulateGradients(_ gradients: [String: Tensor<Float>], into total: inout [String: Tensor<Float>]) throws
{
    for (name, g) in gradients {
        if total[name] == nil { total[name] = g; continue }
        guard total[name]!.shape == g.shape else {
            throw TensorError.shapeMismatch(
                op: "gradient accumulation of \(name)", expected: describeShape(g.shape),
                got: describeShape(total[name]!.shape))
        }
        let dst = total[name]!.mutablePointer(), s = g.pointer
        for i in 0..<g.count { dst[i] += s[i] }
    }
}

extension TransformerBlocks {
    /// The activations of one recorded run that `backward` needs, per block: the block input, the fused qkv, the
    /// attention output before `proj`, the residual stream after attention, the fc1 pre-activation, and with
    /// LayerScale the two branch outputs before their γ. Attention probabilities and LayerNorm outputs are
    /// recomputed in `backward` instead of stored (~10 rows of width D per token and block are kept).
    struct Tape {
        var input: [Tensor<Float>] = [], qkv: [Tensor<Float>] = [], attn: [Tensor<Float>] = []
        var mid: [Tensor<Float>] = [], fc1: [Tensor<Float>] = []
        var branch1: [Tensor<Float>] = [], branch2: [Tensor<Float>] = []
    }

    /// The forward pass of `run` (no hooks) on `w.x`, in place, recording what `backward` needs into a new tape.
    func record(_ w: inout Workspace) throws -> Tape {
        guard activation == .gelu else {
            throw ViTError.unsupported(
                "gradients are implemented for exact-GELU blocks; these use \(activation) (CLIP / SigLIP)")
        }
        let b = w.images, t = w.tokens, d = width, rows = b * t, hid = hiddenWidth, workers = blasThreadCount
        var tape = Tape()
        func copy(_ src: Tensor<Float>) -> Tensor<Float> {
            var c = Tensor<Float>(shape: src.shape)
            c.mutablePointer().update(from: src.pointer, count: src.count)
            return c
        }
        for blk in 0..<depth {
            let n = "\(prefix).\(blk)"
            tape.input.append(copy(w.x))
            NeuralKernels.layerNorm(
                w.x.pointer, w.h.mutablePointer(), rows: rows, width: d, weight: p[n + ".norm1.weight"]!.pointer,
                bias: p[n + ".norm1.bias"]!.pointer, epsilon: epsilon, workers: workers)
            var qkv = Tensor<Float>(shape: [rows, 3 * d]), attn = Tensor<Float>(shape: [rows, d])
            try linear(w.h.pointer, rows: rows, n + ".attn.qkv", into: qkv.mutablePointer())
            try attention(
                qkv.pointer, into: attn.mutablePointer(), images: b, tokens: t, scores: w.scores.mutablePointer())
            try linear(attn.pointer, rows: rows, n + ".attn.proj", into: w.proj.mutablePointer())
            tape.qkv.append(qkv); tape.attn.append(attn)
            if layerScale {
                tape.branch1.append(copy(w.proj))
                NeuralKernels.scaleColumns(
                    w.proj.mutablePointer(), rows: rows, width: d, scale: p[n + ".ls1.gamma"]!.pointer,
                    workers: workers)
            }
            NeuralKernels.addScaled(
                w.proj.pointer, into: w.x.mutablePointer(), rows: rows, width: d, scale: nil, workers: workers)
            tape.mid.append(copy(w.x))

            NeuralKernels.layerNorm(
                w.x.pointer, w.h.mutablePointer(), rows: rows, width: d, weight: p[n + ".norm2.weight"]!.pointer,
                bias: p[n + ".norm2.bias"]!.pointer, epsilon: epsilon, workers: workers)
            var pre = Tensor<Float>(shape: [rows, hid])
            try linear(w.h.pointer, rows: rows, n + ".mlp.fc1", into: pre.mutablePointer())
            NeuralKernels.gelu(pre.pointer, into: w.fc1.mutablePointer(), count: rows * hid, workers: workers)
            tape.fc1.append(pre)
            try linear(w.fc1.pointer, rows: rows, n + ".mlp.fc2", into: w.proj.mutablePointer())
            if layerScale {
                tape.branch2.append(copy(w.proj))
                NeuralKernels.scaleColumns(
                    w.proj.mutablePointer(), rows: rows, width: d, scale: p[n + ".ls2.gamma"]!.pointer,
                    workers: workers)
            }
            NeuralKernels.addScaled(
                w.proj.pointer, into: w.x.mutablePointer(), rows: rows, width: d, scale: nil, workers: workers)
        }
        return tape
    }

    /// Reverse pass through the stack recorded in `tape` (`images` sequences of `tokens` tokens).
    ///
    /// - Parameters:
    ///   - dx: on entry ∂L/∂(output of the last block) `[images·tokens, width]`; on return ∂L/∂(input of block 0).
    ///   - outputGradients: extra ∂L/∂(output of block i) added before block i is reversed (losses that read
    ///     intermediate blocks, e.g. DINO's linear head over the last n blocks).
    ///   - g: parameter gradients (`prefix.i.*`), accumulated.
    func backward(
        _ tape: Tape, images b: Int, tokens t: Int, gradient dx: UnsafeMutablePointer<Float>,
        outputGradients: [Int: Tensor<Float>] = [:], into g: GradientBuffers
    ) throws {
        let d = width, rows = b * t, hid = hiddenWidth, dh = d / heads, workers = blasThreadCount
        let scale = Float(1 / Double(dh).squareRoot())
        var h = Tensor<Float>(shape: [rows, d]), dhid = Tensor<Float>(shape: [rows, d]),
            branch = Tensor<Float>(shape: [rows, d])
        var dattn = Tensor<Float>(shape: [rows, d]), dqkv = Tensor<Float>(shape: [rows, 3 * d])
        var act = Tensor<Float>(shape: [rows, hid]), dact = Tensor<Float>(shape: [rows, hid])
        var s = Tensor<Float>(shape: [2 * t, t])
        let hp = h.mutablePointer(), dhp = dhid.mutablePointer(), brp = branch.mutablePointer()
        let dap = dattn.mutablePointer(), dqp = dqkv.mutablePointer(), actp = act.mutablePointer(),
            dactp = dact.mutablePointer()
        let sp = s.mutablePointer()  // scores and their gradient, one t × t each (single-threaded case)
        func W(_ name: String) -> MatrixRef<Float> { p[name]!.matrixRef }
        func M(_ ptr: UnsafeMutablePointer<Float>, _ r: Int, _ c: Int) -> MutableMatrixRef<Float> {
            MutableMatrixRef(ptr, rows: r, cols: c)
        }
        func R(_ ptr: UnsafePointer<Float>, _ r: Int, _ c: Int) -> MatrixRef<Float> { MatrixRef(ptr, rows: r, cols: c) }
        /// ∂L/∂(branch before γ) and the γ gradient, or dx itself without LayerScale.
        func branchGradient(_ saved: [Tensor<Float>], _ blk: Int, _ gamma: String) -> UnsafePointer<Float> {
            guard layerScale else { return UnsafePointer(dx) }
            NeuralKernels.addColumnDots(dx, saved[blk].pointer, rows: rows, width: d, into: g.pointer(gamma))
            let gm = p[gamma]!.pointer
            for r in 0..<rows { let o = brp + r * d, i = dx + r * d; for j in 0..<d { o[j] = i[j] * gm[j] } }
            return UnsafePointer(brp)
        }

        for blk in (0..<depth).reversed() {
            let n = "\(prefix).\(blk)"
            if let extra = outputGradients[blk] {
                NeuralKernels.addScaled(extra.pointer, into: dx, rows: rows, width: d, scale: nil, workers: workers)
            }
            // MLP branch: out = mid + γ₂·fc2(GELU(fc1(norm2(mid)))).
            let db2 = branchGradient(tape.branch2, blk, n + ".ls2.gamma")
            let pre = tape.fc1[blk].pointer
            NeuralKernels.gelu(pre, into: actp, count: rows * hid, workers: workers)
            try gemm(
                R(db2, rows, d), transposeA: true, R(actp, rows, hid), beta: 1,
                into: M(g.pointer(n + ".mlp.fc2.weight"), d, hid))
            NeuralKernels.addColumnSums(db2, rows: rows, width: d, into: g.pointer(n + ".mlp.fc2.bias"))
            try gemm(R(db2, rows, d), W(n + ".mlp.fc2.weight"), into: M(dactp, rows, hid))
            NeuralKernels.geluBackward(pre, gradient: dactp, count: rows * hid, workers: workers)
            let mid = tape.mid[blk].pointer
            NeuralKernels.layerNorm(
                mid, hp, rows: rows, width: d, weight: p[n + ".norm2.weight"]!.pointer,
                bias: p[n + ".norm2.bias"]!.pointer, epsilon: epsilon, workers: workers)
            try gemm(
                R(dactp, rows, hid), transposeA: true, R(hp, rows, d), beta: 1,
                into: M(g.pointer(n + ".mlp.fc1.weight"), hid, d))
            NeuralKernels.addColumnSums(dactp, rows: rows, width: hid, into: g.pointer(n + ".mlp.fc1.bias"))
            try gemm(R(dactp, rows, hid), W(n + ".mlp.fc1.weight"), into: M(dhp, rows, d))
            NeuralKernels.layerNormBackward(
                input: mid, outputGradient: dhp, rows: rows, width: d, weight: p[n + ".norm2.weight"]!.pointer,
                epsilon: epsilon, inputGradient: dx, accumulate: true,
                weightGradient: g.pointer(n + ".norm2.weight"), biasGradient: g.pointer(n + ".norm2.bias"))

            // Attention branch: mid = x + γ₁·proj(attn(norm1(x))).
            let db1 = branchGradient(tape.branch1, blk, n + ".ls1.gamma")
            let attn = tape.attn[blk].pointer
            try gemm(
                R(db1, rows, d), transposeA: true, R(attn, rows, d), beta: 1,
                into: M(g.pointer(n + ".attn.proj.weight"), d, d))
            NeuralKernels.addColumnSums(db1, rows: rows, width: d, into: g.pointer(n + ".attn.proj.bias"))
            try gemm(R(db1, rows, d), W(n + ".attn.proj.weight"), into: M(dap, rows, d))
            // Per (image, head): S recomputed; dV = Sᵀ·dO, dS = dO·Vᵀ, dZ = softmax'(dS), dQ = s·dZ·K, dK = s·dZᵀ·Q.
            let q = tape.qkv[blk].pointer
            try forEachHead(images: b, scratchCount: 2 * t * t, scratch: sp) { i, hd, scratch in
                let sp = scratch, dsp = scratch + t * t
                let base = q + i * t * 3 * d + hd * dh, dbase = dqp + i * t * 3 * d + hd * dh
                let dO = MatrixRef(UnsafePointer(dap + i * t * d + hd * dh), rows: t, cols: dh, leadingDimension: d)
                let Q = MatrixRef(base, rows: t, cols: dh, leadingDimension: 3 * d)
                let K = MatrixRef(base + d, rows: t, cols: dh, leadingDimension: 3 * d)
                let V = MatrixRef(base + 2 * d, rows: t, cols: dh, leadingDimension: 3 * d)
                try gemm(Q, K, transposeB: true, alpha: scale, into: M(sp, t, t))
                NeuralKernels.softmaxRows(sp, rows: t, width: t)
                try gemm(
                    R(sp, t, t), transposeA: true, dO,
                    into: MutableMatrixRef(dbase + 2 * d, rows: t, cols: dh, leadingDimension: 3 * d))
                try gemm(dO, V, transposeB: true, into: M(dsp, t, t))
                NeuralKernels.softmaxBackwardRows(sp, gradient: dsp, rows: t, width: t)
                try gemm(
                    R(dsp, t, t), K, alpha: scale,
                    into: MutableMatrixRef(dbase, rows: t, cols: dh, leadingDimension: 3 * d))
                try gemm(
                    R(dsp, t, t), transposeA: true, Q, alpha: scale,
                    into: MutableMatrixRef(dbase + d, rows: t, cols: dh, leadingDimension: 3 * d))
            }
            let x = tape.input[blk].pointer
            NeuralKernels.layerNorm(
                x, hp, rows: rows, width: d, weight: p[n + ".norm1.weight"]!.pointer,
                bias: p[n + ".norm1.bias"]!.pointer, epsilon: epsilon, workers: workers)
            try gemm(
                R(dqp, rows, 3 * d), transposeA: true, R(hp, rows, d), beta: 1,
                into: M(g.pointer(n + ".attn.qkv.weight"), 3 * d, d))
            NeuralKernels.addColumnSums(dqp, rows: rows, width: 3 * d, into: g.pointer(n + ".attn.qkv.bias"))
            try gemm(R(dqp, rows, 3 * d), W(n + ".attn.qkv.weight"), into: M(dhp, rows, d))
            NeuralKernels.layerNormBackward(
                input: x, outputGradient: dhp, rows: rows, width: d, weight: p[n + ".norm1.weight"]!.pointer,
                epsilon: epsilon, inputGradient: dx, accumulate: true,
                weightGradient: g.pointer(n + ".norm1.weight"), biasGradient: g.pointer(n + ".norm1.bias"))
        }
    }

    /// Every parameter name of the stack (`prefix.i.*`), LayerScale γ included when present.
    var parameterNames: [String] {
        var out: [String] = []
        for i in 0..<depth {
            let b = "\(prefix).\(i)."
            out += [
                "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
            ].map { b + $0 }
            if layerScale { out += [b + "ls1.gamma", b + "ls2.gamma"] }
        }
        return out
    }
}
