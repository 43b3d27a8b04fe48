import ArgumentParser
import CKAKit
import Foundation

extension CKACommand {
    struct CheckpointInfo: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint",
            abstract:
                "Load a checkpoint safely and show its layout: source, architecture, parameters, what was ignored.",
            discussion: """
                Reads .pth/.pth.tar (torch zip + pickle, never executed: only an allow-list of tensor constructors is \
                interpreted, anything else stays an inert value), .safetensors, Hugging Face model directories \
                (config.json + weights, shards) and open_clip state dicts. Shows the detected source (DINO, MoCo-v3, \
                MAE, RC-MAE, timm, DINOv2, hf, open-clip), the inferred architecture and the mapping from the file's \
                names to timm's (--json: "parameters"[].original).
                """)

        @Argument(help: "Checkpoint file (.pth, .pth.tar, .safetensors, .bin) or a Hugging Face / open_clip directory.")
        var file: String

        @Option(help: "Checkpoint layout (default: detected).")
        var source: CheckpointSource?

        @Option(
            help:
                "MLP nonlinearity: gelu, gelu_tanh, quick_gelu (OpenAI CLIP). Default: the layout's (HF config.json hidden_act; a timm hub config.json's act_layer or architecture; open_clip_config.json quick_gelu); a bare timm state dict does not record it: gelu, as timm runs its SigLIP models, but timm's SigLIP 2 models (act_layer gelu_tanh, e.g. vit_so400m_patch16_siglip_256) need --activation gelu_tanh."
        )
        var activation: MLPActivation?

        @Option(help: "Attention heads (default: from the width).")
        var heads: Int?

        @Flag(help: "Print JSON instead of text.")
        var json = false

        @Flag(help: "Also compute the file's SHA-256.")
        var sha256 = false

        @Flag(name: .customLong("no-parameters"), help: "Do not list the parameters.")
        var noParameters = false

        func run() throws {
            try reportingErrors {
                var options = Checkpoint.Options(source: source, heads: heads)
                options.activation = activation
                options.computeSHA256 = sha256
                let c = try Checkpoint(contentsOf: URL(fileURLWithPath: file), options: options)
                print(json ? c.summaryJSON() : c.summaryText(listParameters: !noParameters))
            }
        }
    }
}
