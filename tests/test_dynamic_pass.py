"""Dynamic Pass's stabilisers: the cosine learning rate, the mean teacher (EMA), the best-validation final
model, resume mid-Dynamic-Pass, and the pseudo-label weights ξζ, on tiny synthetic image sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphzoo.config import RunConfig  # noqa: E402
from graphzoo.data.types import ImageSet  # noqa: E402
from graphzoo.train import Trainer, run_training  # noqa: E402
from graphzoo.train import dynamic_pass as dp  # noqa: E402
from graphzoo.train.checkpoints import load_checkpoint  # noqa: E402

from conftest import bar_images  # noqa: E402
from test_train import strip_times  # noqa: E402


def blobs(n=120, size=16, seed=0) -> ImageSet:
    """Gray images whose class is the side (left / right) of a bright bar, plus noise (conftest.bar_images)."""
    x, labels = bar_images(np.random.default_rng(seed), n, size)
    pids = np.array([f"p{i % 30}" for i in range(n)])
    return ImageSet(x, labels, ["left", "right"], None, pids, np.array([f"img{i}.png" for i in range(n)]))


def cfg_for(tmp_path, **kw) -> RunConfig:
    base = dict(data="synthetic", out=str(tmp_path), name="run", threads=1, progress=False, mode="dynamic", epochs=3,
                warmup_epochs=2, min_epoch_steps=3, batch_size=24, labelled_per_batch=8, n_neighbors=8,
                label_fraction=0.3, val_labels="all", hflip=False, rampup_epochs=2)
    base.update(kw)
    return RunConfig(**base)


def history(result):
    import csv

    with open(result.rundir.history) as fh:
        return list(csv.DictReader(fh))


def test_cosine_lr_start_middle_end():
    assert dp.cosine_lr(0.1, 0, 40) == pytest.approx(0.1)
    assert dp.cosine_lr(0.1, 20, 40) == pytest.approx(0.05)
    assert dp.cosine_lr(0.1, 10, 40) == pytest.approx(0.1 * (0.5 + 0.5 * math.sqrt(0.5)))
    assert dp.cosine_lr(0.1, 39, 40) == pytest.approx(0.05 * (1 - math.cos(math.pi / 40)))  # the last step
    assert dp.cosine_lr(0.1, 40, 40) == pytest.approx(0.0, abs=1e-15)


def test_ema_update_matches_a_hand_computation():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    ema = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        ema[0].weight.copy_(torch.tensor([[1.0, -2.0]]))
        ema[0].bias.fill_(0.5)
        model[0].weight.copy_(torch.tensor([[3.0, 2.0]]))
        model[0].bias.fill_(-1.5)
    model.train()(torch.tensor([[1.0, 2.0], [0.0, -1.0], [4.0, 1.0]]))  # moves the student's BN statistics
    dp.ema_update(ema, model, 0.9)
    assert ema[0].weight[0].tolist() == pytest.approx([0.9 * 1 + 0.1 * 3, 0.9 * -2 + 0.1 * 2])
    assert ema[0].bias.item() == pytest.approx(0.9 * 0.5 + 0.1 * -1.5)
    dp.ema_update(ema, model, 0.9)  # a second step: θ' = 0.81 θ'_0 + 0.19 θ
    assert ema[0].bias.item() == pytest.approx(0.81 * 0.5 + 0.19 * -1.5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):  # buffers copied, not averaged
        assert torch.equal(getattr(ema[1], name), getattr(model[1], name))
    assert model[0].bias.item() == -1.5  # the student is untouched


def test_final_model_is_the_best_validating_dynamic_epoch(tmp_path, monkeypatch):
    """The last dynamic epoch is made bad on purpose (its net predicts one class): the run must end on
    an earlier dynamic epoch's net, not on the warm-up's nor the last one."""
    cfg = cfg_for(tmp_path, final_model="best")
    original = dp.dynamic_epoch

    def last_epoch_ruined(trainer):
        row = original(trainer)
        if trainer.state["phase_epoch"] == cfg.epochs - 1:
            with torch.no_grad():
                trainer.model.head.weight.zero_()
                trainer.model.head.bias.copy_(torch.tensor([50.0, -50.0]))
        return row

    monkeypatch.setattr(dp, "dynamic_epoch", last_epoch_ruined)
    result = run_training(cfg, imageset=blobs())
    rows = history(result)
    last = rows[-1]
    assert float(last["val_accuracy"]) == pytest.approx(0.5, abs=0.15) and last["is_best"] == "False"
    m = result.metrics
    assert m["final_model"] == "best"
    assert cfg.warmup_epochs < m["best_epoch"] < m["epochs"]  # a dynamic epoch, not the warm-up's
    assert m["accuracy"] > 0.8 and m["test_inductive"]["accuracy"] == m["accuracy"]


def test_mean_teacher_builds_the_graph_and_is_kept_when_it_validates_better(tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path, final_model="best", ema_decay=0.5)
    seen = {}
    original_validate, original_infer = Trainer.validate, Trainer.infer

    def validate(self, model=None):
        row = original_validate(self, model)
        if model is not None and self.state["phase_epoch"] == 1:  # the teacher of the 2nd dynamic epoch wins
            seen["teacher"] = {k: v.clone() for k, v in model.state_dict().items()}
            row.update(val_accuracy=2.0)
        return row

    def infer(self, idx, tta=False, batch_size=512, model=None):
        if self.state["phase"] == "dynamic" and len(idx) == len(self.idx_train):
            seen.setdefault("graph_models", []).append(model is self.ema and model is not None)
        return original_infer(self, idx, tta, batch_size, model)

    monkeypatch.setattr(Trainer, "validate", validate)
    monkeypatch.setattr(Trainer, "infer", infer)
    result = run_training(cfg, imageset=blobs())
    assert seen["graph_models"] == [True] * cfg.epochs  # every dynamic epoch's graph came from the teacher
    rows = [r for r in history(result) if r["phase"] == "dynamic"]
    assert all(r["ema_val_accuracy"] != "" for r in rows)
    assert rows[1]["best_model"] == "ema" and result.metrics["best_epoch"] == cfg.warmup_epochs + 2
    best = load_checkpoint(result.rundir.checkpoint("best"))["model"]
    assert all(torch.equal(best[k], v) for k, v in seen["teacher"].items())


def test_resume_mid_dynamic_pass_restores_the_teacher_and_the_schedule(tmp_path):
    data = blobs(seed=1)
    opts = dict(final_model="best", ema_decay=0.7, dynamic_lr="cosine", lr=0.003)
    full = run_training(cfg_for(tmp_path / "full", **opts), imageset=data)
    cfg = cfg_for(tmp_path / "killed", **opts)
    stop = cfg.warmup_epochs + 1  # after the first dynamic epoch
    assert run_training(cfg, imageset=data, stop_after_epochs=stop).metrics == {"interrupted_after_epoch": stop}
    ck = load_checkpoint(tmp_path / "killed" / "run" / "checkpoints" / "last.pt")
    assert ck["ema"] is not None and not all(torch.equal(ck["ema"][k], v) for k, v in ck["model"].items())
    resumed = run_training(cfg, resume=True, imageset=data)
    timing = ("time_s", "pseudo_s", "graph_s", "energy_s")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(history(resumed)) == strip(history(full))  # lr, ema_val_*, pseudo-labels: all the same
    # the per-step cosine over the 3 dynamic epochs, as each epoch's first step: cos(0), cos(π/3), cos(2π/3)
    lrs = [float(r["lr"]) for r in history(full) if r["phase"] == "dynamic"]
    assert lrs == pytest.approx([0.003, 0.00225, 0.00075])
    assert resumed.metrics["accuracy"] == full.metrics["accuracy"]
    assert resumed.metrics["best_epoch"] == full.metrics["best_epoch"]


def test_pseudo_label_weights_are_certainty_times_class_balance(tmp_path, monkeypatch):
    """ξ normalised by its maximum, ζ_j = (R / c) / |{i reachable : ŷ_i = j}|: the weighted pseudo-classes
    then have equal mass; unreachable images weigh nothing."""
    from graphzoo.graph_step import GraphStep, certainty

    trainer = Trainer(cfg_for(tmp_path), imageset=blobs())
    trainer.start()
    n, n_u = len(trainer.idx_train), len(trainer.idx_unl)
    rng = np.random.default_rng(0)
    P = rng.dirichlet([1.0, 1.0], n)
    P[: n // 3] = [[0.9, 0.1]]  # more pseudo-labels of class 0 than 1
    R = np.ones(n, bool)
    R[::7] = False
    xi = np.where(R, certainty(P), 0.0)

    def fake_graph_step(Z, y, **kw):
        return GraphStep(proba=P, reachable=R, certainty=xi, scores=P, info={}, W=None)

    monkeypatch.setattr(dp, "graph_step", fake_graph_step)
    dp.pseudo_labels(trainer)
    pseudo = trainer.state["pseudo"]
    u = ~trainer.data.labelled[trainer.idx_train]
    Pu, Ru, xu = P[u], R[u], xi[u]
    label = Pu.argmax(1)
    counts = np.bincount(label[Ru], minlength=2)
    zeta = (Ru.sum() / 2) / counts
    assert len(pseudo["label"]) == n_u and (pseudo["label"] == label).all()
    np.testing.assert_allclose(pseudo["weight"], xu / xu.max() * zeta[label], rtol=1e-6)
    mass = [zeta[j] * ((label == j) & Ru).sum() for j in (0, 1)]
    assert mass == pytest.approx([Ru.sum() / 2] * 2)
    assert (pseudo["weight"][~Ru] == 0).all()


def test_strong_pseudo_views_noise_only_the_pseudo_labelled_images(tmp_path, monkeypatch):
    """pseudo_views="strong": every step's pseudo-labelled rows (and only they) go through a ViewMaker view;
    the labelled rows keep the run's own augmentation, and the run still learns the bar's side."""
    from graphzoo.selfsup.views import ViewMaker

    seen = []
    original = Trainer.batch

    def batch(self, idx, generator, images=None, augment=None):
        out = original(self, idx, generator, images, augment)
        if augment is not None:
            seen.append((len(images), augment))
            plain = self.normalizer(images.float())
            assert out.shape == plain.shape and not torch.allclose(out, plain)  # a view, not the image itself
        return out

    monkeypatch.setattr(Trainer, "batch", batch)
    cfg = cfg_for(tmp_path, pseudo_views="strong", max_epoch_steps=2)
    result = run_training(cfg, imageset=blobs())
    assert len(seen) == 2 * cfg.epochs  # one call per dynamic step, none in the warm-up
    assert all(n == cfg.batch_size - cfg.labelled_per_batch for n, _ in seen)
    views = seen[0][1]
    assert isinstance(views, ViewMaker) and (views.hflip, views.vflip, views.rot90) == (cfg.hflip, cfg.vflip, cfg.rot90)
    assert result.metrics["accuracy"] > 0.8


def test_exact_pseudo_views_only_flip_and_turn_the_pseudo_labelled_images(tmp_path, monkeypatch):
    """pseudo_views="exact": the pseudo-labelled rows get only exact symmetries (no resampling): every row is
    a flip / quarter turn of its normalised image, pixel for pixel (with free-angle turns on, which would
    resample them); the labelled rows keep the run's augmentation, and the run still learns the bar's side."""
    from graphzoo.data.torchdata import Augment

    seen = []
    original = Trainer.batch

    def batch(self, idx, generator, images=None, augment=None):
        out = original(self, idx, generator, images, augment)
        if augment is not None:
            seen.append(augment)
            plain = self.normalizer(images.float())
            for row, img in zip(out, plain):
                syms = [torch.rot90(v, k, dims=(-2, -1)) for v in (img, img.flip(-1)) for k in range(4)]
                assert any(torch.equal(row, v) for v in syms)
        return out

    monkeypatch.setattr(Trainer, "batch", batch)
    cfg = cfg_for(tmp_path, pseudo_views="exact", max_epoch_steps=2, rotate_degrees=20.0)  # vertical flips only
    result = run_training(cfg, imageset=blobs())
    assert len(seen) == 2 * cfg.epochs  # one call per dynamic step, none in the warm-up
    views = seen[0]
    assert isinstance(views, Augment) and (views.degrees, views.scale, views.translate) == (0, 0, 0)
    assert (views.hflip, views.vflip, views.rot90) == (cfg.hflip, cfg.vflip, cfg.rot90)
    assert result.metrics["accuracy"] > 0.8


def test_exact_pseudo_views_change_nothing_where_the_augmentation_does_not_resample(tmp_path):
    """With no free-angle turn, zoom or shift (configs/malaria.yaml, the demo grid) "exact" is the run's own
    augmentation: the same run, bit for bit, as "standard" — their recorded numbers stand."""
    still = dict(max_epoch_steps=2, rotate_degrees=0.0, crop_scale=0.0, translate=0.0, rot90=False)
    a = run_training(cfg_for(tmp_path, name="exact", pseudo_views="exact", **still), imageset=blobs())
    b = run_training(cfg_for(tmp_path, name="standard", pseudo_views="standard", **still), imageset=blobs())
    assert strip_times(a.metrics) == strip_times(b.metrics)


def test_pseudo_views_must_be_known():
    with pytest.raises(ValueError, match="pseudo_views"):
        RunConfig(data="synthetic", pseudo_views="fixmatch").validate()


def test_mixup_losses_reduce_to_the_plain_losses_and_match_a_hand_computation():
    own = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])  # rows 0-1 labelled, 2-4 pseudo-labelled
    other = torch.tensor([3.0, 0.25, 1.5, 0.75, 6.0])
    w = torch.tensor([0.2, 1.0, 0.6])
    ident = torch.arange(5)
    loss_l, loss_u = dp.mixup_losses(own, other, 2, w, 1.0, ident)
    assert loss_l.item() == pytest.approx(own[:2].mean().item())
    assert loss_u.item() == pytest.approx((own[2:] * w).mean().item())
    perm, lam = torch.tensor([3, 0, 4, 1, 2]), 0.3
    c = [1 / 2, 1 / 2, 0.2 / 3, 1.0 / 3, 0.6 / 3]
    want_l = sum(lam * c[i] * own[i] * (i < 2) + (1 - lam) * c[perm[i]] * other[i] * (perm[i] < 2) for i in range(5))
    want_u = sum(lam * c[i] * own[i] * (i >= 2) + (1 - lam) * c[perm[i]] * other[i] * (perm[i] >= 2) for i in range(5))
    loss_l, loss_u = dp.mixup_losses(own, other, 2, w, lam, perm)
    assert (loss_l.item(), loss_u.item()) == pytest.approx((float(want_l), float(want_u)))


def test_mixup_trains_on_mixed_batches_and_still_learns(tmp_path, monkeypatch):
    seen = []
    original = Trainer.forward

    def forward(self, x):
        if self.state["phase"] == "dynamic" and self.model.training:
            seen.append(x.detach().clone())
        return original(self, x)

    mixes = []
    original_losses = dp.mixup_losses

    def mixup_losses(own, other, n_labelled, weight_u, lam, perm):
        mixes.append((lam, perm))
        return original_losses(own, other, n_labelled, weight_u, lam, perm)

    monkeypatch.setattr(Trainer, "forward", forward)
    monkeypatch.setattr(dp, "mixup_losses", mixup_losses)
    data = blobs()
    plain = run_training(cfg_for(tmp_path / "plain", max_epoch_steps=2), imageset=data)
    n_plain = len(seen)
    mixed = run_training(cfg_for(tmp_path / "mixed", max_epoch_steps=2, mixup_alpha=1.0), imageset=data)
    assert n_plain == len(seen) - n_plain == 2 * 3  # the same steps, one forward each
    # every mixed batch is λ x + (1 − λ) x[π] of the plain run's batch: the same images and augmentations
    for plain_x, mixed_x, (lam, perm) in zip(seen[:n_plain], seen[n_plain:], mixes):
        assert 0 < lam < 1 and sorted(perm.tolist()) == list(range(len(plain_x)))
        assert torch.allclose(mixed_x, lam * plain_x + (1 - lam) * plain_x[perm], atol=1e-5)
    assert plain.metrics["accuracy"] > 0.8 and mixed.metrics["accuracy"] > 0.8
    rows = [r for r in history(mixed) if r["phase"] == "dynamic"]
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    with pytest.raises(ValueError, match="mixup_alpha"):
        RunConfig(data="synthetic", mixup_alpha=-0.5).validate()


def supcon_by_hand(z, labels, weights, tau):
    """Khosla et al.'s L_out for one view, anchor by anchor, in float64."""
    u = [v / np.linalg.norm(v) for v in z.astype(np.float64)]
    total = norm = 0.0
    for i in range(len(u)):
        positives = [p for p in range(len(u)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(u[i] @ u[a] / tau) for a in range(len(u)) if a != i)
        li = -sum(math.log(math.exp(u[i] @ u[p] / tau) / denominator) for p in positives) / len(positives)
        total += weights[i] * li
        norm += weights[i]
    return total / norm


def test_supcon_matches_a_hand_computation():
    from graphzoo.selfsup.losses import supcon

    rng = np.random.default_rng(3)
    z = rng.normal(size=(7, 4)).astype(np.float32)
    labels = np.array([0, 1, 0, 2, 1, 0, 1])  # class 2 has one row: an anchor without positives, left out
    weights = np.array([1.0, 1.0, 0.5, 3.0, 0.0, 0.2, 1.0])
    for tau in (0.1, 0.5):
        got = supcon(torch.as_tensor(z), torch.as_tensor(labels), torch.as_tensor(weights), tau)
        assert got.item() == pytest.approx(supcon_by_hand(z, labels, weights, tau), rel=1e-5)
        unweighted = supcon(torch.as_tensor(3 * z), torch.as_tensor(labels), temperature=tau)  # scale-free
        assert unweighted.item() == pytest.approx(supcon_by_hand(z, labels, np.ones(7), tau), rel=1e-5)
    # no positives anywhere: zero, and still a tensor a backward can pass through
    z_grad = torch.as_tensor(z).requires_grad_()
    none = supcon(z_grad, torch.arange(7))
    none.backward()
    assert none.item() == 0 and torch.equal(z_grad.grad, torch.zeros_like(z_grad))


def test_supcon_pulls_each_class_together():
    from graphzoo.selfsup.losses import supcon

    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 8, generator=g).requires_grad_()
    labels = torch.arange(40) % 2
    opt = torch.optim.SGD([z], lr=2.0)
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(40, dtype=torch.bool)
    other = labels[:, None] != labels[None, :]

    def cosines():
        u = torch.nn.functional.normalize(z.detach(), dim=1)
        return (u @ u.T)[same].mean().item(), (u @ u.T)[other].mean().item()

    within, across = cosines()
    assert abs(within - across) < 0.1  # random: no class structure
    for _ in range(100):
        opt.zero_grad()
        supcon(z, labels, temperature=0.1).backward()
        opt.step()
    within, across = cosines()
    assert within > 0.9 and across < -0.2  # each class tight, the two apart


