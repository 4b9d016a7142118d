"""The ``ehead eval`` pipeline: pairing, alignment, splits, aggregation, baselines, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

import ehead_cli.eval as E
from ehead_cli.errors import ConfigError, InputError
from ehead_cli.eval import pairing, registry, write
from ehead_cli.eval.images import centre_crop
from ehead_cli.face.builtin import EXPR_BROW_RAISE, EXPR_LIPS_PART, EXPR_SMILE, BuiltinHead
from ehead_cli.io.motionfile import Motion, load_motion, save_motion
from ehead_cli.layout import EXPR, JAW, LISTEN, MOTION_DIM, MOTION_FPS, N_SHAPE, ROT, SPEAK, TRANS
from ehead_cli.metrics.conventions import Unavailable

# clip id -> (frames, speaking frame ranges); the rest of each clip is listening
CLIPS = {"a": (40, [(0, 20)]), "b": (34, [(8, 24)]), "c": (24, [(0, 24)])}
TOTAL = sum(n for n, _ in CLIPS.values())
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def face() -> BuiltinHead:
    return BuiltinHead()


def synth_clip(n: int, speaking: list[tuple[int, int]], seed: int) -> Motion:
    """Plausible motion on the built-in head's layout: a jaw that talks while speaking and barely
    moves while listening, smiles and brow raises, head nods and sway (25 fps)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / MOTION_FPS
    states = np.full(n, LISTEN, np.int8)
    for a, b in speaking:
        states[a:b] = SPEAK
    m = np.zeros((n, MOTION_DIM), np.float32)
    talk = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6))
    idle = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    m[:, JAW.start] = np.where(states == SPEAK, 0.18 * talk, 0.03 * idle)
    m[:, EXPR.start + EXPR_LIPS_PART] = np.where(states == SPEAK, 0.6 * talk, 0.1 * idle)
    m[:, EXPR.start + EXPR_SMILE] = 0.5 * np.sin(2 * np.pi * 0.4 * t + rng.uniform(0, 6))
    m[:, EXPR.start + EXPR_BROW_RAISE] = 0.4 * np.sin(2 * np.pi * 1.3 * t + rng.uniform(0, 6))
    m[:, EXPR.start + 11 : EXPR.start + 30] = 0.2 * np.sin(2 * np.pi * 0.9 * t[:, None] + rng.uniform(0, 6, 19))
    m[:, ROT] = 0.08 * np.sin(2 * np.pi * np.array([1.7, 0.6, 0.9]) * t[:, None] + rng.uniform(0, 6, 3))
    m[:, TRANS] = 0.004 * np.sin(2 * np.pi * 0.3 * t[:, None] + rng.uniform(0, 6, 3))
    shape = rng.normal(0.0, 0.7, N_SHAPE).astype(np.float32)
    return Motion(m, shape, states)


