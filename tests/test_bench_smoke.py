"""CPU smoke test of the AR benchmark (bench/bench_ar.py) at tiny size: the report has every field the
issue asks for, with sane, self-consistent values. No timing assertion (CPU times are noise)."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("wan_core.dit")
pytest.importorskip("wan_core.rollout.pipeline")
pytest.importorskip("wan_core.vae.taehv")

from bench import bench_ar  # noqa: E402
from bench.flops import RolloutSpec, rollout_cost, shape_of  # noqa: E402
from bench.report import PATH_FIELDS, RATIO_FIELDS, TOP_FIELDS  # noqa: E402

TINY = ["--tiny", "--device", "cpu", "--height", "32", "--width", "32", "--warmup", "0", "--repeats", "1"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    rep = bench_ar.main([*TINY, "--decoder", "both", "--json", str(out)])
    with open(out) as f:
        on_disk = json.load(f)
    return rep, on_disk


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_report_has_every_field(report):
    rep, on_disk = report
    for key in TOP_FIELDS:
        assert key in rep and key in on_disk, key
    assert set(on_disk["paths"]) == {"reference", "ours"}
    for name, path in on_disk["paths"].items():
        missing = [k for k in PATH_FIELDS if k not in path]
        assert not missing, (name, missing)
    assert set(on_disk["ratio_reference_over_ours"]) == set(RATIO_FIELDS)
    for dec in ("taehv", "vae"):
        assert dec in on_disk["config"]["decoders"]


def test_per_chunk_times_are_consistent(report):
    _, rep = report
    chunks = rep["config"]["chunks"]
    assert chunks == 7 and rep["config"]["video_frames"] == 81
    for path in rep["paths"].values():
        dit, den, ctx = path["dit_ms_per_chunk"], path["denoise_ms_per_chunk"], path["context_ms_per_chunk"]
        assert len(dit) == len(den) == len(ctx) == chunks
        assert all(_positive(x) for x in dit + den + ctx)
        assert dit == pytest.approx([a + b for a, b in zip(den, ctx)])
        assert path["dit_ms_chunk6"] == dit[5] and path["denoise_ms_chunk6"] == den[5]
        assert path["dit_total_s"] == pytest.approx(sum(dit) / 1e3)
        assert path["fps_dit_only"] == pytest.approx(81 / path["dit_total_s"])
        for dec in ("taehv", "vae"):
            ms = path["decode_ms_per_chunk"][dec]
            assert len(ms) == chunks and all(_positive(x) for x in ms)
            assert path["frames_decoded"][dec] == 81  # 9 + 6 x 12 pixel frames out of 21 latent frames
            assert path["fps_end_to_end"][dec] < path["fps_dit_only"]
            assert path["first_chunk_latency_ms"][dec] == pytest.approx(den[0] + ms[0])
        assert path["output_finite"] is True
        assert path["peak_memory_bytes"] is None  # CPU: not tracked
        assert _positive(path["setup_s"])
        assert path["cold_start_overhead_s"] == pytest.approx(path["setup_s"])  # --warmup 0: build only
        assert path["dit_total_s_runs"] == pytest.approx([path["dit_total_s"]])  # one timed run
        timed = path["dit_total_s"] + sum(sum(v) for v in path["decode_ms_per_chunk"].values()) / 1e3
        assert path["rollout_wall_s"] == pytest.approx(timed + path["gaps_ms"] / 1e3)
        assert path["gaps_ms"] > -1e-3  # the segments lie inside the wall-clock span


def test_mfu_and_cost_match_the_flop_model(report):
    _, rep = report
    cfg = bench_ar.dit_config(bench_ar.parse_args(TINY))
    cost = rollout_cost(shape_of(cfg), RolloutSpec(height=32, width=32))
    assert rep["model_cost"]["total_tflop"] == pytest.approx(cost.total.flops / 1e12)
    peak = rep["ceilings"]["matmul_flops"]
    assert _positive(peak)
    for path in rep["paths"].values():
        assert path["mfu"] == pytest.approx(cost.total.flops / path["dit_total_s"] / peak)
        assert 0 < path["mfu"] < 10
        assert path["achieved_tflops"] == pytest.approx(cost.total.flops / path["dit_total_s"] / 1e12)
    ref, ours = rep["paths"]["reference"], rep["paths"]["ours"]
    assert rep["ratio_reference_over_ours"]["dit_total_s"] == pytest.approx(
        ref["dit_total_s"] / ours["dit_total_s"]
    )
    # both paths ran the same model on the same noise: with every ours-feature off the latents agree
    assert rep["latent_rel_err_ours_vs_reference"] < 1e-5
    assert rep["ceilings"]["fp8_scaled_mm_flops"] is None and "CUDA" in rep["ceilings"]["fp8_note"]
    assert _positive(rep["ceilings"]["attention_flops_best"])
    assert _positive(rep["ceilings"]["copy_bandwidth_bytes_per_s"])
    eager = rep["model_cost"]["eager_pass_bytes_chunk6"]
    assert eager["total_bytes"] == pytest.approx(eager["gemm_and_attention_io_bytes"] + eager["other_bytes"])
    assert eager["ops"] > 0
    # decoder FLOPs counted on the meta device; the Wan VAE does far more work than TAEHV
    dec = rep["model_cost"]["decode_tflop_first_and_later_chunk"]
    assert all(_positive(x) for x in dec["taehv"] + dec["vae"])
    assert dec["vae"][1] > 3 * dec["taehv"][1]
    for path in rep["paths"].values():
        assert all(_positive(x) for x in path["decode_achieved_tflops"].values())


def test_rolling_window_and_skipped_last_context_pass(capsys):
    rep = bench_ar.main(
        [
            *TINY,
            "--decoder",
            "none",
            "--paths",
            "ours",
            "--window",
            "6",
            "--sink",
            "3",
            "--no-context-pass-last",
            "--profile",
            "--chunks",
            "5",
        ]
    )
    ours = rep["paths"]["ours"]
    full = rep["model_cost"]["total_tflop"]  # the reference setting (full cache, 7 context passes)
    assert ours["tflop_total"] < full
    assert "window 6+3" in ours["description"]
    assert ours["decode_ms_per_chunk"] == {} and ours["fps_end_to_end"] == {}
    assert "DiT 6th chunk" in capsys.readouterr().out
    prof = ours["profile"]  # where the time went, by kernel class (CPU: ATen ops)
    assert prof["by_class_ms"]["gemm"] > 0 and prof["by_class_ms"]["attention"] > 0
    assert prof["total_ms"] == pytest.approx(sum(prof["by_class_ms"].values()))
    assert prof["launches"] > 0 and prof["top"]


def test_cli_errors_are_clear():
    with pytest.raises(SystemExit):
        bench_ar.parse_args(["--decoder", "nope"])
    with pytest.raises(SystemExit):
        bench_ar.parse_args(["--paths", "official-ish"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench_ar.parse_args(["--device", "cuda"])


def test_a_failing_path_keeps_the_other_and_the_json(tmp_path, capsys):
    out = tmp_path / "partial.json"
    # flash attention needs CUDA: "ours" fails at build time, the reference still runs and is written
    rep = bench_ar.main(
        [*TINY, "--decoder", "none", "--chunks", "2", "--attn-backend", "flash", "--json", str(out)]
    )
    assert "ours" in rep["errors"] and "CUDA" in rep["errors"]["ours"]
    assert set(rep["paths"]) == {"reference"} and rep["ratio_reference_over_ours"] == {}
    with open(out) as f:
        assert json.load(f)["paths"]["reference"]["dit_ms_per_chunk"]
    assert "path ours FAILED" in capsys.readouterr().out


def test_fp8_linear_microbenchmark_reports_time_and_error(tmp_path):
    from bench import fp8_linear

    rep = fp8_linear.main(["--tiny", "--device", "cpu", "--iters", "2", "--json", str(tmp_path / "fp8.json")])
    assert [r["per_block"] for r in rep["shapes"]] == [6, 1, 1]
    for r in rep["shapes"]:
        bf16, fp8w = r["variants"]["bf16"], r["variants"]["fp8_weight_dequant"]
        assert _positive(bf16["ms"]) and _positive(fp8w["ms"])
        # bf16 rounding ~1e-3; e4m3 weights (3 mantissa bits) ~3e-2: FP8 needs the end-to-end check
        assert 1e-4 < bf16["rel_err_vs_fp32"] < 1e-2
        assert 5 * bf16["rel_err_vs_fp32"] < fp8w["rel_err_vs_fp32"] < 0.1
        assert "fp8_rowwise" not in r["variants"]  # CUDA only
        # the product module (wan_core.fp8_linear.FP8Linear): e4m3 weights *and* activations
        mod = r["variants"]["fp8_linear_module"]
        assert _positive(mod["ms"]) and 5 * bf16["rel_err_vs_fp32"] < mod["rel_err_vs_fp32"] < 0.1
    assert set(rep["per_pass_ms"]) == {"bf16", "fp8_weight_dequant", "fp8_linear_module"}
    q, s = fp8_linear.quantize_rows(torch.randn(4, 16))
    assert q.dtype == torch.float8_e4m3fn and s.shape == (4, 1)


def test_fp32_reference_gives_the_bf16_error_yardstick():
    rep = bench_ar.main([*TINY, "--decoder", "none", "--chunks", "3", "--reference-dtype", "fp32"])
    assert rep["config"]["reference_dtype"] == "fp32"
    assert "float32" in rep["paths"]["reference"]["description"]
    err = rep["latent_rel_err_ours_vs_reference"]  # ours in bf16 against the same weights in fp32
    assert 1e-5 < err < 0.2


def test_fp8_linear_switch_is_measured_against_the_same_reference():
    """``--fp8-linear`` converts ours only; the reference stays in --reference-dtype, so the latent error
    field is the FP8 path's end-to-end error, to read against the bf16 yardstick above."""
    rep = bench_ar.main(
        [*TINY, "--decoder", "none", "--chunks", "3", "--reference-dtype", "fp32", "--fp8-linear"]
    )
    assert rep["config"]["fp8_linear_ours"] is True
    assert "FP8 linears (rowwise" in rep["paths"]["ours"]["description"]
    assert "FP8" not in rep["paths"]["reference"]["description"]
    yardstick = bench_ar.main([*TINY, "--decoder", "none", "--chunks", "3", "--reference-dtype", "fp32"])
    err, err16 = rep["latent_rel_err_ours_vs_reference"], yardstick["latent_rel_err_ours_vs_reference"]
    assert 1.5 * err16 < err < 0.1  # e4m3 math: above bf16's error, but still a small one


