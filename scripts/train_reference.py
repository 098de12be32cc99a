"""Train the reference models of ``edgeformer/zoo_weights`` on CPU, deterministically, in minutes each.

Quantization accuracy must be measured on trained weights and nothing can be downloaded, so we train small
zoo variants on data the project regenerates (:mod:`edgeformer.data.reference`): sklearn's digits (upscaled to
64 px) for two vision families, espeak-ng keywords for the audio family.

Usage::

    python scripts/train_reference.py --task all --out edgeformer/zoo_weights --seed 0

Writes ``{name}.safetensors`` + ``{name}.json`` per model (and ``keywords_heldout.npz``) into ``--out``,
shows a progress bar and prints the held-out top-1 of each model. ``--threads`` changes the float
summation order, so keep 1 (the recorded value) to reproduce the committed weights bit for bit.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from edgeformer.artifact import sha256_file, tool_versions, write_json_atomic
from edgeformer.data import reference as refdata
from edgeformer.data.audio import KWS_LABELS
from edgeformer.inputs import AudioInput
from edgeformer.models import create_model
from edgeformer.models import reference as refmodels
from edgeformer.models.audio import LogMelFrontend
from edgeformer.models.checkpoints import load_strict

console = Console()


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """One reference model: the zoo variant, its overrides and the optimisation schedule."""

    name: str
    dataset: Literal["digits", "keywords"]
    model: str
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: int = 1


DIGITS_RESOLUTION = 64  # 32 px would leave EfficientFormerV2's attention a single token per stage
RECIPES = (
    Recipe(
        name="digits_efficientformerv2",
        dataset="digits",
        model="efficientformerv2_s0",
        arch_overrides=dict(
            widths=(16, 32, 48, 96),
            depths=(1, 1, 2, 2),
            mlp_ratios=((4,), (4,), (4, 4), (4, 4)),
            attn=((False,), (False,), (False, True), (False, True)),
            num_heads=2,
            key_dim=16,
            down_num_heads=2,
            down_key_dim=16,
            resolution=DIGITS_RESOLUTION,
            num_classes=10,
            distillation=False,
        ),
        epochs=30,
    ),
    Recipe(
        name="digits_shvit",
        dataset="digits",
        model="shvit_s1",
        arch_overrides=dict(
            embed_dims=(32, 64, 96),
            depths=(1, 2, 2),
            partial_dims=(8, 16, 24),
            qk_dims=(16, 16, 16),
            mlp_ratios=((2.0,), (2.0, 2.0), (2.0, 2.0)),
            attention=((False,), (True, True), (True, True)),
            num_classes=10,
        ),
        epochs=30,
    ),
    # cluttered digits (edgeformer.data.clutter): a task small models do not saturate, for slimming
    Recipe(
        name="clutter_shvit",
        dataset="clutter",
        model="shvit_s1",
        arch_overrides=dict(
            embed_dims=(48, 96, 128),
            depths=(1, 3, 3),
            partial_dims=(16, 24, 32),
            qk_dims=(16, 16, 16),
            mlp_ratios=((2.0,), (2.0, 2.0, 2.0), (2.0, 2.0, 2.0)),
            attention=((False,), (True, True, True), (True, True, True)),
            num_classes=10,
        ),
        epochs=30,
    ),
    Recipe(
        name="clutter_efficientformerv2",
        dataset="clutter",
        model="efficientformerv2_s0",
        arch_overrides=dict(
            widths=(16, 32, 64, 128),
            depths=(1, 2, 3, 3),
            mlp_ratios=((4,), (4, 4), (4, 4, 4), (4, 4, 4)),
            attn=((False,), (False, False), (False, False, True), (False, True, True)),
            num_heads=2,
            key_dim=16,
            down_num_heads=2,
            down_key_dim=16,
            resolution=DIGITS_RESOLUTION,
            num_classes=10,
            distillation=False,
        ),
        epochs=20,  # short on purpose: slimming needs a parent that is not saturated (20 epochs: 96.3 %)
    ),
    # the zoo's audioformer_t unchanged: 12 classes, the kws12 label set, graph front-end
    Recipe(name="keywords_audioformer", dataset="keywords", model="audioformer_t", epochs=12),
)
TASKS = {
    "digits": ("digits",),
    "keywords": ("keywords",),
    "clutter": ("clutter",),
    "all": ("digits", "keywords", "clutter"),
}


def _seed_all(seed: int, name: str) -> np.random.Generator:
    # crc32, not hash(): str hashes are salted per process
    torch.manual_seed(seed + zlib.crc32(name.encode()))
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # no decay on norms, biases, layer scales and bias tables: decaying them only fights the normalisation
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit(
    model: torch.nn.Module,
    recipe: Recipe,
    epoch_batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]],
    steps_per_epoch: int,
    progress: Progress,
) -> dict[str, Any]:
    """AdamW, linear warm-up then cosine decay per step, label-smoothed cross-entropy."""
    opt = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr)
    total, warmup = recipe.epochs * steps_per_epoch, recipe.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    task = progress.add_task(recipe.name, total=total, info="")
    history = []
    start = time.perf_counter()
    model.train()
    for epoch in range(recipe.epochs):
        loss_sum, correct, seen = 0.0, 0, 0
        for xb, yb in epoch_batches(epoch):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
            progress.update(task, advance=1, info=f"epoch {epoch + 1}/{recipe.epochs} loss {loss_sum / seen:.3f}")
        history.append({"epoch": epoch + 1, "loss": round(loss_sum / seen, 4), "train_top1": round(correct / seen, 4)})
    model.eval()
    return {"seconds": round(time.perf_counter() - start, 1), "history": history}


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 128) -> float:
    """Top-1 of ``model`` (eval mode, fp32) on ``x``."""
    model.eval()
    pred = np.concatenate(
        [model(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() for i in range(0, len(x), batch)]
    )
    return float((pred == y).mean())


# --- digits ------------------------------------------------------------------------------------------
def _augment_digits(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (±10°, scale 0.9-1.1, shift ±10 %) on the [-1, 1] images; the background stays -1."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = 0.9 + 0.2 * torch.rand(n, generator=gen)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.2  # grid units: the image spans [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def train_digits(recipe: Recipe, seed: int, progress: Progress) -> tuple[torch.nn.Module, dict[str, Any]]:
    rng = _seed_all(seed, recipe.name)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    x, y = refdata.digits_split("train", resolution=DIGITS_RESOLUTION)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = create_model(recipe.model, **recipe.arch_overrides)
    steps = math.ceil(len(y) / recipe.batch_size)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.from_numpy(rng.permutation(len(y)))
        for i in range(steps):
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            yield _augment_digits(xt[idx], gen), yt[idx]

    record = fit(model, recipe, batches, steps, progress)
    xh, yh = refdata.digits_split("heldout", resolution=DIGITS_RESOLUTION)
    record["heldout"] = (evaluate(model, xh, yh), len(yh))
    record["train_samples"] = len(y)
    dataset = {
        "name": "digits",
        "source": f"sklearn.datasets.load_digits (scikit-learn {_version('scikit-learn')}): 1797 8x8 images",
        "ink": "0..16 -> round(v * 255 / 16) as an 8-bit grayscale image",
        "split": f"stratified, {refdata.DIGITS_HELDOUT_FRACTION:.0%} held out per class, "
        f"numpy default_rng({refdata.SPLIT_SEED}) permutation per class in class order",
        "preprocessing": "edgeformer.data.images.preprocess_image with the recorded input (bilinear 8 -> "
        f"{DIGITS_RESOLUTION} px, RGB, (x - 0.5) / 0.5)",
        "train_augmentation": "random affine: rotation ±10°, scale 0.9-1.1, shift ±10 %, background kept",
        "train_samples": len(y),
        "heldout_samples": len(yh),
    }
    return model, {"record": record, "dataset": dataset, "input": refdata.digits_input(DIGITS_RESOLUTION)}


def train_clutter(recipe: Recipe, seed: int, progress: Progress) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Cluttered digits: new clutter every epoch (its own augmentation); held-out clutter is fixed."""
    from edgeformer.data import clutter

    rng = _seed_all(seed, recipe.name)
    model = create_model(recipe.model, **recipe.arch_overrides)
    _, y = refdata.digits_images("train")
    steps = math.ceil(len(y) / recipe.batch_size)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, labels = clutter.clutter_split("train", epoch=epoch)
        order = rng.permutation(len(labels))
        for i in range(steps):
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            yield torch.from_numpy(x[idx]), torch.from_numpy(labels[idx])

    record = fit(model, recipe, batches, steps, progress)
    xh, yh = clutter.clutter_split("heldout")
    record["heldout"] = (evaluate(model, xh, yh), len(yh))
    record["train_samples"] = len(y)
    dataset = {
        "name": "clutter",
        "source": "edgeformer.data.clutter over the digits split (sklearn.datasets.load_digits)",
        "render": f"one digit at 30-47 px plus {clutter.FRAGMENTS} half-digit fragment(s) at 0.25-0.5 contrast, "
        f"Gaussian noise std {clutter.NOISE_STD}, {clutter.RESOLUTION} px, [-1, 1]",
        "train_augmentation": "new clutter every epoch (numpy default_rng([split seed, 2 + epoch]))",
        "heldout": "fixed clutter (numpy default_rng([split seed, 1]))",
        "train_samples": len(y),
        "heldout_samples": len(yh),
    }
    return model, {"record": record, "dataset": dataset, "input": clutter.clutter_input()}