def write_set(folder: Path, clips: dict[str, Motion]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for clip_id, motion in clips.items():
        save_motion(folder / f"{clip_id}.npz", motion)
    return folder


@pytest.fixture
def gt_clips() -> dict[str, Motion]:
    return {cid: synth_clip(n, speak, seed) for seed, (cid, (n, speak)) in enumerate(CLIPS.items())}


def perturbed(m: Motion, scale: float, seed: int, *, shape_too: bool = False) -> Motion:
    """m plus Gaussian noise of ``scale`` on expression, jaw and head rotation (other identity if asked)."""
    rng = np.random.default_rng(seed)
    motion = m.motion.copy()
    for sl, s in ((EXPR, scale), (JAW, 0.2 * scale), (ROT, 0.2 * scale)):
        motion[:, sl] += rng.normal(0, s, motion[:, sl].shape).astype(np.float32)
    shape = rng.normal(0, 1.0, N_SHAPE) if shape_too else m.shape
    return Motion(motion, shape, m.states)


def overall(report: E.EvalReport, key: str, split: str = "all", source: str = registry.PREDICTION) -> float:
    value = report.overall[source][split][key]
    assert isinstance(value, float), (key, split, source, value)
    return value


# --- scores ----------------------------------------------------------------------------------------
def test_identical_predictions_score_perfectly(tmp_path, gt_clips, face):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", gt_clips)
    report = E.evaluate(pred, gt, ["lve", "fdd", "mod", "ba", "sid", "l2", "fd"], face=face)
    assert report.exit_code == 0 and not report.problems and len(report.clips) == 3
    for split in registry.FRAME_SPLITS:
        for key in ("lve", "mod", "fdd"):
            assert overall(report, key, split) == pytest.approx(0.0, abs=1e-6)
        assert overall(report, "ba", split) == pytest.approx(1.0)
    for clip in report.clips:
        assert clip.values[registry.PREDICTION]["all"]["lve"] == pytest.approx(0.0, abs=1e-6)
        assert clip.values[registry.PREDICTION]["all"]["ba"] == pytest.approx(1.0)
    assert overall(report, "l2_exp", "listening") == 0.0
    assert overall(report, "fd_exp", "listening") == pytest.approx(0.0, abs=1e-6)
    # SID of a perfect prediction equals the ground truth's own diversity
    assert overall(report, "sid") == pytest.approx(overall(report, "sid", source=registry.GROUND_TRUTH))
    assert 0.0 < overall(report, "sid") <= math.log2(40)


def test_perturbed_prediction_scores_worse_and_identity_is_ignored(tmp_path, gt_clips, face):
    gt = write_set(tmp_path / "gt", gt_clips)
    # another identity, same motion: the ground truth's shape is used for both, so nothing counts
    same_motion = write_set(tmp_path / "same", {k: perturbed(m, 0.0, 1, shape_too=True) for k, m in gt_clips.items()})
    noisy = write_set(tmp_path / "noisy", {k: perturbed(m, 0.3, 2) for k, m in gt_clips.items()})
    zero = E.evaluate(same_motion, gt, "lve,fdd,mod", face=face)
    worse = E.evaluate(noisy, gt, "lve,fdd,mod", face=face)
    for key in ("lve", "fdd", "mod"):
        assert overall(zero, key) == pytest.approx(0.0, abs=1e-6)
        assert overall(worse, key) > 0.05, key  # mm


def test_baselines_are_worse_than_a_near_perfect_prediction(tmp_path, gt_clips, face):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", {k: perturbed(m, 0.01, 3) for k, m in gt_clips.items()})
    report = E.evaluate(pred, gt, "lve,mod,sid", baseline=["mean", "still", "shuffled"], face=face)
    assert report.sources == (registry.PREDICTION, "baseline:mean", "baseline:still", "baseline:shuffled",
                              registry.GROUND_TRUTH)
    for kind in ("mean", "still", "shuffled"):
        source = registry.BASELINE_PREFIX + kind
        assert overall(report, "lve", source=source) > 3 * overall(report, "lve")
        assert overall(report, "mod", "listening", source=source) > 3 * overall(report, "mod", "listening")
        for clip in report.clips:  # per clip too
            assert clip.values[source]["all"]["lve"] > clip.values[registry.PREDICTION]["all"]["lve"]
    # a constant prediction falls into a single cluster: no diversity at all
    assert overall(report, "sid", source="baseline:mean") == pytest.approx(0.0, abs=1e-9)


def test_speaking_listening_split_sums_consistently(tmp_path, gt_clips, face):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", {k: perturbed(m, 0.2, 4) for k, m in gt_clips.items()})
    report = E.evaluate(pred, gt, "lve,mod,fdd", face=face)
    expected_speak = sum(b - a for _, speak in CLIPS.values() for a, b in speak)
    assert report.frames == {"all": TOTAL, "speaking": expected_speak, "listening": TOTAL - expected_speak}
    for key in ("lve", "mod"):  # frame-level: all = frame-weighted mix of the two splits
        for clip in report.clips:
            v, f = clip.values[registry.PREDICTION], clip.frames
            assert f["speaking"] + f["listening"] == f["all"] == clip.n_frames
            parts = sum(v[s][key] * f[s] for s in ("speaking", "listening") if f[s])
            assert v["all"][key] * f["all"] == pytest.approx(parts, rel=1e-6)
        mixed = sum(overall(report, key, s) * report.frames[s] for s in ("speaking", "listening"))
        assert overall(report, key) * report.frames["all"] == pytest.approx(mixed, rel=1e-6)
        # frame-weighted over clips
        weighted = sum(c.values[registry.PREDICTION]["all"][key] * c.n_frames for c in report.clips) / TOTAL
        assert overall(report, key) == pytest.approx(weighted, rel=1e-9)
    # clip "c" has no listening frame: it contributes nothing to that split
    clip_c = next(c for c in report.clips if c.clip_id == "c")
    assert "listening" not in clip_c.values[registry.PREDICTION]
    assert report.coverage[registry.PREDICTION]["listening"]["fdd"] == 2
    # clip-level FDD: plain mean over clips
    assert overall(report, "fdd") == pytest.approx(np.mean([c.values[registry.PREDICTION]["all"]["fdd"]
                                                            for c in report.clips]))


# --- pairing and alignment ------------------------------------------------------------------------
def test_unmatched_and_broken_files_are_reported_and_the_rest_evaluated(tmp_path, gt_clips):
    extra = synth_clip(30, [(0, 10)], seed=9)
    gt = write_set(tmp_path / "gt", {**gt_clips, "only_gt": extra})
    pred = write_set(tmp_path / "pred", {"a": gt_clips["a"], "b": gt_clips["b"], "only_pred": extra})
    (pred / "c.npz").write_bytes(b"this is not a zip file")
    report = E.evaluate(pred, gt, "ba")
    kinds = {p.clip_id: p.kind for p in report.problems}
    assert kinds == {"c": "unreadable"}  # a broken file is a problem; a clip on one side only is not
    assert report.unpaired == {"no prediction": ("only_gt",), "no ground truth": ("only_pred",)}
    assert "c.npz" in next(p.message for p in report.problems if p.clip_id == "c")
    assert [c.clip_id for c in report.clips] == ["a", "b"]
    assert report.exit_code == 1 and report.face == "none"  # BA needs no face model
    only_broken = E.evaluate(pred, gt, "ba,sid")
    assert only_broken.overall[registry.PREDICTION]["all"]["ba"] == pytest.approx(1.0)  # a and b are exact copies
    (pred / "a.npz").write_bytes(b"")
    (pred / "b.npz").write_bytes(b"")
    nothing = E.evaluate(pred, gt, "ba,sid")
    assert nothing.clips == [] and nothing.exit_code == 1
    assert nothing.unavailable()["sid"] == nothing.unavailable()["ba"] == "no clip was evaluated"


def test_length_alignment_rule(tmp_path, gt_clips):
    assert pairing.aligned_length(100, 112, MOTION_FPS) == 100  # 12 frames = 0.48 s: cut to the shorter
    with pytest.raises(pairing.AlignmentError, match="differ by more than 12 frames"):
        pairing.aligned_length(100, 113, MOTION_FPS)
    gt = write_set(tmp_path / "gt", gt_clips)
    n_a, n_b = CLIPS["a"][0], CLIPS["b"][0]
    longer = synth_clip(n_a + 5, CLIPS["a"][1], seed=0)
    longer.motion[:n_a] = gt_clips["a"].motion
    too_long = synth_clip(n_b + 13, CLIPS["b"][1], seed=1)
    pred = write_set(tmp_path / "pred", {"a": longer, "b": too_long, "c": gt_clips["c"]})
    report = E.evaluate(pred, gt, "ba,l2")
    clip_a = next(c for c in report.clips if c.clip_id == "a")
    assert (clip_a.n_frames, clip_a.pred_frames, clip_a.gt_frames) == (n_a, n_a + 5, n_a)
    assert clip_a.values[registry.PREDICTION]["listening"]["l2_exp"] == 0.0  # the common frames match exactly
    assert [(p.clip_id, p.kind) for p in report.problems] == [("b", "length mismatch")]


def test_dataset_folder_and_split(tmp_path, gt_clips):
    data = tmp_path / "data"
    write_set(data / "clips", gt_clips)
    pd.DataFrame({"id": ["a", "b", "c"], "split": ["train", "test", "test"],
                  "duration": [n / MOTION_FPS for n, _ in CLIPS.values()],
                  "n_frames": [n for n, _ in CLIPS.values()]}).to_csv(data / "manifest.csv", index=False)
    pred = write_set(tmp_path / "pred", {"b": gt_clips["b"], "c": gt_clips["c"]})
    report = E.evaluate(pred, data, "ba", split="test")
    assert [c.clip_id for c in report.clips] == ["b", "c"] and report.exit_code == 0
    everything = E.evaluate(pred, data, "ba")  # a few predictions against the whole dataset
    assert everything.problems == [] and everything.exit_code == 0
    assert everything.unpaired["no prediction"] == ("a",) and [c.clip_id for c in everything.clips] == ["b", "c"]
    with pytest.raises(InputError, match="no clip in split 'val'"):
        E.evaluate(pred, data, "ba", split="val")
    with pytest.raises(ConfigError, match="--split"):
        E.evaluate(pred, data / "clips", "ba", split="test")


def test_bad_arguments_name_their_flag(tmp_path, gt_clips):
    gt = write_set(tmp_path / "gt", gt_clips)
    with pytest.raises(ConfigError, match="--metrics: unknown metric 'lvee'"):
        E.evaluate(gt, gt, "lve,lvee")
    with pytest.raises(ConfigError, match="--baseline"):
        E.evaluate(gt, gt, "ba", baseline="zero")
    with pytest.raises(ConfigError, match="--convention"):
        E.evaluate(gt, gt, "ba", convention="nope")
    with pytest.raises(InputError, match="--pred"):
        E.evaluate(tmp_path / "absent", gt, "ba")
    (tmp_path / "other").mkdir()
    save_motion(tmp_path / "other" / "zzz.npz", gt_clips["a"])
    with pytest.raises(InputError, match="share no clip name"):
        E.evaluate(tmp_path / "other", gt, "ba")
    with pytest.raises(InputError, match="--pred-video"):
        E.evaluate(gt, gt, "psnr", image_dirs=(tmp_path / "absent", gt))
    assert E.parse_metrics("image,ba") == ("ba", "psnr", "ssim", "lpips")


# --- unavailable metrics, conventions, images ---------------------------------------------------------
def test_metrics_without_inputs_are_unavailable_with_a_reason(tmp_path, gt_clips, monkeypatch):
    monkeypatch.delenv("EHEAD_VGG", raising=False)
    monkeypatch.delenv("EHEAD_LPIPS", raising=False)
    gt = write_set(tmp_path / "gt", gt_clips)
    report = E.evaluate(gt, gt, "ba,psnr,lpips,pfd,l2_affect")
    reasons = report.unavailable()
    assert set(reasons) == {"psnr", "lpips", "pfd_exp", "pfd_pose", "l2_affect"}
    assert "--pred-video" in reasons["psnr"] and "speaker" in reasons["pfd_exp"]
    assert "affect estimator" in reasons["l2_affect"]
    assert report.exit_code == 0  # a metric without inputs is not a failed clip
    # with a speaker and an affect estimator they come back
    speaker = write_set(tmp_path / "speaker", {k: perturbed(m, 0.5, 7) for k, m in gt_clips.items()})
    report = E.evaluate(gt, gt, "pfd,l2_affect", speaker_dir=speaker,
                        affect_estimator=lambda m: m[:, EXPR][:, :3])
    assert overall(report, "pfd_exp", "listening") == pytest.approx(0.0, abs=1e-5)
    assert overall(report, "l2_affect", "listening") == 0.0


def test_convention_sets_units_and_values(tmp_path, gt_clips, face):
    assert E.metric_units()["lve"] == "mm" and E.metric_units()["sid"] == "bits"
    assert E.metric_units("codetalker")["lve"] == "m^2" and E.metric_units("dualtalk-l2")["l2_exp"] == "coeff^2"
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", {k: perturbed(m, 0.2, 5) for k, m in gt_clips.items()})
    paper = E.evaluate(pred, gt, "lve", face=face)
    squared = E.evaluate(pred, gt, "lve", convention="codetalker-lve", face=face)
    # the max squared lip distance in m^2 cannot exceed (max distance in mm / 1000)^2 on average
    assert 0 < overall(squared, "lve") < (overall(paper, "lve") * 3 / 1000) ** 2
    assert squared.to_dict()["convention"]["name"] == "codetalker-lve"


def write_video(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=MOTION_FPS)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode(None))


