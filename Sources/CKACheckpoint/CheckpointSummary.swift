import CKATensor
import Foundation

extension Checkpoint {
    /// A human-readable report for `cka checkpoint FILE`: source, architecture, tensor count/bytes, the mapped
    /// names (with their original keys), head and decoder, ignored, unexpected and missing keys, extras.
    public func summaryText(listParameters: Bool = true) -> String {
        var lines: [String] = []
        let a = architecture
        lines.append("file:         \(file)")
        lines.append("format:       \(format.rawValue)")
        lines.append(
            "source:       \(source.rawValue)"
                + (stateDictKey.map { " (weights under '\($0)')" } ?? " (bare state dict)"))
        if let s = sha256 { lines.append("sha256:       \(s)") }
        lines.append(
            "architecture: \(a.timmName): width \(a.width), depth \(a.depth), heads \(a.heads), patch \(a.patchSize), "
                + "tokens \(a.tokenCount)" + (a.gridSize.map { " (\($0)×\($0) + \(a.prefixTokens))" } ?? "")
                + ", MLP \(a.mlpHiddenWidth) (ratio \(formatRatio(a.mlpRatio)))"
                + (a.qkvBias ? ", qkv bias" : ", no qkv bias") + (a.layerScale ? ", LayerScale" : "")
                + (a.hasFCNorm ? ", fc_norm" : "") + (a.hasFinalNorm ? "" : ", no final norm")
                + (a.classCount.map { ", head \($0) classes" } ?? ""))
        if a.family != nil || !a.classToken || a.distillationToken || a.registerTokens > 0 || a.preNorm
            || a.attentionPool || a.activation != .gelu
        {
            var parts = [a.family ?? "timm"]
            parts.append(
                a.classToken ? "class token" : "no class token" + (a.distillationToken ? " + distillation token" : ""))
            if a.distillationToken && a.classToken { parts[1] += " + distillation token" }
            if a.registerTokens > 0 { parts.append("\(a.registerTokens) register tokens") }
            if a.preNorm { parts.append("norm_pre") }
            if a.attentionPool { parts.append("MAP head attn_pool") }
            if let h = a.headFeatures { parts.append("head hook [\(h)]") }
            parts.append("\(a.activation.rawValue), LayerNorm eps \(a.layerNormEpsilon)")
            lines.append("family:       " + parts.joined(separator: ", "))
            if a.family == nil, a.attentionPool, a.activation == .gelu {
                lines.append(
                    "activation:   gelu: a bare state dict does not record the MLP nonlinearity; timm runs its SigLIP "
                        + "models with gelu, but its SigLIP 2 models (act_layer gelu_tanh) need --activation gelu_tanh")
            }
        }
        lines.append(
            "tensors:      \(fileTensorCount) in the file, \(formatBytes(fileTensorBytes)); "
                + "\(parameterNames.count) backbone parameters (\(parameterCount) values)")
        if listParameters {
            lines.append("parameters:")
            for n in parameterNames {
                let shape = describeShape(parameters[n]?.shape ?? [])
                let orig = originalNames[n].map { $0 == n ? "" : "  ← \($0)" } ?? ""
                lines.append("  \(n) \(shape)\(orig)")
            }
        }
        if !head.isEmpty {
            lines.append(
                "head:         "
                    + head.keys.sorted().map { k in
                        "\(k) \(describeShape(head[k]!.shape))"
                            + (originalNames[k].map { $0 == k ? "" : " ← \($0)" } ?? "")
                    }.joined(separator: ", "))
        }
        if !decoder.isEmpty {
            lines.append(
                "decoder:      \(decoder.count) tensors (" + decoder.keys.sorted().prefix(4).joined(separator: ", ")
                    + (decoder.count > 4 ? ", …)" : ")"))
        }
        if !ignored.isEmpty {
            lines.append("ignored:      \(ignored.count) keys")
            var byReason: [String: [String]] = [:]
            var reasons: [String] = []
            for i in ignored {
                if byReason[i.reason] == nil { reasons.append(i.reason) }
                byReason[i.reason, default: []].append(i.key)
            }
            for r in reasons {
                let ks = byReason[r]!
                lines.append(
                    "  \(r): " + ks.prefix(3).joined(separator: ", ") + (ks.count > 3 ? ", … (\(ks.count))" : ""))
            }
        }
        if !unexpectedKeys.isEmpty { lines.append("unexpected:   " + unexpectedKeys.joined(separator: ", ")) }
        if !missingKeys.isEmpty {
            lines.append("missing:      " + missingKeys.joined(separator: ", ") + " (not needed)")
        }
        if !extras.isEmpty {
            lines.append("extras:")
            for e in extras { lines.append("  \(e.key): \(e.value.describe(depth: 1))") }
        }
        if !metadata.isEmpty {
            lines.append(
                "metadata:     " + metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// The same report as JSON (for scripts), keys in a fixed order.
    public func summaryJSON() -> String {
        let q = JSONWriter.quote
        let a = architecture
        func opt<T>(_ v: T?, _ f: (T) -> String) -> String { v.map(f) ?? "null" }
        var fields: [String] = []
        fields.append("\"file\":" + q(file))
        fields.append("\"format\":" + q(format.rawValue))
        fields.append("\"source\":" + q(source.rawValue))
        fields.append("\"state_dict_key\":" + opt(stateDictKey, q))
        fields.append("\"sha256\":" + opt(sha256, q))
        fields.append(
            """
            "architecture":{"timm_name":\(q(a.timmName)),"width":\(a.width),"depth":\(a.depth),"heads":\(a.heads),\
            "patch_size":\(a.patchSize),"in_channels":\(a.inputChannels),"tokens":\(a.tokenCount),\
            "prefix_tokens":\(a.prefixTokens),"grid_size":\(opt(a.gridSize, String.init)),\
            "image_size":\(opt(a.imageSize, String.init)),"mlp_hidden":\(a.mlpHiddenWidth),"mlp_ratio":\(a.mlpRatio),\
            "qkv_bias":\(a.qkvBias),"layer_scale":\(a.layerScale),"final_norm":\(a.hasFinalNorm),"fc_norm":\(a.hasFCNorm),\
            "num_classes":\(opt(a.classCount, String.init)),"layer_norm_eps":\(a.layerNormEpsilon),\
            "family":\(opt(a.family, q)),"class_token":\(a.classToken),"distillation_token":\(a.distillationToken),\
            "register_tokens":\(a.registerTokens),"norm_pre":\(a.preNorm),"activation":\(q(a.activation.rawValue)),\
            "attn_pool":\(a.attentionPool),"head_features":\(opt(a.headFeatures, String.init))}
            """)
        fields.append(
            "\"tensors\":{\"count\":\(fileTensorCount),\"bytes\":\(fileTensorBytes),\"parameters\":\(parameterCount)}")
        let params = parameterNames.map { n in
            "{\"name\":\(q(n)),\"original\":\(q(originalNames[n] ?? n)),\"shape\":["
                + (parameters[n]?.shape ?? []).map(String.init).joined(separator: ",") + "]}"
        }
        fields.append("\"parameters\":[" + params.joined(separator: ",") + "]")
        func stored(_ d: [String: StoredTensor]) -> String {
            "["
                + d.keys.sorted().map { k in
                    "{\"name\":\(q(k)),\"original\":\(q(originalNames[k] ?? k)),\"dtype\":\(q(d[k]!.dtype.rawValue)),\"shape\":["
                        + d[k]!.shape.map(String.init).joined(separator: ",") + "]}"
                }.joined(separator: ",") + "]"
        }
        fields.append("\"head\":" + stored(head))
        fields.append("\"decoder\":" + stored(decoder))
        fields.append(
            "\"ignored\":[" + ignored.map { "{\"key\":\(q($0.key)),\"reason\":\(q($0.reason))}" }.joined(separator: ",")
                + "]")
        fields.append("\"unexpected\":[" + unexpectedKeys.map(q).joined(separator: ",") + "]")
        fields.append("\"missing\":[" + missingKeys.map(q).joined(separator: ",") + "]")
        fields.append(
            "\"extras\":{" + extras.map { "\(q($0.key)):\(q($0.value.describe(depth: 1)))" }.joined(separator: ",")
                + "}")
        fields.append(
            "\"metadata\":{" + metadata.keys.sorted().map { "\(q($0)):\(q(metadata[$0]!))" }.joined(separator: ",")
                + "}")
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Total number of backbone parameter values.
    public var parameterCount: Int { parameters.values.reduce(0) { $0 + $1.count } }
}

private func formatRatio(_ r: Double) -> String {
    r == r.rounded() ? String(Int(r)) : String(format: "%.3g", r)
}

private func formatBytes(_ n: Int) -> String {
    if n >= 1 << 20 { return String(format: "%.1f MiB", Double(n) / 1048576) }
    if n >= 1 << 10 { return String(format: "%.1f KiB", Double(n) / 1024) }
    return "\(n) B"
}