# --- keywords ----------------------------------------------------------------------------------------
def _spec_augment(feats: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masks: two bands of up to 8 mels and two spans of up to 10 frames, per clip."""
    out = feats.clone()
    n, _, n_mels, frames = out.shape
    fill = out.mean(dim=(2, 3), keepdim=True)
    for size, axis_len, axis in ((8, n_mels, 2), (10, frames, 3)):
        for _ in range(2):
            width = torch.randint(0, size + 1, (n,), generator=gen)
            start = (torch.rand(n, generator=gen) * (axis_len - width)).long()
            pos = torch.arange(axis_len)
            mask = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])  # (n, axis_len)
            shape = (n, 1, axis_len, 1) if axis == 2 else (n, 1, 1, axis_len)
            out = torch.where(mask.reshape(shape), fill, out)
    return out


def synthesize_keywords(progress: Progress, out: Path) -> dict[str, Any]:
    """Synthesize both splits with espeak-ng; write the held-out clips to ``out``."""
    plans = {split: refdata.keyword_plan(split) for split in ("train", "heldout")}
    task = progress.add_task("espeak-ng", total=sum(len(p) for p, _ in plans.values()), info="synthesizing")
    clips = {}
    for split, (plan, labels) in plans.items():
        clean = refdata.synthesize_all(plan, workers=2, on_done=lambda k: progress.update(task, advance=k))
        clips[split] = refdata.with_silence(clean, labels, split)
        if split == "heldout":
            write_clips(out / refdata.KEYWORDS_HELDOUT_FILE, *clips[split], plan)
    return clips


def write_clips(path: Path, clips: Sequence[np.ndarray], labels: np.ndarray, plan: Sequence[refdata.Utterance]) -> None:
    """Save clean µ-law clips (concatenated, with offsets) and their recipe as a compressed npz, atomically.

    The layout is what :func:`edgeformer.data.reference.read_clips` reads: ``mulaw``, ``offsets``, ``labels``,
    ``sample_rate`` (16000), plus one array per :class:`~edgeformer.data.reference.Utterance` field.
    """
    offsets = np.cumsum([0, *(len(c) for c in clips)]).astype(np.int64)
    recipe = list(plan) + [refdata.Utterance("", "", 0, 0)] * (len(clips) - len(plan))  # silence entries
    fields = {f.name: np.array([getattr(u, f.name) for u in recipe]) for f in dataclasses.fields(refdata.Utterance)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(
            tmp,
            mulaw=np.concatenate(clips).astype(np.uint8),
            offsets=offsets,
            labels=labels,
            sample_rate=np.int64(16000),
            **fields,
        )
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; this is package data
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def train_keywords(
    recipe: Recipe, seed: int, progress: Progress, clips: dict[str, Any], out: Path
) -> tuple[torch.nn.Module, dict[str, Any]]:
    rng = _seed_all(seed, recipe.name)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    clean, labels = clips["train"]
    spec = AudioInput()
    frontend = LogMelFrontend(spec)
    # train on host-side log-mels (SpecAugment needs them); the weights are identical for the graph front-end,
    # whose STFT/mel bases are non-persistent buffers rebuilt from the spec
    model = create_model(recipe.model, frontend=dataclasses.replace(spec, frontend="host"), **recipe.arch_overrides)
    keyword_idx = np.flatnonzero(labels < 10)
    unknown_idx = np.flatnonzero(labels == refdata.UNKNOWN)
    silence_idx = np.flatnonzero(labels == refdata.SILENCE)
    per_class = len(keyword_idx) // 10
    epoch_size = len(keyword_idx) + 2 * per_class
    steps = math.ceil(epoch_size / recipe.batch_size)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # every keyword clip, and as many _unknown_ and _silence_ clips as one keyword has: balanced classes
        pick = np.concatenate([keyword_idx, rng.choice(unknown_idx, per_class, replace=False), silence_idx])
        pick = rng.permutation(pick)
        wave = refdata.render_clips([clean[i] for i in pick], labels[pick], rng, train=True)
        with torch.no_grad():
            feats = frontend(torch.from_numpy(wave))
        for i in range(steps):
            sl = slice(i * recipe.batch_size, (i + 1) * recipe.batch_size)
            yield _spec_augment(feats[sl], gen), torch.from_numpy(labels[pick[sl]])

    record = fit(model, recipe, batches, steps, progress)
    graph_model = create_model(recipe.model, **recipe.arch_overrides)
    load_strict(graph_model, model.state_dict(), source=f"{recipe.name} (trained with the host front-end)")
    xh, yh = refdata.render_split(*clips["heldout"], "heldout")
    record["heldout"] = (evaluate(graph_model, xh, yh), len(yh))
    record["train_samples"] = len(labels)
    npz = out / refdata.KEYWORDS_HELDOUT_FILE
    dataset = {
        "name": "keywords",
        "synthesizer": refdata.espeak_version(),
        "words": {"keywords": list(refdata.KEYWORDS), "unknown": list(refdata.UNKNOWN_WORDS)},
        "voices": {
            "train_accents": list(refdata.TRAIN_ACCENTS),
            "train_timbres": list(refdata.TRAIN_TIMBRES),
            "heldout_accents": list(refdata.HELDOUT_ACCENTS),
            "heldout_timbres": list(refdata.HELDOUT_TIMBRES),
            "heldout_rule": "accent or timbre never used in training",
        },
        "speeds": {"train": list(refdata.TRAIN_SPEEDS), "heldout": list(refdata.HELDOUT_SPEEDS)},
        "pitches": {"train": list(refdata.TRAIN_PITCHES), "heldout": list(refdata.HELDOUT_PITCHES)},
        "clips": "espeak-ng 22050 Hz -> resample_poly to 16 kHz, trimmed, peak-normalised, 8-bit mu-law",
        "render": "1 s window, random offset, noise (white/pink/brown/hum) at 10-30 dB SNR (train 5-30 dB), "
        "peak -24..-1 dBFS; _silence_ = noise at -70..-20 dB; train adds speed x0.9-1.1, one-pole colouring, "
        "SpecAugment",
        "plan": f"edgeformer.data.reference.keyword_plan(split, seed={refdata.SPLIT_SEED})",
        "heldout_file": npz.name,
        "heldout_sha256": sha256_file(npz),
        "train_samples": len(labels),
        "heldout_samples": len(yh),
        "class_balance": "per epoch: every keyword clip, plus as many _unknown_ and _silence_ clips as one keyword",
    }
    return graph_model, {"record": record, "dataset": dataset, "input": spec}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


# --- main --------------------------------------------------------------------------------------------
def save_reference(state: Mapping[str, Any], meta: refmodels.ReferenceMeta, root: str | Path) -> Path:
    """Write ``{name}.safetensors`` then ``{name}.json`` atomically; returns the sidecar path.

    ``meta.weights``/``weights_sha256`` are filled in here from the file actually written.
    """
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    weights = root / f"{meta.name}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=root, prefix=f".{weights.name}.")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; these are package data
        os.replace(tmp, weights)
    finally:
        Path(tmp).unlink(missing_ok=True)
    meta = dataclasses.replace(meta, weights=weights.name, weights_sha256=sha256_file(weights))
    d = meta.to_dict()
    d["training"] = {**d["training"], "tool_versions": tool_versions()}
    sidecar = root / f"{meta.name}.json"
    write_json_atomic(sidecar, d)
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="all")
    parser.add_argument("--out", type=Path, default=Path("edgeformer/zoo_weights"))
    parser.add_argument("--seed", type=int, default=0)
    # one intra-op thread: deterministic, and on a shared 2-core machine two threads measured 7x slower per step
    # (OpenMP workers spin against the other processes); the recorded weights need the recorded thread count
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs (quick checks)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    command = f"python scripts/train_reference.py --task {args.task} --out {args.out} --seed {args.seed}"
    command += f" --threads {args.threads}" + (f" --epochs {args.epochs}" if args.epochs else "")
    datasets = TASKS[args.task]
    recipes = [dataclasses.replace(r, epochs=args.epochs or r.epochs) for r in RECIPES if r.dataset in datasets]
    results = []
    columns = (
        TextColumn("{task.description:<26}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        clips = synthesize_keywords(progress, args.out) if "keywords" in datasets else None
        for recipe in recipes:
            if recipe.dataset == "digits":
                model, info = train_digits(recipe, args.seed, progress)
            elif recipe.dataset == "clutter":
                model, info = train_clutter(recipe, args.seed, progress)
            else:
                model, info = train_keywords(recipe, args.seed, progress, clips, args.out)
            record = info["record"]
            accuracy, n_heldout = record["heldout"]
            params = sum(p.numel() for p in model.parameters())
            labels = refdata.DIGIT_LABELS if recipe.dataset in ("digits", "clutter") else KWS_LABELS
            meta = refmodels.ReferenceMeta(
                name=recipe.name,
                model=recipe.model,
                arch_overrides=recipe.arch_overrides,
                labels=labels,
                label_set="digits10" if recipe.dataset in ("digits", "clutter") else "kws12",
                input=info["input"],
                dataset=info["dataset"],
                seed=args.seed,
                command=command,
                heldout_accuracy=round(accuracy, 6),
                heldout_samples=n_heldout,
                training={
                    **{
                        k: v
                        for k, v in dataclasses.asdict(recipe).items()
                        if k not in ("name", "model", "arch_overrides")
                    },
                    "optimizer": "AdamW, no decay on 1-D params; linear warm-up then cosine per step",
                    "threads": args.threads,
                    "seconds": record["seconds"],
                    "params": params,
                    "history": record["history"],
                },
                weights="",
                weights_sha256="",
            )
            sidecar = save_reference(model.state_dict(), meta, args.out)
            results.append((recipe, params, accuracy, n_heldout, record, sidecar))
            console.log(f"{recipe.name}: held-out top-1 {accuracy:.2%} on {n_heldout} ({record['seconds']:.0f} s)")
    table = Table(title=f"reference models -> {args.out}")
    for col in ("name", "model", "params", "train", "held-out", "top-1", "train time", "weights"):
        table.add_column(col)
    for recipe, params, accuracy, n_heldout, record, sidecar in results:
        weights = sidecar.with_suffix(".safetensors")
        table.add_row(
            recipe.name,
            recipe.model,
            f"{params / 1e6:.3f} M",
            str(record["train_samples"]),
            str(n_heldout),
            f"{accuracy:.2%}",
            f"{record['seconds']:.0f} s",
            f"{weights.stat().st_size / 1e6:.2f} MB",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    from edgeformer.errors import EdgeformerError

    try:
        sys.exit(main())
    except EdgeformerError as e:  # missing espeak-ng or scikit-learn: one line that says what to install
        console.print(f"[red]error:[/red] {e}")
        sys.exit(e.exit_code)