def test_image_metrics_from_video_pairs(tmp_path, gt_clips, monkeypatch):
    monkeypatch.delenv("EHEAD_VGG", raising=False)
    monkeypatch.delenv("EHEAD_LPIPS", raising=False)
    gt = write_set(tmp_path / "gt", gt_clips)
    rng = np.random.default_rng(0)
    n_b, n_c = CLIPS["b"][0], CLIPS["c"][0]
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([(x * 4 + 9 * k) % 256 for k in range(n_b)])  # a moving gradient, (n_b, 48, 64)
    video = np.stack([base, np.broadcast_to(y * 5, base.shape), 255 - base], -1).astype(np.uint8)
    noisy = np.clip(video + rng.normal(0, 25, video.shape), 0, 255).astype(np.uint8)
    for folder, clip_b in (("gt_video", video), ("pred_video", noisy)):
        (tmp_path / folder).mkdir()
        write_video(tmp_path / folder / "b.mp4", clip_b)
    write_video(tmp_path / "gt_video" / "c.mp4", video[:n_c])  # no prediction video for c
    write_video(tmp_path / "gt_video" / "a.mp4", video)
    (tmp_path / "pred_video" / "a.mp4").write_bytes(b"not a video")
    report = E.evaluate(gt, gt, "psnr,ssim,lpips", image_dirs=(tmp_path / "pred_video", tmp_path / "gt_video"))
    b = next(c for c in report.clips if c.clip_id == "b")
    speak = CLIPS["b"][1][0][1] - CLIPS["b"][1][0][0]
    assert b.video_frames == {"all": n_b, "speaking": speak, "listening": n_b - speak}
    assert 5.0 < b.values[registry.PREDICTION]["all"]["psnr"] < 40.0
    assert 0.0 < b.values[registry.PREDICTION]["all"]["ssim"] < 0.95
    assert isinstance(b.values[registry.PREDICTION]["all"]["lpips"], Unavailable)
    c = next(c for c in report.clips if c.clip_id == "c")
    assert "c.mp4" in c.values[registry.PREDICTION]["all"]["psnr"].reason
    assert overall(report, "psnr") == b.values[registry.PREDICTION]["all"]["psnr"]  # only b has videos
    assert report.coverage[registry.PREDICTION]["all"]["psnr"] == 1
    # a broken video is a problem of its clip (exit status 1); the clip itself is still evaluated
    assert [(p.clip_id, p.kind) for p in report.problems] == [("a", "bad video")]
    assert "a.mp4" in report.problems[0].message and len(report.clips) == 3
    same = E.evaluate(gt, gt, "ssim", image_dirs=(tmp_path / "gt_video", tmp_path / "gt_video"))
    assert overall(same, "ssim") == pytest.approx(1.0) and same.exit_code == 0
    assert centre_crop(np.zeros((300, 500, 3))).shape == (256, 256, 3)


