"""Recovery after slimming: fine-tune the sub-network with knowledge distillation from its parent.

Loss: ``0.5 * CE(student, labels; smoothing 0.1) + 0.5 * T² · KL(teacher_T ‖ student_T)`` with ``T = 2`` (soft
distillation; EfficientFormer distils from a teacher too). AdamW, no decay on 1-D parameters, cosine schedule per
step. Deterministic given ``seed``: seeded order and initial state, and one intra-op thread while it runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import SlimData

TEMPERATURE = 2.0
ALPHA = 0.5


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    # float sums in another order give other weights: the recorded result needs the recorded thread count
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finetune(
    student: nn.Module,
    teacher: nn.Module,
    data: SlimData,
    *,
    epochs: int,
    seed: int = 0,
    lr: float = 1e-3,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> nn.Module:
    """Fine-tune ``student`` in place for ``epochs`` on ``data.train``; returns it in eval mode."""
    if epochs <= 0:
        return student.eval()
    teacher.eval()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 99])
    decay = [p for p in student.parameters() if p.dim() >= 2]
    no_decay = [p for p in student.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    n = len(data.train(0)[1])
    steps = math.ceil(n / batch)
    total = epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
    done = 0
    with _one_thread():
        for epoch in range(epochs):
            x, y = data.train(epoch)
            order = rng.permutation(len(y))
            student.train()
            for i in range(steps):
                idx = order[i * batch : (i + 1) * batch]
                xb, yb = torch.from_numpy(x[idx]), torch.from_numpy(y[idx])
                with torch.no_grad():
                    soft = F.softmax(teacher(xb) / TEMPERATURE, dim=1)
                logits = student(xb)
                kd = F.kl_div(F.log_softmax(logits / TEMPERATURE, dim=1), soft, reduction="batchmean")
                loss = ALPHA * F.cross_entropy(logits, yb, label_smoothing=0.1) + (1 - ALPHA) * TEMPERATURE**2 * kd
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                done += 1
                if progress:
                    progress(done, total)
    return student.eval()
