// landscape-report: the cost of one loss-landscape grid point — the MAE pre-training loss on 64 images at
// ViT-B/16 shape (encoder 768 wide, 12 blocks; decoder 512 wide, 8 blocks, 16 heads; mask ratio 0.75; random
// weights) and the RC-MAE loss (student + teacher) — next to the sgemm 2048³ peak measured in the same process
// with the same OpenBLAS thread count.
//
//   swift run -c release landscape-report [--images 64] [--threads 1,2] [--runs 2] [--min-time 0.5]
//
// FLOPs are the GEMMs of the forward passes, 2·m·n·k each (MaskedAutoencoder.gemmFLOPs): visible-patch
// embedding, every qkv / Q·Kᵀ / S·V / proj / fc1 / fc2 of the encoder (50 tokens) and decoder (197 tokens),
// decoder_embed and decoder_pred. LayerNorm, softmax, GELU, bias adds and the loss itself are not counted but
// are in the time. Each point is timed `--runs` times (the first includes buffer allocation); the best is shown,
// against the best sgemm 2048³ round measured before, between and after the points.
// Goal: ≥ 60 % of the sgemm peak.
import CKAKit
import Foundation
import ReportSupport

#if DEBUG
    FileHandle.standardError.write(Data("landscape-report: build with -c release\n".utf8))
    exit(1)
#else

    guard let images = Int(option("--images", "64")), images > 0, let runs = Int(option("--runs", "2")), runs > 0,
        let minTime = Double(option("--min-time", "0.5")), minTime > 0
    else {
        print("usage: landscape-report [--images N] [--threads 1,2] [--runs R] [--min-time SECONDS]")
        exit(2)
    }
    let threadCounts = option("--threads", "1,2").split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
    let ratio = 0.75, goal = 60.0

    func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(
            separator: " ") ?? "?"
    }
    /// CPU seconds used by the whole machine (from /proc/stat) and by this process, to report how busy the
    /// other CPUs were while a table was measured.
    func cpuSeconds() -> (machine: Double, own: Double) {
        var busy = 0.0
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        if let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        {
            let f = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            if f.count >= 8 { busy = (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / ticks }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let own =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
        return (busy, own)
    }

    let arch = ViTArchitecture.standard(width: 768, depth: 12, heads: 12, patchSize: 16, grid: 14)
    let t0 = now()
    let student = try MaskedAutoencoder.randomlyInitialized(
        encoder: arch, decoderWidth: 512, decoderDepth: 8, decoderHeads: 16, seed: 1)
    let teacher = try MaskedAutoencoder.randomlyInitialized(
        encoder: arch, decoderWidth: 512, decoderDepth: 8, decoderHeads: 16, seed: 2)
    var rng = SplitMix64(seed: 3)
    let pixels = Tensor<Float>(shape: [images, 3, 224, 224]) { _ in Float(rng.gaussian()) }
    let masks = try MAEMask.random(images: images, patches: student.patchCount, ratio: ratio, seed: 4)
    let keep = masks[0].keepCount
    let maeFLOPs = student.gemmFLOPs(images: images, keepCount: keep)
    let rcFLOPs = maeFLOPs + teacher.gemmFLOPs(images: images, keepCount: keep)
    print(
        "landscape-report: one grid point = MAE loss on \(images) images, ViT-B/16 encoder (768×12) + decoder "
            + "(\(student.decoderWidth)×\(student.decoderDepth), \(student.decoderHeads) heads), mask \(ratio) "
            + "(\(keep) of \(student.patchCount) patches visible), norm_pix_loss, float32, random weights")
    print("OpenBLAS core \(blasCoreName); setup \(String(format: "%.1f", now() - t0)) s; load average \(loadAverage())")
    print(
        String(
            format: "GEMM FLOPs per point: MAE %.1f GFLOP, RC-MAE (student + teacher) %.1f GFLOP", maeFLOPs / 1e9,
            rcFLOPs / 1e9))

    let a = Tensor<Float>(shape: [2048, 2048]) { i in Float(i % 251) * 0.004 - 0.5 }
    let b = Tensor<Float>(shape: [2048, 2048]) { i in Float(i % 241) * 0.004 - 0.48 }
    var c = Tensor<Float>(shape: [2048, 2048])
    var sink = 0.0

    for threads in threadCounts {
        setBLASThreadCount(threads)
        let cpu0 = cpuSeconds(), wall0 = now()
        // The sgemm peak is measured in rounds of ≥ minTime interleaved with the timed points (before, between and
        // after them), and the best round counts: a burst of load elsewhere lowers the peak less than the points, so
        // the percentages are conservative.
        try Tensor.gemm(a, b, into: &c)
        var peakTime = Double.infinity
        func measurePeak() throws {
            var calls = 0
            let start = now()
            repeat { try Tensor.gemm(a, b, into: &c); calls += 1 } while now() - start < minTime
            peakTime = min(peakTime, (now() - start) / Double(calls))
            sink += Double(c[0, 0])
        }

        var maeTimes: [Double] = [], rcTimes: [Double] = [], loss = 0.0, rcLoss = (0.0, 0.0)
        for _ in 0..<runs {
            try measurePeak()
            var s = now()
            do {  // the output goes out of scope before the next pass reuses the student's buffers (no copy-on-write)
                let out = try student.forward(pixels, masks: masks, normPixLoss: true)
                maeTimes.append(now() - s)
                loss = out.loss
            }
            try measurePeak()
            s = now()
            let rc = try MaskedAutoencoder.rcmaeForward(
                student: student, teacher: teacher, pixels: pixels, masks: masks,
                normPixLoss: true)
            rcTimes.append(now() - s)
            rcLoss = (rc.sums.reconstruction, rc.sums.consistency)
        }
        try measurePeak()
        let peak = 2 * pow(2048.0, 3) / peakTime / 1e9
        let cpu1 = cpuSeconds(), wall = now() - wall0
        let otherCPUs = max(0, (cpu1.machine - cpu0.machine) - (cpu1.own - cpu0.own)) / wall

        print("")
        print(
            "OpenBLAS threads: \(blasThreadCount); load average \(loadAverage()); "
                + String(format: "%.2f CPUs busy with other work during this table", otherCPUs)
                + (otherCPUs > 0.25 ? "  ← NOT QUIET: re-run on an idle machine before trusting the percentages" : ""))
        print(String(format: "  sgemm 2048³ peak (best round): %8.1f ms  %7.1f GFLOP/s", peakTime * 1e3, peak))
        for (name, times, flops, detail) in [
            ("MAE loss point", maeTimes, maeFLOPs, String(format: "loss %.5f", loss)),
            (
                "RC-MAE loss point", rcTimes, rcFLOPs,
                String(format: "reconstruction %.5f, consistency %.3g", rcLoss.0, rcLoss.1)
            ),
        ] {
            let best = times.min()!
            let gflops = flops / best / 1e9, percent = 100 * gflops / peak
            let runList = times.map { String(format: "%.2f", $0) }.joined(separator: ", ")
            print(
                "  " + name.padding(toLength: 20, withPad: " ", startingAt: 0)
                    + String(format: ": %8.2f s   %7.1f GFLOP/s  %5.1f %% of peak", best, gflops, percent)
                    + "  (runs: \(runList) s; \(detail))  goal ≥ \(Int(goal)) %: "
                    + (percent >= goal ? "MET" : "NOT MET"))
        }
    }
    if sink.isNaN { print("(sink \(sink))") }
#endif