# --- reports ------------------------------------------------------------------------------------------
def test_reports_are_written_and_well_formed(tmp_path, gt_clips, face):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", {k: perturbed(m, 0.1, 6) for k, m in gt_clips.items()})
    (pred / "broken.npz").write_bytes(b"\x00" * 10)
    save_motion(gt / "broken.npz", gt_clips["a"])
    out = tmp_path / "report"
    report = E.evaluate(pred, gt, "lve,mod,ba,sid,l2,variation", baseline="still", face=face, out_dir=out,
                        max_plots=2)
    assert report.exit_code == 1

    data = json.loads((out / write.REPORT_JSON).read_text())
    assert data["convention"]["name"] == "paper" and data["units"]["lve"] == "mm"
    assert set(data["definitions"]) == {"lve", "mod", "ba", "sid", "l2", "variation"}
    assert data["rules"]["alignment"].startswith("same fps")
    assert data["problems"] == [{"clip": "broken", "kind": "unreadable", "message": data["problems"][0]["message"]}]
    assert data["overall"]["prediction"]["all"]["lve"] == pytest.approx(overall(report, "lve"))
    assert data["overall"]["ground truth"]["listening"]["variation_exp"] > 0
    assert len(data["clips"]) == 3 and data["exit_code"] == 1

    table = pd.read_csv(out / write.PER_CLIP_CSV)
    ok = table[table["status"] == "ok"]
    assert sorted(ok["source"].unique()) == ["baseline:still", "ground truth", "prediction"]
    assert len(ok[ok["source"] == "prediction"]) == 3
    assert table[table["clip"] == "broken"]["status"].iloc[0].startswith("unreadable")
    row = ok[(ok["clip"] == "a") & (ok["source"] == "prediction")].iloc[0]
    assert row["lve"] == pytest.approx(report.clips[0].values[registry.PREDICTION]["all"]["lve"])
    assert {"lve_speaking", "lve_listening", "l2_exp_listening"} <= set(table.columns)
    assert "sid" not in table.columns  # pooled metrics are not per clip

    pngs = sorted((out / write.PLOTS_DIR).glob("*.png"))
    assert [p.stem for p in pngs] == ["a", "b"]  # capped at max_plots
    for png in [*pngs, out / write.SUMMARY_PNG]:
        assert png.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    assert matplotlib.image.imread(out / write.SUMMARY_PNG).ndim == 3
    assert not list(out.rglob(".*"))  # no temp files left behind
    assert data["files"]["report_json"].endswith(write.REPORT_JSON)