def test_supcon_term_sees_every_row_of_the_batch_with_its_weight(tmp_path, monkeypatch):
    calls, pseudo = [], []
    original, original_pseudo = dp.supcon, dp.pseudo_labels

    def supcon(z, labels, weights, temperature):
        calls.append((z.shape, labels.clone(), weights.clone(), temperature, len(pseudo)))
        return original(z, labels, weights, temperature)

    def pseudo_labels(trainer):
        row = original_pseudo(trainer)
        pseudo.append({k: np.asarray(v).copy() for k, v in trainer.state["pseudo"].items()})
        return row

    monkeypatch.setattr(dp, "supcon", supcon)
    monkeypatch.setattr(dp, "pseudo_labels", pseudo_labels)
    data = blobs()
    plain = run_training(cfg_for(tmp_path / "plain", max_epoch_steps=2), imageset=data)
    assert calls == []
    pseudo.clear()
    con = run_training(cfg_for(tmp_path / "con", max_epoch_steps=2, supcon_weight=0.5, supcon_temperature=0.2),
                       imageset=data)
    assert len(calls) == 2 * 3  # every step of the 3 dynamic epochs
    rows = [r for r in history(con) if r["phase"] == "dynamic"]
    for shape, labels, weights, tau, epoch in calls:
        alpha, p = float(rows[epoch - 1]["alpha"]), pseudo[epoch - 1]
        assert shape[0] == len(labels) == len(weights) == 24 and tau == 0.2
        assert (weights[:8] == 1).all()  # the 8 labelled rows of each batch
        # the 16 pseudo-labelled rows: α(t) times their own ξζ, with their graph labels
        for w, y in zip(weights[8:].tolist(), labels[8:].tolist()):
            match = np.isclose(alpha * p["weight"], w, rtol=1e-5) & (p["label"] == y)
            assert match.any(), (w, y)
    assert all(math.isfinite(float(r["loss_contrastive"])) and float(r["loss_contrastive"]) > 0 for r in rows)
    assert plain.metrics["accuracy"] > 0.8 and con.metrics["accuracy"] > 0.8