def test_fused_qkv_switch_keeps_the_latents():
    rep = bench_ar.main([*TINY, "--decoder", "none", "--chunks", "3", "--fuse-qkv"])
    assert rep["config"]["fuse_qkv"] is True
    assert "fused QKV" in rep["paths"]["ours"]["description"]
    assert "fused QKV" not in rep["paths"]["reference"]["description"]
    assert rep["latent_rel_err_ours_vs_reference"] < 1e-6  # 3e-8 with and without fusion (bf16, CPU)


def test_ours_with_relative_rope_and_a_rolling_window(tmp_path):
    """``--rope relative --window --sink``: the endless-stream configuration of ours, with its eager bytes."""
    out = tmp_path / "rel.json"
    args = ["--paths", "ours", "--decoder", "none", "--window", "4", "--sink", "1", "--rope", "relative"]
    rep = bench_ar.main([*TINY, *args, "--chunks", "4", "--json", str(out)])
    assert rep["config"]["rope_ours"] == "relative" and rep["config"]["sink_ours"] == 1
    counted = rep["model_cost"]["eager_pass_bytes_ours_last_chunk"]
    assert (counted["rope"], counted["sink"], counted["window"]) == ("relative", 1, 4)
    assert counted["total_bytes"] > 0 and "RoPE relative" in rep["paths"]["ours"]["description"]
    assert not rep["errors"]
