"""Distilling a student for an ONNX teacher on unlabelled footage: no annotation anywhere.

A user has recordings, not labels. The teacher makes every target itself: its split tensor (head
distillation: the per-width decoders must restore it, Entropic Student's first stage) and its raw
outputs (output distillation through the frozen tail: class scores and box distributions). The rate
term per width is the entropy bottleneck's, as in `trainer.py`, with the sandwich rule over widths.

The teacher runs once per training view, when the cache is built (`FeatureCache`, on ONNX Runtime),
so an epoch reads the split tensors and the teacher's outputs from disk instead of running the
front again. Views are the frames of every footage source (`data/footage.py`: image folders,
videos, camera bags), every `frame_stride`-th of a clip, each also mirrored, and photos (single
images) also as `crops_per_photo` random crops, so a few dozen photos give varied object scales.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ..config import ModelConfig, TrainConfig, to_dict
from ..data.footage import IMAGE_SUFFIXES, iter_frames, source_kind
from ..errors import CheckpointError, ConfigError, FootageError
from ..models.checkpoint import save_checkpoint
from ..models.context_latent_codec import CODING_BUFFERS, TABLE_BUFFERS
from ..models.pca import PCA, positions, subsample
from ..models.split_model import SplitModel
from ..onboard.preprocess import model_input_array
from .trainer import resolve_device, sandwich_widths, seed_everything

CACHE_VERSION = 1


def footage_views(roots: list[str], frame_stride: int, crops_per_photo: int, seed: int, max_views: int = 0):
    """RGB training views of the footage under `roots` (each a source, or a folder of sources)."""
    rng = np.random.default_rng(seed)
    count = 0
    for src in (s for root in roots for s in _sources(Path(root))):
        photo = src.is_file() and src.suffix.lower() in IMAGE_SUFFIXES
        folder_of_photos = src.is_dir() and source_kind(src) == "images"
        stride = 1 if photo or folder_of_photos else frame_stride
        for rgb in iter_frames(src, stride=stride):
            crops = crops_per_photo if photo or folder_of_photos else 0
            for view in [rgb, *(_random_crop(rgb, rng) for _ in range(crops))]:
                for v in (view, view[:, ::-1]):
                    yield np.ascontiguousarray(v)
                    count += 1
                    if max_views and count >= max_views:
                        return


def _sources(path: Path) -> list[Path]:
    """The footage sources under `path`: itself when it is one (a clip, a photo, a bag, a folder of
    photos), else those of its entries (a folder of clips and photo folders), in name order."""
    if not path.exists():
        raise FootageError(f"footage not found: {path}")
    if path.is_file() or source_kind(path) == "bag" or any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file()):
        return [path]
    found = [s for p in sorted(path.iterdir()) if not p.name.startswith(".") for s in _sources(p)]
    if not found:
        raise FootageError(f"no footage in {path}")
    return found


def _random_crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of 30-80% of the area, aspect ratio 3:4 to 4:3: objects at other scales than the photo's."""
    h, w = rgb.shape[:2]
    area = rng.uniform(0.3, 0.8) * h * w
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    ch, cw = min(h, int(round(math.sqrt(area / ratio)))), min(w, int(round(math.sqrt(area * ratio))))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return rgb[y:y + ch, x:x + cw]


