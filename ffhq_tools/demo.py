"""`ffhq-tools demo`: the whole suite end to end, offline, on a CPU, in a few minutes.

    from ffhq_tools.demo import DemoOptions, run_demo
    result = run_demo(DemoOptions(quick=True))

Stages, each in the numbered run folder `runs/NNNNN-demo/`:
photos (skimage's astronaut and geometric / photometric variants, or --photos DIR) -> align
(FFHQ procedure, dlib landmarks) -> pack (HDF5) -> train (a tiny StyleGAN2) -> generate (grid and
style-mixing figure) -> score (every registered metric whose weights are present; the others are
listed as skipped with the command that fetches them; offline, dlib's face-descriptor network
gives a Frechet distance and precision/recall in *its* feature space) -> report (leaderboard CSV
and a self-contained HTML report). A stage that fails is reported with its error; the stages
that need its output are reported as not run. Nothing is faked.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ffhq_tools.errors import FfhqToolsError


@dataclass
class DemoOptions:
    outdir: Path = Path("runs")
    photos: Path | None = None
    quick: bool = False
    align_size: int | None = None   # aligned output size (default 64)
    resolution: int | None = None   # training resolution (default 32, quick 16)
    kimg: float | None = None       # training length (default 16, quick 0.064)
    num_gen: int | None = None      # generated images per final metric (default 128, quick 24)
    snapshot_num_gen: int | None = None  # per metric at each snapshot (default 32, quick 8)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    resume: Path | None = None      # an interrupted demo's run folder: continue it
    dualstylegan: bool = False      # also run DualStyleGAN's recipe (ffhq_tools.demo_dualstylegan)
    weights: tuple[str, ...] = ()   # NAME=PATH files for registry entries (VGG16 / VGG19)

    def resolved(self) -> DemoOptions:
        quick = self.quick
        return DemoOptions(
            outdir=Path(self.outdir), photos=Path(self.photos) if self.photos else None,
            quick=quick, align_size=self.align_size or 64,
            resolution=self.resolution or (16 if quick else 32),
            kimg=self.kimg if self.kimg is not None else (0.064 if quick else 16.0),
            num_gen=self.num_gen or (24 if quick else 128),
            snapshot_num_gen=self.snapshot_num_gen or (8 if quick else 32), seed=self.seed,
            device=self.device, progress=self.progress, resume=self.resume,
            dualstylegan=self.dualstylegan, weights=tuple(self.weights))


@dataclass
class StageResult:
    name: str
    status: str  # "done", "failed" or "not run"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoState:
    """What the stages produce, read by later stages and by the report."""

    run_dir: Path
    options: DemoOptions
    photos: list[Path] = field(default_factory=list)
    aligned_dir: Path | None = None
    aligned: list[Path] = field(default_factory=list)
    align_rejects: list[str] = field(default_factory=list)
    dataset: Path | None = None
    train_dir: Path | None = None
    snapshot: Path | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    board: Path | None = None
    skipped_metrics: list[dict] = field(default_factory=list)  # metric, weights, fix
    failed_metrics: list[dict] = field(default_factory=list)   # metric, error
    stages: list[StageResult] = field(default_factory=list)


STAGE_NEEDS = {
    "photos": (), "align": ("photos",), "pack": ("align",), "train": ("pack",),
    "generate": ("train",), "score": ("train",), "dualstylegan": ("train",),
}


def stage_names(options: DemoOptions) -> list[str]:
    return [n for n in STAGE_NEEDS if n != "dualstylegan" or options.dualstylegan]


def _run_stage(state: DemoState, name: str, fn) -> None:
    blocked = [n for n in STAGE_NEEDS[name]
               if not any(s.name == n and s.status == "done" for s in state.stages)]
    if blocked:
        state.stages.append(StageResult(name, "not run", 0.0,
                                        f"needs the output of: {', '.join(blocked)}"))
        print(f"[demo] {name}: not run (needs {', '.join(blocked)})", flush=True)
        return
    print(f"[demo] {name} ...", flush=True)
    start = time.perf_counter()
    try:
        detail = fn(state) or ""
        status = "done"
    except Exception as exc:  # the stage boundary: record, report, let the others go on
        detail = f"{type(exc).__name__}: {exc}"
        status = "failed"
        traceback.print_exc()
    seconds = time.perf_counter() - start
    state.stages.append(StageResult(name, status, round(seconds, 1), detail))
    print(f"[demo] {name}: {status} in {seconds:.1f} s {('- ' + detail) if detail else ''}",
          flush=True)


def _stored_options(run_dir: Path, progress: bool) -> DemoOptions:
    """The frozen options of an interrupted demo (its run folder's options.json)."""
    from ffhq_tools.runs import read_options

    stored = read_options(run_dir)
    known = {f for f in DemoOptions.__dataclass_fields__}
    unknown = sorted(set(stored) - known)
    if unknown or "quick" not in stored:
        raise FfhqToolsError(f"--resume {run_dir}: not a demo run folder (options.json has "
                             f"{', '.join(unknown) or 'no demo options'})")
    stored["weights"] = tuple(stored.get("weights", ()))
    for name in ("outdir", "photos"):
        stored[name] = Path(stored[name]) if stored.get(name) not in (None, "None") else None
    stored.update(resume=run_dir, progress=progress)
    return DemoOptions(**stored).resolved()


def run_demo(options: DemoOptions) -> DemoState:
    """Run every stage; returns the state (stages with status, outputs, report path).

    With `options.resume` (a demo run folder) the interrupted run continues in place with its
    frozen options: alignment skips finished photos, packing resumes, training continues from
    its newest snapshot and scoring skips results already on the leaderboard.
    """
    from ffhq_tools.runs import capture_log, create_run_dir, write_options
    from ffhq_tools.runtime import seed_everything

    if options.resume:
        run_dir = Path(options.resume)
        options = _stored_options(run_dir, options.progress)
    else:
        options = options.resolved()
        run_dir = create_run_dir(options.outdir, "demo-quick" if options.quick else "demo")
        stored = {k: v for k, v in asdict(options).items() if k != "resume"}
        write_options(run_dir, json.loads(json.dumps(stored, default=str)))
    state = DemoState(run_dir, options)
    seed_everything(options.seed)
    from ffhq_tools import demo_stages as stages

    with capture_log(run_dir):
        print(f"[demo] {'resuming' if options.resume else 'run folder'} {run_dir}", flush=True)
        total = time.perf_counter()
        for name in stage_names(options):
            _run_stage(state, name, getattr(stages, f"stage_{name}"))
        report = stages.write_demo_report(state, time.perf_counter() - total)
        print(f"[demo] report: {report}", flush=True)
        print(f"[demo] leaderboard: {state.board}", flush=True)
    return state


def _demo(args) -> int:
    state = run_demo(DemoOptions(
        outdir=Path(args.outdir), photos=Path(args.photos) if args.photos else None,
        quick=args.quick, resolution=args.res, kimg=args.kimg, num_gen=args.num_gen,
        seed=args.seed, device=args.device, progress=not args.no_progress,
        resume=Path(args.resume) if args.resume else None, dualstylegan=args.dualstylegan,
        weights=tuple(args.weights or ())))
    failed = [s.name for s in state.stages if s.status != "done"]
    if failed:
        print(f"demo: stages not completed: {', '.join(failed)} (see {state.run_dir}/report.html)")
        return 1
    return 0


def add_verbs(verbs) -> None:
    from ffhq_tools.runtime import add_device_flag

    p = verbs.add_parser("demo", help="end-to-end demo: align, pack, train, generate, score, "
                                      "report (offline, CPU, a few minutes)")
    p.add_argument("--outdir", default="runs", help="parent of the numbered run folder")
    p.add_argument("--photos", help="a folder of your own photos instead of the bundled ones")
    p.add_argument("--quick", action="store_true", help="reduced mode (16px, ~2-3 minutes)")
    p.add_argument("--res", type=int, help="training resolution (default 32; quick 16)")
    p.add_argument("--kimg", type=float,
                   help="training length in kimg (default 16; quick 0.064)")
    p.add_argument("--num-gen", type=int, help="generated images per metric")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted demo in its run folder (its options are kept)")
    p.add_argument("--dualstylegan", action="store_true",
                   help="also run DualStyleGAN's recipe on the demo's generator (style set, "
                        "G', destylize, pretrain, finetune; needs VGG16 and VGG19 weights)")
    p.add_argument("--weights", action="append", metavar="NAME=PATH",
                   help="a file for a registry entry (vgg16, vgg19), repeatable")
    add_device_flag(p)
    p.set_defaults(func=_demo, device="cpu")