def test_supcon_settings_are_checked():
    for bad, match in [(dict(supcon_weight=-1), "supcon_weight must be >= 0"),
                       (dict(supcon_weight=0.5, supcon_temperature=0), "supcon_temperature must be > 0"),
                       (dict(supcon_weight=0.5, mixup_alpha=1.0), "cannot both be on")]:
        with pytest.raises(ValueError, match=match):
            RunConfig(data="synthetic", **bad).validate()


@pytest.mark.parametrize("pseudo_tta", [False, True])
def test_pseudo_tta_builds_every_dynamic_graph_on_view_averaged_features(tmp_path, monkeypatch, pseudo_tta):
    """pseudo_tta: each dynamic epoch's graph embeds the training images averaged over the test-time views
    (here all 8 symmetries); without it only the final evaluation averages (tta is on in both)."""
    seen = []
    original_infer = Trainer.infer

    def infer(self, idx, tta=False, batch_size=512, model=None):
        if self.state["phase"] == "dynamic" and len(idx) == len(self.idx_train):
            seen.append((tta, len(self.views())))
        return original_infer(self, idx, tta, batch_size, model)

    monkeypatch.setattr(Trainer, "infer", infer)
    cfg = cfg_for(tmp_path, tta=True, tta_views="dihedral", pseudo_tta=pseudo_tta)
    run_training(cfg, imageset=blobs())
    assert seen == [(pseudo_tta, 8)] * cfg.epochs
    with pytest.raises(ValueError, match="pseudo_tta=true .* tta is off: add tta=true"):
        RunConfig(data="x", tta=False, pseudo_tta=True).validate()