class FeatureCache:
    """The teacher's split tensors and raw outputs for every training view, as float16 .npy files."""

    def __init__(self, folder: Path):
        self.folder = folder
        meta = json.loads((folder / "cache.json").read_text())
        self.meta = meta
        self.features = np.load(folder / "features.npy", mmap_mode="r", allow_pickle=False)
        self.outputs = {name: np.load(folder / f"out_{i}.npy", mmap_mode="r", allow_pickle=False)
                        for i, name in enumerate(meta["outputs"])}

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def build(cls, root: Path, cfg: ModelConfig, tc: TrainConfig, progress: bool) -> "FeatureCache":
        """Run the teacher (ONNX Runtime, front and tail) on every view once, into a folder under `root`
        named by what the views and the teacher are; reuse a complete cache of the same (another run's too)."""
        import onnx
        import onnxruntime as ort

        from ..teachers.split import split_model

        spec = cfg.teacher_spec()
        key = {"version": CACHE_VERSION, "teacher_sha256": cfg.teacher_sha256, "split": spec.split.tensor,
               "data": tc.train_roots(), "frame_stride": tc.frame_stride, "crops_per_photo": tc.crops_per_photo,
               "seed": tc.seed, "max_views": tc.max_train_images}
        folder = root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        meta_path = folder / "cache.json"
        if meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key:
            return cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        parts = split_model(onnx.load(str(spec.model_path)), spec.split.tensor)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = tc.num_threads
        front = ort.InferenceSession(parts.front.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        tail = ort.InferenceSession(parts.tail.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in tail.get_outputs()]
        feats, outs = [], {n: [] for n in names}
        views = footage_views(tc.train_roots(), tc.frame_stride, tc.crops_per_photo, tc.seed, tc.max_train_images)
        for rgb in tqdm(views, desc="teacher on the footage (cache)", unit="view", disable=not progress):
            x = model_input_array(rgb, cfg)[None]
            f = front.run(None, {front.get_inputs()[0].name: x})[0]
            feats.append(f[0].astype(np.float16))
            for n, o in zip(names, tail.run(names, {tail.get_inputs()[0].name: f})):
                outs[n].append(o[0].astype(np.float16))
        if not feats:
            raise FootageError(f"no frames in {tc.train_roots()}")
        np.save(folder / "features.npy", np.stack(feats))
        for i, n in enumerate(names):
            np.save(folder / f"out_{i}.npy", np.stack(outs[n]))
        meta_path.write_text(json.dumps({"key": key, "outputs": names, "views": len(feats)}))
        return cls(folder)


def output_distillation(student: dict, teacher: dict, score_outputs: tuple[str, ...]) -> torch.Tensor:
    """How far the tail's outputs on the restored features are from its outputs on the teacher's own.

    Score outputs (probabilities after the graph's sigmoid) by binary cross-entropy against the
    teacher's scores as soft targets, summed over classes; every other output (box regressions or
    distributions) by squared error, weighted per point by the teacher's best class score there, so
    boxes count where objects are.
    """
    loss = 0.0
    for name, s in student.items():
        t = teacher[name]
        if name in score_outputs:
            loss = loss + F.binary_cross_entropy(s.float().clamp(1e-6, 1 - 1e-6), t) * t.shape[-1]
        else:
            w = teacher_weight(teacher, name, score_outputs)
            loss = loss + ((s.float() - t) ** 2 * w).sum() / (w.sum().clamp(min=1.0) * t.shape[-1])
    return loss


def teacher_weight(teacher: dict, name: str, score_outputs: tuple[str, ...]) -> torch.Tensor:
    """Per-point weight of a regression output: the teacher's best class score at the same points (the
    score output of the same number of points), else 1."""
    n = teacher[name].shape[1]
    for s in score_outputs:
        if teacher[s].shape[1] == n:
            return teacher[s].float().amax(dim=-1, keepdim=True)
    return torch.ones_like(teacher[name][..., :1]).float()


def _process_group(device: torch.device) -> tuple[int, int]:
    """(rank, world size): one process, or several started by `torchrun --nproc_per_node N` (gloo on the
    CPU, NCCL on CUDA, one GPU per process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def _what_is_trained(train_config: dict | None) -> dict | None:
    """A train config without what only says how long and where to run (a resume may change those)."""
    free = ("epochs", "num_threads", "num_workers", "device", "eval_every")
    return None if train_config is None else {k: v for k, v in train_config.items() if k not in free}


class DistillTrainer:
    """Trains a student of an ONNX teacher on footage; resumable from `output_dir/last.pt`."""

    def __init__(self, mc: ModelConfig, tc: TrainConfig, progress: bool = True, log=print):
        self.mc, self.tc, self.progress, self.log = mc.validate(), tc.validate(), progress, log
        if not mc.teacher:
            raise ConfigError("stage 'distill' needs model.teacher (an ONNX teacher)")
        self.out = Path(tc.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(tc.num_threads)
        self.device = resolve_device(tc.device)
        seed_everything(tc.seed)
        self.rank, self.world = _process_group(self.device)
        if self.rank == 0:  # one process runs the teacher; the others read what it wrote
            self.cache = FeatureCache.build(self.out.parent / "distill_cache", mc, tc, progress)
        if self.world > 1:
            dist.barrier()
            self.cache = FeatureCache.build(self.out.parent / "distill_cache", mc, tc, progress)
            self.progress = progress and self.rank == 0
        self.model = SplitModel(mc)
        self.score_outputs = tuple(n for n in self.cache.outputs if n in mc.teacher_spec().head.score_outputs)
        self.scale = float(np.sqrt(np.mean(np.square(self.cache.features[: min(64, len(self.cache))].astype(np.float32)))))
        if tc.student_init:
            self._init_student(tc.student_init)
        elif tc.pca_init and not self.last_path.is_file():
            self._init_pca()
        self.lambdas = tc.rate_weights(len(mc.widths))
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        density = [p for n, p in named if n.startswith("latent_codecs.") and not n.endswith("quantiles")]
        params = [{"params": [p for n, p in named if not n.startswith("latent_codecs.")]},
                  {"params": density, "lr": tc.entropy_lr or tc.lr, "weight_decay": 0.0}]
        self.model.to(self.device)
        self.opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.aux_opt = torch.optim.Adam([p for n, p in named if n.endswith("quantiles")], lr=tc.aux_lr)
        self.steps_per_epoch = math.ceil(len(self.cache) / tc.batch_size)
        total = self.steps_per_epoch * tc.epochs
        warmup = min(100, total // 10 + 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
        self.epoch, self.history = 0, []
        self._resume()

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def _init_student(self, path: str) -> None:
        from ..models.checkpoint import load_model

        init, fp = load_model(path, kind="student")
        if to_dict(init.cfg) != to_dict(self.mc):
            raise CheckpointError(f"student_init {path} has another model configuration than this run")
        self.model.load_state_dict({k: v for k, v in init.state_dict().items()
                                    if k.rsplit(".", 1)[-1] not in CODING_BUFFERS}, strict=False)
        self.log(f"initialised student from {path} (fingerprint {fp[:16]})")

    def _init_pca(self) -> None:
        n = min(self.tc.pca_init, len(self.cache))
        idx = np.linspace(0, len(self.cache) - 1, n).round().astype(int)
        pca = PCA.fit(subsample([positions(torch.from_numpy(self.cache.features[i].astype(np.float32))) for i in idx]))
        step = self.tc.pca_step * pca.rms()
        enc = self.model.encoder
        enc.init_from_pca(pca.mean, pca.basis, step)
        if self.mc.decoder_linear:  # each width's decoder starts as the PCA reconstruction of its channels
            for i, c in enumerate(enc.bottleneck_channels):
                self.model.decoder_for(i).init_linear(pca.basis[:c].T.float() * step, pca.mean.float())
        kept = pca.explained()[enc.proj.out_channels - 1]
        self.log(f"projection initialised from PCA of {n} views: {enc.proj.out_channels} components "
                 f"({kept:.1%} of the variance), step {step:.4f}")

    def _resume(self) -> None:
        if not self.last_path.is_file():
            return
        state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        if state.get("model_config") != to_dict(self.mc) or _what_is_trained(state.get("train_config")) \
                != _what_is_trained(to_dict(self.tc)):
            raise CheckpointError(f"{self.last_path} is from another configuration; use a new output_dir")
        self.model.load_state_dict(state["model"], strict=False)
        self.opt.load_state_dict(state["opt"])
        self.aux_opt.load_state_dict(state["aux_opt"])
        self.sched.load_state_dict(state["sched"])
        self.epoch, self.history = state["epoch"], json.loads(state["history"])
        self.log(f"resumed from {self.last_path} after epoch {self.epoch}")

    def _save_state(self) -> None:
        state = {"model": {k: v for k, v in self.model.state_dict().items() if k.rsplit(".", 1)[-1] not in TABLE_BUFFERS},
                 "opt": self.opt.state_dict(), "aux_opt": self.aux_opt.state_dict(), "sched": self.sched.state_dict(),
                 "epoch": self.epoch, "history": json.dumps(self.history), "model_config": to_dict(self.mc),
                 "train_config": to_dict(self.tc)}
        tmp = self.last_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.last_path)

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = torch.from_numpy(self.cache.features[np.sort(idx)].astype(np.float32)).to(self.device)
        outs = {n: torch.from_numpy(a[np.sort(idx)].astype(np.float32)).to(self.device)
                for n, a in self.cache.outputs.items()}
        return f, outs

    def _step(self, f: torch.Tensor, teacher_out: dict, rng: random.Random) -> dict:
        m, tc = self.model, self.tc
        h, w = m.cfg.input_size
        pixels = f.shape[0] * h * w
        self.opt.zero_grad(set_to_none=True)
        stats = {"loss": 0.0, "kd": 0.0, "bpp": 0.0, "out": 0.0}
        widths = sandwich_widths(m.widths, tc.random_widths, rng)
        for wi in widths:
            m._state.index = wi
            y = m.encoder.project(f)
            out = m.latent_codecs[wi](y)
            y_hat, likelihoods = out["y_hat"], out["likelihoods"]["y"]
            if tc.decoder_input == "rounded":
                medians = m.latent_codecs[wi].medians[:, None, None]
                y_hat = y + (torch.round(y - medians) + medians - y).detach()
            z_hat = m.decoder_for(wi)(y_hat)
            kd = F.mse_loss(z_hat / self.scale, f / self.scale)
            bpp = -torch.log2(likelihoods).sum() / pixels
            loss = tc.kd_weight * kd + self.lambdas[wi] * bpp
            if tc.task_weight > 0:
                out = output_distillation(m.teacher.back(z_hat), teacher_out, self.score_outputs)
                loss = loss + tc.task_weight * out
                stats["out"] += out.item() / len(widths)
            (loss / len(widths)).backward()
            stats[f"bpp_w{wi}"] = bpp.item()
            stats["loss"] += loss.item() / len(widths)
            stats["kd"] += kd.item() / len(widths)
            stats["bpp"] += bpp.item() / len(widths)
        self._average_gradients(self.opt)
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 10.0)
        self.opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        aux = m.aux_loss()
        aux.backward()
        self._average_gradients(self.aux_opt)
        self.aux_opt.step()
        stats["aux"] = aux.item()
        m._state.index = len(m.widths) - 1
        return stats

    def _average_gradients(self, opt: torch.optim.Optimizer) -> None:
        """Data parallelism over processes (torchrun): every process applies the mean of all their
        gradients, so the weights stay identical everywhere (what DistributedDataParallel does)."""
        if self.world == 1:
            return
        for p in (p for g in opt.param_groups for p in g["params"]):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.world

    def run(self) -> Path:
        """Train the remaining epochs; write `model.pt` (fp16, with CDF tables) and `log.jsonl`."""
        tc = self.tc
        while self.epoch < tc.epochs:
            rng = random.Random(tc.seed * 1000 + self.epoch)
            order = np.random.default_rng(tc.seed * 1000 + self.epoch).permutation(len(self.cache))
            self.model.train()
            sums: dict[str, float] = {}
            t0 = time.time()
            batches = [order[i:i + tc.batch_size] for i in range(0, len(order), tc.batch_size)]
            batches = batches[self.rank: len(batches) - len(batches) % self.world: self.world]  # same count everywhere
            bar = tqdm(batches, desc=f"distill epoch {self.epoch + 1}/{tc.epochs}", disable=not self.progress)
            for n, idx in enumerate(bar, 1):
                stats = self._step(*self._batch(idx), rng)
                self.sched.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v / n:.3f}" for k, v in sums.items() if not k.startswith("bpp_")})
            self.epoch += 1
            record = {"epoch": self.epoch, "seconds": round(time.time() - t0, 1),
                      **{k: v / max(1, len(batches)) for k, v in sums.items()}}
            self.history.append(record)
            if self.rank == 0:
                with (self.out / "log.jsonl").open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                self.log(json.dumps(record))
                self._save_state()
        final = self.out / "model.pt"
        self.model.cpu()
        if self.rank != 0:
            dist.destroy_process_group()
            return final
        fp = save_checkpoint(self.model, final, extra={"train_config": to_dict(tc), "history": json.dumps(self.history)})
        self.log(f"wrote {final} (fingerprint {fp[:16]}); next: refit-entropy on footage, then export-onboard")
        if self.world > 1:
            dist.destroy_process_group()
        return final