def test_print_report_shows_tables(tmp_path, gt_clips):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = write_set(tmp_path / "pred", {"a": gt_clips["a"], "b": gt_clips["b"]})
    report = E.evaluate(pred, gt, "ba,psnr", baseline="mean")
    console = Console(record=True, width=200)
    E.print_report(report, console)
    text = console.export_text()
    for expected in ("overall", "ba ↑", "baseline:mean", "per clip", "unavailable metrics", "--pred-video",
                     "not evaluated: 1 ground-truth clip(s) have no prediction (c)"):
        assert expected in text, expected
    assert "image_dirs (" not in text  # reasons name the CLI flags first


def test_motion_files_round_trip_unchanged(tmp_path, gt_clips):
    """The synthetic set itself is valid motion NPZ (guards the fixtures the tests above rely on)."""
    write_set(tmp_path, gt_clips)
    back = load_motion(tmp_path / "b.npz")
    assert np.array_equal(back.motion, gt_clips["b"].motion) and (back.states == SPEAK).sum() == 16


def test_problems_go_to_stderr_and_nothing_evaluated_writes_no_report(tmp_path, gt_clips):
    gt = write_set(tmp_path / "gt", gt_clips)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "a.npz").write_bytes(b"not a zip")
    report = E.evaluate(pred, gt, "ba", out_dir=tmp_path / "report")
    assert report.clips == [] and report.exit_code == 1
    assert not (tmp_path / "report" / write.REPORT_JSON).exists()  # a 0-clip report would read like a result
    out, err = Console(record=True, width=200), Console(record=True, width=200)
    E.print_report(report, out, err_console=err)
    assert "problems" not in out.export_text()
    text = err.export_text()
    assert "a.npz" in text and "no clip could be evaluated; no report was written" in text
