"""Training loops for both stages, with tqdm progress, per-epoch checkpoints, resume and a JSONL log.

Stage 1 (teacher): SSDlite box/class losses + LR-ASPP pixel loss.
Stage 2 (student), as the Entropic Student (Matsubara et al.): feature MSE against the frozen
teacher at the split point + task losses through the frozen tail + lambda * bits per pixel,
and CompressAI's aux loss on the entropy models' quantiles. Slimmable training follows the
sandwich rule: the widest, the narrowest and `random_widths` random widths every step. Each
width has its own rate weight, so the widths spread over the rate range instead of clustering.
With `task_weight: 0` the student stage is head distillation alone (the papers' first stage); a
second run with `student_init` fine-tunes end to end with the task losses. The `front` encoder's
projection may start from PCA of the teacher's features (`pca_init`).

Runs on the CPU or on CUDA (`device`), there with bfloat16 autocast.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from ..config import ModelConfig, TrainConfig, to_dict
from ..data.coco import CocoSceneDataset, collate
from ..errors import CheckpointError, ConfigError
from ..evaluation.evaluate import evaluate_split, evaluate_teacher
from ..models.checkpoint import (
    load_model,
    load_torchvision_detector,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from ..models.context_latent_codec import CODING_BUFFERS, TABLE_BUFFERS
from ..models.pca import PCA, training_samples
from ..models.split_model import SplitModel
from ..models.teacher import Teacher
from ..offboard.decoder import OffboardDecoder
from ..onboard.encoder import OnboardEncoder


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def sandwich_widths(widths: tuple[float, ...], n_random: int, rng: random.Random) -> list[int]:
    """Indices: widest, narrowest, then `n_random` distinct others (all, if fewer exist)."""
    last = len(widths) - 1
    middle = list(range(1, last))
    return [last, 0] + rng.sample(middle, min(n_random, len(middle)))


def _task_loss(losses: dict, tc: TrainConfig) -> torch.Tensor:
    return losses["bbox"] + losses["cls"] + tc.seg_weight * losses["seg"]


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def load_teacher(path: str) -> Teacher:
    """The frozen teacher from a teacher checkpoint, or the one inside a student checkpoint."""
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path, kind=ckpt["kind"])
    return model if ckpt["kind"] == "teacher" else model.teacher


def _to(device: torch.device, x, targets, sem):
    if device.type == "cpu":
        return x, targets, sem
    return (x.to(device, non_blocking=True), [{k: v.to(device) for k, v in t.items()} for t in targets],
            sem.to(device, non_blocking=True))


class Trainer:
    """Runs one stage described by (ModelConfig, TrainConfig); resumable from `output_dir/last.pt`."""

    def __init__(self, mc: ModelConfig, tc: TrainConfig, progress: bool = True, log=print):
        self.mc, self.tc, self.progress, self.log = mc.validate(), tc.validate(), progress, log
        self.out = Path(tc.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(tc.num_threads)
        self.device = resolve_device(tc.device)
        seed_everything(tc.seed)
        self.train_ds = ConcatDataset([CocoSceneDataset(root, mc.input_size, mc.image_mean, mc.image_std,
                                                        tc.max_train_images) for root in tc.train_roots()])
        if tc.stage == "teacher":
            self.model = Teacher(mc)
            if tc.teacher_init:
                skipped = load_torchvision_detector(self.model, tc.teacher_init)
                self.log(f"initialised detector from {tc.teacher_init} ({len(skipped)} tensors skipped)")
            params, aux_params = list(self.model.parameters()), []
        else:
            self.model = SplitModel(mc)
            teacher = load_teacher(tc.teacher_checkpoint)
            if to_dict(teacher.cfg) != to_dict(mc):
                diff = {k: v for k, v in to_dict(mc).items() if to_dict(teacher.cfg).get(k) != v}
                self.log(f"note: student config differs from the teacher's in {sorted(diff)}")
            try:
                self.model.teacher.load_state_dict(teacher.state_dict())
            except RuntimeError as exc:
                raise CheckpointError(f"teacher checkpoint does not fit the student's config: {exc}") from None
            for p in self.model.teacher.parameters():
                p.requires_grad_(False)
            if tc.student_init:
                self._init_student(tc.student_init)
            elif tc.pca_init and not self.last_path.is_file():
                self._init_pca()
            self.lambdas = tc.rate_weights(len(mc.widths))
            self.trained_widths = self._trained_widths()
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            density = [p for n, p in named if n.startswith("latent_codecs.") and not n.endswith("quantiles")]
            params = [{"params": [p for n, p in named if not n.startswith("latent_codecs.")]},
                      {"params": density, "lr": tc.entropy_lr or tc.lr, "weight_decay": 0.0}]
            aux_params = [p for n, p in named if n.endswith("quantiles")]
        self.model.to(self.device)
        self.opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
        self.aux_opt = torch.optim.Adam(aux_params, lr=tc.aux_lr) if aux_params else None
        self.steps_per_epoch = math.ceil(len(self.train_ds) / tc.batch_size)
        total = self.steps_per_epoch * tc.epochs
        warmup = min(200, total // 10 + 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
        self.epoch = 0
        self.history: list[dict] = []
        self._resume()

    def _init_student(self, path: str) -> None:
        """Start from a trained student of the same configuration. A shared decoder may start from
        one decoder per width: it takes the widest width's decoder, whose input has every channel.
        Coarse widths may differ: they change the grid, not the parameters."""
        init, fp = load_model(path, kind="student")
        free = {"shared_decoder": self.mc.shared_decoder, "coarse_widths": list(self.mc.coarse_widths)}
        same = {**to_dict(init.cfg), **free} == to_dict(self.mc)
        if not same or (init.cfg.shared_decoder and not self.mc.shared_decoder):
            raise CheckpointError(f"student_init {path} has another model configuration than this run")
        own, theirs = self.model.state_dict(), init.state_dict()
        if self.mc.shared_decoder and not init.cfg.shared_decoder:
            widest = f"decoders.{len(self.mc.widths) - 1}."
            theirs = {("decoders.decoder." + k[len(widest):] if k.startswith(widest) else k): v
                      for k, v in theirs.items() if k.startswith(widest) or not k.startswith("decoders.")}
        # Tables and context counts describe the old encoder's symbols: the next refit counts anew.
        self.model.load_state_dict({k: v for k, v in theirs.items() if k.rsplit(".", 1)[-1] not in CODING_BUFFERS
                                    and not k.startswith("teacher.")}, strict=False)
        changed = [k for k in own if k.startswith("teacher.") and not torch.equal(own[k], theirs[k])]
        if changed:
            raise CheckpointError(f"student_init {path} was trained against another teacher ({len(changed)} tensors differ)")
        self.log(f"initialised student from {path} (fingerprint {fp[:16]})")

    def _trained_widths(self) -> list[int] | None:
        """Indices of `train_widths` with everything else frozen (None: all widths, sandwich rule).

        Only a width's own parameters train: its gain, decoder and entropy model. The shared
        projection stays as it is, so every other width keeps its packets and its accuracy."""
        if not self.tc.train_widths:
            return None
        if self.mc.encoder != "front" or self.mc.shared_decoder:
            raise ConfigError("train_widths needs the 'front' encoder (a gain per width) and one decoder per width")
        indices = sorted({self.model.width_index_of(w) for w in self.tc.train_widths})
        own = tuple(f"{part}.{i}." for i in indices for part in ("encoder.gain", "decoders", "latent_codecs"))
        for name, p in self.model.named_parameters():
            if not (name + ".").startswith(own):
                p.requires_grad_(False)
        return indices

    def _init_pca(self) -> None:
        if self.mc.encoder != "front":
            raise ConfigError("pca_init needs the 'front' encoder (a projection of the teacher's features)")
        samples = training_samples(self.model.teacher, self.tc.train_roots()[0], self.mc.split_index, self.tc.pca_init,
                                   self.progress)
        pca = PCA.fit(samples)
        step = self.tc.pca_step * pca.rms()
        self.model.encoder.init_from_pca(pca.mean, pca.basis, step)
        kept = pca.explained()[self.model.encoder.proj.out_channels - 1]
        self.log(f"projection initialised from PCA of {len(samples)} feature vectors: "
                 f"{self.model.encoder.proj.out_channels} components ({kept:.1%} of the variance), step {step:.4f}")

    # ---- checkpoints ---------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def _resume(self) -> None:
        if not self.last_path.is_file():
            return
        state = torch.load(self.last_path, map_location="cpu", weights_only=True)
        if state.get("model_config") != to_dict(self.mc) or state.get("train_stage") != self.tc.stage:
            raise CheckpointError(f"{self.last_path} is from another configuration; use a new output_dir")
        self.model.load_state_dict(state["model"], strict=False)
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        if self.aux_opt is not None:
            self.aux_opt.load_state_dict(state["aux_opt"])
        self.epoch, self.history = state["epoch"], json.loads(state["history"])
        self.log(f"resumed from {self.last_path} after epoch {self.epoch}")

    def _save_state(self) -> None:
        model_state = {k: v for k, v in self.model.state_dict().items()
                       if k.rsplit(".", 1)[-1] not in TABLE_BUFFERS}
        state = {"model": model_state, "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                 "aux_opt": self.aux_opt.state_dict() if self.aux_opt else {}, "epoch": self.epoch,
                 "history": json.dumps(self.history), "model_config": to_dict(self.mc),
                 "train_stage": self.tc.stage}
        tmp = self.last_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.last_path)

    # ---- steps ---------------------------------------------------------------------------
    def _autocast(self):
        """bfloat16 autocast on CUDA (no loss scaling needed); a no-op on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def _teacher_step(self, x, targets, sem) -> dict:
        with self._autocast():
            losses = self.model.losses(self.model(x), targets, sem)
            loss = _task_loss(losses, self.tc)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.opt.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}

    def _student_step(self, x, targets, sem, rng: random.Random) -> dict:
        m, tc = self.model, self.tc
        with torch.no_grad(), self._autocast():
            f = m.teacher.front(x)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        self.opt.zero_grad(set_to_none=True)
        stats = {"loss": 0.0, "kd": 0.0, "bpp": 0.0, "task": 0.0}
        widths = self.trained_widths or sandwich_widths(m.widths, tc.random_widths, rng)
        for wi in widths:
            m._state.index = wi
            with self._autocast():
                out = m(x)
                kd = F.mse_loss(out["z_hat"].float(), f.float())
                bpp = -torch.log2(out["likelihoods"]["y"].float()).sum() / pixels
                loss = tc.kd_weight * kd + self.lambdas[wi] * bpp
                if tc.task_weight > 0:
                    task = _task_loss(m.teacher.losses(m.teacher.back(out["z_hat"]), targets, sem), tc)
                    loss = loss + tc.task_weight * task
                    stats["task"] += task.item() / len(widths)
            if wi in widths[:2]:  # the sandwich's widest and narrowest: present at every step
                stats[f"bpp_w{wi}"] = bpp.item()
            (loss / len(widths)).backward()
            stats["loss"] += loss.item() / len(widths)
            stats["kd"] += kd.item() / len(widths)
            stats["bpp"] += bpp.item() / len(widths)
        torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], 10.0)
        self.opt.step()
        self.aux_opt.zero_grad(set_to_none=True)
        aux = m.aux_loss()
        aux.backward()
        self.aux_opt.step()
        stats["aux"] = aux.item()
        m._state.index = len(m.widths) - 1
        return stats

    def _train_mode(self) -> None:
        self.model.train()
        if isinstance(self.model, SplitModel):
            self.model.teacher.eval()  # frozen: keep its batch-norm statistics

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation on the CPU, through real packets for the student (the deployed path)."""
        tc = self.tc
        self.model.cpu()
        try:
            if isinstance(self.model, Teacher):
                return {"teacher": evaluate_teacher(self.model, tc.val_data, tc.max_eval_images, self.progress)}
            self.model.update(force=True)
            enc = OnboardEncoder.from_model(self.model, "0" * 64)
            dec = OffboardDecoder.from_model(self.model, "0" * 64)
            res = evaluate_split(enc, dec, tc.val_data, max_images=tc.max_eval_images, progress=self.progress)
            self.model.set_width(self.model.widths[-1])
            return {str(w): r for w, r in res.items()}
        finally:
            self.model.to(self.device)

    # ---- main loop -----------------------------------------------------------------------
    def run(self) -> Path:
        """Train the remaining epochs; write `model.pt` (fp16, with CDF tables) and `log.jsonl`."""
        tc = self.tc
        log_path = self.out / "log.jsonl"
        while self.epoch < tc.epochs:
            g = torch.Generator().manual_seed(tc.seed * 1000 + self.epoch)
            loader = DataLoader(self.train_ds, batch_size=tc.batch_size, shuffle=True, generator=g,
                                collate_fn=collate, num_workers=tc.num_workers, drop_last=False,
                                pin_memory=self.device.type == "cuda", persistent_workers=False)
            rng = random.Random(tc.seed * 1000 + self.epoch)
            self._train_mode()
            sums: dict[str, float] = {}
            t0 = time.time()
            bar = tqdm(loader, desc=f"{tc.stage} epoch {self.epoch + 1}/{tc.epochs}", disable=not self.progress)
            for n, (x, targets, sem, _) in enumerate(bar, 1):
                x, targets, sem = _to(self.device, x, targets, sem)
                if tc.stage == "teacher":
                    stats = self._teacher_step(x, targets, sem)
                else:
                    stats = self._student_step(x, targets, sem, rng)
                self.sched.step()
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix({k: f"{v / n:.3f}" for k, v in sums.items()})
            self.epoch += 1
            record = {"epoch": self.epoch, "seconds": round(time.time() - t0, 1),
                      **{k: v / max(1, n) for k, v in sums.items()}}
            if tc.eval_every and (self.epoch % tc.eval_every == 0 or self.epoch == tc.epochs):
                record["val"] = self.evaluate()
            self.history.append(record)
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.log(json.dumps(record))
            self._save_state()
        final = self.out / "model.pt"
        extra = {"train_config": to_dict(tc), "history": json.dumps(self.history)}
        last_val = self.history[-1].get("val", {}) if self.history else {}
        if isinstance(self.model, SplitModel) and last_val:
            # typical packet sizes, so a link monitor can plan widths before any frame arrives
            extra["bytes_per_width"] = {w: r["bytes_mean"] for w, r in last_val.items()}
        fp = save_checkpoint(self.model, final, extra=extra)
        self.log(f"wrote {final} (fingerprint {fp[:16]})")
        return final
