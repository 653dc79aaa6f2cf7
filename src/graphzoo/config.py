"""`RunConfig`: every choice of a run in one flat dataclass, read from YAML and ``key=value``.

A run is fully described by its config: ``graphzoo run --config configs/malaria.yaml --set
mode=dynamic label_fraction=0.01`` loads the YAML, applies the overrides, converts each value to
its field's type and validates the whole before anything is trained; the resolved config is then
written to ``runs/<name>/config.yaml`` and compared key by key on ``--resume``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .registry import did_you_mean

__all__ = ["RunConfig", "load_config", "load_yaml", "apply_overrides", "config_diff"]

MODES = ("one-pass", "dynamic")
TASKS = ("auto", "multiclass", "multilabel")
SPLITS = ("auto", "patient", "source", "random")
VAL_LABELS = ("budget", "all")
TEST_PREDICTIONS = ("auto", "inductive", "transductive")
MONITORS = ("val_loss", "val_accuracy", "val_auc")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP = ("auto", "bf16", "fp16", "off")


@dataclass
class RunConfig:
    """All settings of one experiment (flat, so that ``--set key=value`` reaches every one).

    Data and split
    --------------
    data : path of the dataset (any format the readers detect).
    data_format : reader name, default auto-detected.
    reader_options : options of that reader, as a mapping (e.g. ``{patch_mm: 24}`` for ``mias_patches``,
        ``{image: patch}`` for ``cbis_ddsm``, ``{workers: 4}`` for any image-file reader; each reader's docstring
        lists them); a key the reader does not take is refused, naming the valid ones. Not ``data_options``:
        that name is the method below.
    task : "multiclass", "multilabel" (uses the set's ``multilabels``) or "auto" (multiclass).
    split : how to split train / val / test. "patient": patient-grouped (default where the set has
        patient ids; the malaria npz's own split shares patients between its parts); "source": the
        file's own ``split`` column; "random": stratified random; "auto": patient if possible,
        else source if it has a test part, else random.
    split_fractions : train / val / test fractions for "patient" and "random".
    label_fraction : share of the training images whose label is used (ignored when
        ``labels_per_class`` is set).
    labels_per_class : fixed label budget per class instead of a fraction.
    val_labels : "budget": the validation part is labelled at the same rate as the training part
        (the labels then count in the budget: the honest semi-supervised protocol); "all": the
        whole validation split is labelled.
    image_size : square side the images are resized to (0: keep).
    in_chans : 1 (gray) or 3 (RGB); 0: as stored.
    skip_corrupt : leave out images that cannot be decoded (each one named) instead of stopping.
    data_in_memory : "auto", "true" or "false": hold all images in memory, or read them from disk as
        batches need them (the same pixels; memory then does not grow with the number of images);
        "auto": in memory when the decoded images take at most 1 GiB (:mod:`graphzoo.data.store`).
    labels : a ``path,label`` CSV labelling some images of the folder ``data`` (paths relative to
        that folder; rows with an empty label and images without a row are unlabelled);
        :mod:`graphzoo.data.labels_csv`.
        On a source with labels of its own (an npz with -1, class folders holding every class the CSV names, ...)
        the CSV *adds* labels instead (:func:`graphzoo.data.labels_csv.csv_is_label_source`).
    add_labels : labels CSVs applied after the split (set by ``graphzoo run --init-from``, one per round): the
        images they label train where they are, so the split of the run continued stays the same.
    init_from : the run this one continues (``graphzoo run --init-from RUN``), for the record; ``pretrained``
        then holds RUN's final checkpoint.
    class_names : the classes in order (labels CSV and class folders); empty: as found.
    unlabelled_dirs : folder names the folder reader reads as images of no class (label -1).
    holdout : True: test (and validation) parts are cut from the labelled images to measure the
        run. False (production, ``--no-holdout``): no test part, every label outside validation
        trains; quality is then estimated by cross-validation of the graph step on the labels.
    Images without a label in the source (-1) join the graph and are predicted, never scored: in the
    training part, or "excluded" with a validation or test patient. The split is drawn over the
    labelled images only, and on such a partially labelled source the label budget is not applied:
    every label is used (the run says so).

    Model and training
    ------------------
    backbone, backbone_kwargs, pretrained ("" / "torchvision" for the local torchvision cache /
    a path), dropout, lr, weight_decay, batch_size, epochs (One Pass: max supervised epochs;
    Dynamic Pass: number of dynamic epochs), warmup_epochs (Dynamic Pass: max supervised warm-up
    epochs), patience (early stopping, epochs without improvement of ``monitor``), min_epoch_steps
    (a supervised epoch repeats the labelled set until it has made at least this many steps, so that
    epochs on 1 % labels are not two steps long), lr_patience / lr_decay (multiply the learning rate
    by lr_decay after every lr_patience epochs without improvement; 0 disables), monitor,
    final_model (the model evaluated at the end: "best" by validation, "last", or "auto": best for
    One Pass, last for Dynamic Pass), augment / hflip / vflip / rotate_degrees / crop_scale /
    translate / rot90 (exact quarter turns), ae_pretrain_epochs (autoencoder backbone:
    reconstruction epochs on all images), tta (test-time averaging, on by default: the final features ψ(x)
    and logits are averaged over the exact flips / quarter turns that training augments with,
    :func:`graphzoo.data.torchdata.tta_views`: 4 views with the default flips, 8 for cells with rot90, so
    the final extraction costs 4× or 8×; with the default flips it added 0.2–0.5 points to the graph on
    the mean on the malaria cells at 1–20 % labels), tta_views (which views ``tta`` averages over:
    "augment", those training augments with; "dihedral", all 8 symmetries of the square whatever
    training drew, for images without an orientation such as cells or tissue patches, not radiographs;
    on malaria cells trained with the default flips and small free-angle turns it added 0.2–0.9 points
    to the graph on the mean at 1–20 % labels, each of 15 runs gaining; docs/results.md, "Test-time
    averaging"), precise_bn (after every epoch, recompute the BatchNorm statistics over
    this many training images, labelled or not, un-augmented; 0: off; default 2,048, as every shipped
    config has it. PyTorch's running averages lag far behind the weights when an epoch is a few dozen
    steps, as at 1–5 % labels, and the net then predicts one class in eval mode; "precise BN",
    Wu & Johnson 2021).
    pretrain: a self-supervised method (:data:`graphzoo.selfsup.PRETRAINING`: simclr, vicreg,
    autoencoder) that trains ψ on every training image, labels ignored, before the run; the encoder
    is cached under ``pretrain_dir`` (default ``<out>/.pretrained``) by (training images, split,
    method, settings) and reused (:mod:`graphzoo.train.pretrain_cache`); "" or "none": no such stage;
    "auto" (the default): simclr when the training split holds at least 5,000 images, none below —
    measured to help on malaria's 19k training cells and to cost accuracy on sets of a few hundred —
    and on the CPU none when it would read over 10⁹ pixel values (images × epochs × C·H·W)
    (:func:`graphzoo.selfsup.resolve_auto_pretrain`; the run says which it chose).
    pretrain_epochs, pretrain_params (the method's settings: batch_size, lr, temperature, views, ...;
    the views flip and turn only as hflip / vflip / rot90 allow), pretrain_freeze (ψ stays as
    pretrained, only the head trains; default: fine-tune all of it).

    Graph and energy
    ----------------
    energy, energy_params, n_neighbors, graph_metric.

    Dynamic Pass
    ------------
    alpha_max, rampup_epochs: α(t) = alpha_max · exp(−5 (1 − t/T)²) for t < T, else alpha_max.
    labelled_per_batch: labelled images in each batch (the rest are unlabelled), so that the few
        labels are seen in every step however low the label rate.
    max_epoch_steps: cap on the steps of a dynamic epoch (0: one pass over the unlabelled images; default 60,
        as configs/malaria.yaml: on malaria's 19k unlabelled cells a whole pass between two graphs let the net
        learn its own graph's mistakes, the pseudo-labels drifting from 0.93 to 0.87 over 12 epochs).
    certainty_normalize: divide ξ by its maximum (LP-DeepSSL).
    class_balance: use the weights ζ_j = (n / c) / |{i : ŷ_i = j}|.
    dynamic_lr: "constant" (lr, halved on validation plateaus as in the warm-up) or "cosine": annealed
        per step over all dynamic epochs, lr · ½(1 + cos(π s / S)) (LP-DeepSSL, LaplaceNet).
    ema_decay: 0 (off) or the per-step decay d of a mean-teacher copy θ' ← d θ' + (1 − d) θ of the net
        (Tarvainen & Valpola), whose features build each dynamic epoch's graph; d^steps should be small
        over the dynamic pass (0.99: a horizon of ~100 steps). With final_model=best the better-validating
        of net and teacher is kept.
    pseudo_views: "standard" (the pseudo-labelled images are augmented as the labelled ones) or "strong":
        each gets a random view of :class:`~graphzoo.selfsup.views.ViewMaker` (crop, the run's flips and
        turns, blur, brightness / contrast, noise) — the student learns the graph's labels under noise the
        graph never saw (Noisy Student, Xie et al. 2020; FixMatch's weak-label / strong-view split).
        Measured on malaria at 1 % labels: no gain (docs/results.md, "Noising the student"). "exact" (the
        default): they get only the run's exact flips / quarter turns, none of the rotation / zoom / shift that
        resamples (blurs) small images, while the labelled images keep the full augmentation — measured on
        malaria at 1 % labels from the library defaults: graph 0.933 against 0.902 with "standard" ("The default run").
    pseudo_tta: build each dynamic epoch's graph on ψ averaged over the test-time views (:meth:`.Trainer.views`;
        needs tta=true), as the final graph is built, so that the pseudo-labels come from the same features;
        costs that many times each epoch's extraction of the training images (8× with tta_views=dihedral).
        Measured on malaria at 1 % labels (dihedral views): the pseudo-labels end 0.6 points more accurate, the
        test cells no better than averaging the final graph alone (0.9377 vs 0.9378), at 4.6× the wall time. Off.
    mixup_alpha: 0 (off) or α of mixup in the dynamic epochs (Zhang et al. 2018, as LaplaceNet uses it): each
        batch (labelled and pseudo-labelled rows alike) is mixed with a shuffled copy of itself,
        x̃ = λ x + (1 − λ) x[π], λ ~ Beta(α, α), and every row's loss is λ ℓ(x̃, y) + (1 − λ) ℓ(x̃, y[π]) with each
        target keeping its own weight (1 for a label, α(t) ξζ for a pseudo-label). Single-label tasks only.
        Measured on malaria at 1 % labels (α = 1): no gain (docs/results.md, "Noising the student").
    supcon_weight: 0 (off) or λ_c of a supervised contrastive term in the dynamic epochs (Khosla et al. 2020,
        :func:`graphzoo.selfsup.losses.supcon`): on ψ itself, where the graph's cosine kNN looks, each batch's
        rows of one class — labels and the graph's pseudo-labels — are pulled together and the other rows
        pushed away; anchors weighted 1 (label) or α(t) ξζ (pseudo-label), loss = ℓ_l + α(t) ℓ_u + λ_c ℓ_con.
        Single-label tasks only; not with mixup_alpha. supcon_temperature: its τ (default 0.1). Measured on
        malaria at 1 % labels (λ_c = 0.5, 2, 4): no gain (docs/results.md, "A label-aware contrastive term").

    Output and machine
    ------------------
    test_prediction: "inductive" (the trained net), "transductive" (test images join the graph),
    "auto" (transductive for One Pass, whose prediction is the energy's; inductive for Dynamic
    Pass, as in LP-DeepSSL). Both are always reported in metrics.json.
    coverage: the coverage 1 − α of the split-conformal prediction sets in predictions.csv (the
    true class is in an image's set for at least this share of images; :mod:`graphzoo.calibration`),
    in (0, 1); an image whose set is not exactly one class is flagged ``refer``.
    name, out, seed, threads (0: torch's default), device, deterministic, progress,
    checkpoint_every.
    amp: automatic mixed precision of training and inference: "auto" (bf16 on a CUDA GPU that has it,
    fp16 with a gradient scaler on an older one, off on the CPU), "bf16" (also on a CPU with AVX-512 BF16,
    where it is faster), "fp16" (CUDA only), "off".
    On CUDA the network also runs channels-last and batches travel from pinned memory.

    ``threads`` counts as a result key (it must match on ``--resume`` and in the grid's cache):
    PyTorch's CPU kernels sum in a different order with a different thread count, and the
    features then differ by up to 0.009 (AUC 0.8846 with 1 thread, 0.8899 with 2).
    """

    # data
    data: str = ""
    data_format: str = ""
    reader_options: dict = field(default_factory=dict)
    task: str = "auto"
    split: str = "auto"
    split_fractions: list = field(default_factory=lambda: [0.7, 0.1, 0.2])
    label_fraction: float = 0.2
    labels_per_class: int = 0
    val_labels: str = "budget"
    image_size: int = 0
    in_chans: int = 0
    skip_corrupt: bool = False
    data_in_memory: str = "auto"
    labels: str = ""
    class_names: list = field(default_factory=list)
    unlabelled_dirs: list = field(default_factory=lambda: ["unlabelled"])
    holdout: bool = True
    add_labels: list = field(default_factory=list)
    init_from: str = ""
    # model / training
    mode: str = "one-pass"
    backbone: str = "small_cnn"
    backbone_kwargs: dict = field(default_factory=dict)
    pretrained: str = ""
    dropout: float = 0.2
    lr: float = 1e-3
    lr_patience: int = 3
    lr_decay: float = 0.5
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 30
    warmup_epochs: int = 30
    patience: int = 6
    min_epoch_steps: int = 20
    monitor: str = "val_accuracy"
    final_model: str = "auto"
    augment: bool = True
    hflip: bool = True
    vflip: bool = True
    rotate_degrees: float = 10.0
    rot90: bool = False
    tta: bool = True
    tta_views: str = "augment"
    precise_bn: int = 2048
    crop_scale: float = 0.1
    translate: float = 0.05
    ae_pretrain_epochs: int = 5
    pretrain: str = "auto"
    pretrain_epochs: int = 10
    pretrain_params: dict = field(default_factory=dict)
    pretrain_freeze: bool = False
    pretrain_dir: str = ""
    # graph / energy
    energy: str = "label_spreading"
    energy_params: dict = field(default_factory=dict)
    n_neighbors: int = 50
    graph_metric: str = "cosine"
    # dynamic pass
    alpha_max: float = 1.0
    rampup_epochs: int = 5
    labelled_per_batch: int = 32
    max_epoch_steps: int = 60
    certainty_normalize: bool = True
    class_balance: bool = True
    dynamic_lr: str = "constant"
    ema_decay: float = 0.0
    pseudo_views: str = "exact"
    pseudo_tta: bool = False
    mixup_alpha: float = 0.0
    supcon_weight: float = 0.0
    supcon_temperature: float = 0.1
    # output / machine
    test_prediction: str = "auto"
    coverage: float = 0.9
    name: str = ""
    out: str = "runs"
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    amp: str = "auto"
    deterministic: bool = True
    progress: bool = True
    checkpoint_every: int = 1

    # ------------------------------------------------------------------ validation
    def validate(self) -> "RunConfig":
        """Check every value; raise ``ValueError`` naming the key, the value and the fix."""
        from .energies import ENERGIES
        from .energies._base import check_energy_params

        def choice(key, options):
            value = getattr(self, key)
            if value not in options:
                listed = ", ".join(map(repr, options))
                raise ValueError(f"{key}={value!r} is not one of {listed}.{did_you_mean(value, options)}")

        def positive(*keys, allow_zero=False):
            for key in keys:
                value = getattr(self, key)
                if value < 0 or (value == 0 and not allow_zero):
                    raise ValueError(f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

        if not self.data:
            raise ValueError("no data: set data=PATH (in the config, with --data, or --set data=PATH)")
        choice("mode", MODES)
        choice("task", TASKS)
        choice("split", SPLITS)
        choice("val_labels", VAL_LABELS)
        choice("test_prediction", TEST_PREDICTIONS)
        choice("monitor", MONITORS)
        choice("final_model", ("auto", "best", "last"))
        choice("device", DEVICES)
        choice("amp", AMP)
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp='fp16' needs a CUDA GPU (fp16 autocast with a gradient scaler); on the CPU use "
                             "amp='bf16' or 'off' (or 'auto', which is off on the CPU)")
        choice("graph_metric", ("cosine", "euclidean"))
        choice("dynamic_lr", ("constant", "cosine"))
        choice("pseudo_views", ("standard", "strong", "exact"))
        choice("tta_views", ("augment", "dihedral"))
        if self.pseudo_tta and not self.tta:
            raise ValueError("pseudo_tta=true builds each dynamic epoch's graph on ψ averaged over the test-time views, "
                             "and tta is off: add tta=true (and tta_views=dihedral for images without an orientation)")
        if self.tta_views != "augment" and not self.tta:
            raise ValueError(f"tta_views={self.tta_views!r} chooses the views of test-time averaging, which is off: "
                             "add tta=true, or drop tta_views")
        ENERGIES.get(self.energy)  # an unknown name raises with "did you mean"
        from .models import BACKBONES, check_backbone_kwargs

        if self.backbone not in BACKBONES:
            from .models.backbones import is_torchvision_model

            if not is_torchvision_model(self.backbone):
                from .models import create_backbone

                create_backbone(self.backbone)  # raises with "did you mean"
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must lie in (0, 1], got {self.label_fraction}")
        positive("labels_per_class", "image_size", "in_chans", "threads", "weight_decay", "ae_pretrain_epochs",
                 "rampup_epochs", "warmup_epochs", "max_epoch_steps", "precise_bn", "lr_patience", "crop_scale",
                 "translate", "rotate_degrees", allow_zero=True)
        positive("lr", "batch_size", "epochs", "patience", "min_epoch_steps", "n_neighbors", "labelled_per_batch",
                 "checkpoint_every")
        if self.pretrain.lower() in ("none", "auto"):
            self.pretrain = "" if self.pretrain.lower() == "none" else "auto"
        if self.pretrain:
            from .selfsup import AUTO_PRETRAIN_METHOD, resolve_settings

            # "auto" is decided on the split's size (Trainer.setup); its settings must suit the method it may pick
            method = AUTO_PRETRAIN_METHOD if self.pretrain == "auto" else self.pretrain
            resolve_settings(method, self.pretrain_params, self.pretrain_epochs)  # unknown name / key raises
            if self.pretrain == "autoencoder" and self.backbone != "autoencoder":
                raise ValueError(f"pretrain=autoencoder reconstructs images with the autoencoder backbone, not "
                                 f"{self.backbone}; set backbone=autoencoder, or pretrain=simclr / vicreg")
        if self.pretrain_freeze and self.pretrain == "auto" and not self.pretrained:
            raise ValueError("pretrain_freeze=true needs a pretraining method, and pretrain=auto chooses none on small "
                             "training splits: name one (--pretrain simclr) or drop pretrain_freeze")
        if self.pretrain_freeze and not (self.pretrain or self.pretrained):
            raise ValueError("pretrain_freeze=true would train the head on a random ψ: set pretrain (e.g. "
                             "--pretrain simclr) or pretrained=PATH, or drop pretrain_freeze")
        if not 0 <= self.seed < 2**32:  # numpy's seeding range, said with the key's name
            raise ValueError(f"seed must lie in [0, 2**32), got {self.seed}")
        if self.in_chans not in (0, 1, 3):
            raise ValueError(f"in_chans must be 0 (as stored), 1 or 3, got {self.in_chans}")
        if not 0 < self.coverage < 1:
            raise ValueError(f"coverage must lie in (0, 1) (e.g. 0.9 or 0.95), got {self.coverage}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must lie in (0, 1], got {self.lr_decay}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not (self.crop_scale < 1 and self.translate < 1):
            raise ValueError("crop_scale and translate must be < 1")
        if not self.mixup_alpha >= 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0: no mixup; e.g. 0.4 or 1.0), got {self.mixup_alpha}")
        if not self.supcon_weight >= 0:
            raise ValueError(f"supcon_weight must be >= 0 (0: no contrastive term; e.g. 0.5), got {self.supcon_weight}")
        if not self.supcon_temperature > 0:
            raise ValueError(f"supcon_temperature must be > 0 (e.g. 0.1), got {self.supcon_temperature}")
        if self.supcon_weight > 0 and self.mixup_alpha > 0:
            raise ValueError("supcon_weight and mixup_alpha cannot both be on: the contrastive term needs each row's "
                             "own class, which a mixed image does not have. Fix: set one of them to 0")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) (0: no mean teacher; e.g. 0.99), got {self.ema_decay}")
        if self.alpha_max < 0:
            raise ValueError(f"alpha_max must be >= 0, got {self.alpha_max}")
        if self.labelled_per_batch >= self.batch_size and self.mode == "dynamic":
            raise ValueError(
                f"labelled_per_batch={self.labelled_per_batch} leaves no room for unlabelled images in a batch of "
                f"{self.batch_size}; make it smaller than batch_size"
            )
        fr = self.split_fractions
        if (len(fr) != 3 or any(not isinstance(f, (int, float)) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6
                or fr[0] <= 0):
            raise ValueError(f"split_fractions must be three non-negative numbers (train, val, test) summing to 1, "
                             f"got {fr}")
        if self.labels and not Path(self.labels).is_file():
            raise ValueError(f"labels={self.labels!r}: no such file; give the path,label CSV (--labels FILE)")
        lost = [f for f in self.add_labels if not isinstance(f, str) or not Path(f).is_file()]
        if lost:
            raise ValueError(f"add_labels: no such file {lost[0]!r}; give the labels CSVs to add (path,label)")
        from .data.prepare import check_run_reader_options

        check_run_reader_options(self.data, self.data_format, self.reader_options)
        if str(self.data_in_memory).lower() not in ("auto", "true", "false"):
            raise ValueError(f"data_in_memory must be auto, true or false, got {self.data_in_memory!r}")
        if self.image_size and self.image_size < 16:
            raise ValueError(f"image_size must be 0 (keep) or >= 16, got {self.image_size}")
        # Last, as they run the energy on a toy graph and build the backbone on the meta device.
        check_energy_params(self.energy, self.energy_params)
        check_backbone_kwargs(self.backbone, self.backbone_kwargs)
        return self

    # ------------------------------------------------------------------ I/O
    def data_options(self) -> dict:
        """The keyword arguments of :func:`graphzoo.data.prepare_data` (data, split, budget, size)."""
        from .data.prepare import DATA_OPTIONS

        return {k: getattr(self, k) for k in DATA_OPTIONS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dump(self, path: str | Path) -> None:
        """Write the resolved config as YAML (one key per field, in declaration order)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "RunConfig":
        """Build from a mapping, converting each value to its field's type; unknown keys are refused."""
        cfg = cls()
        return apply_overrides(cfg, values, source=source)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
_HINTS = typing.get_type_hints(RunConfig)


def _convert(key: str, value: Any, source: str) -> Any:
    """Convert ``value`` (from YAML or a ``key=value`` string) to the type of field ``key``."""
    kind = _HINTS[key]
    if isinstance(value, str) and kind is not str:
        # --set values arrive as strings: parse them as YAML scalars / lists / dicts.
        try:
            value = yaml.load(value, Loader=UniqueKeyLoader) if value != "" else value
        except yaml.YAMLError as exc:
            raise ValueError(yaml_error_line(exc, f"{source}: {key}={value!r}")) from None
    bad = ValueError(f"{source}: {key} must be {kind.__name__ if hasattr(kind, '__name__') else kind}, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise bad
        return int(value)
    if kind is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if kind is str:
        if value is None or value is False:
            return ""
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad
        return str(value)
    if kind is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return list(value)
    if kind is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    raise TypeError(f"unsupported field type {kind} for {key}")


def apply_overrides(cfg: RunConfig, values: dict, source: str = "--set") -> RunConfig:
    """Return a copy of ``cfg`` with ``values`` applied (converted and type-checked)."""
    updates = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in _FIELDS:
            raise ValueError(f"{source}: unknown config key {key!r}.{did_you_mean(key, _FIELDS)}")
        updates[key] = _convert(key, value, source)
    return dataclasses.replace(cfg, **updates)


def parse_set(items: list[str] | None) -> dict:
    """``["a=1", "b=x"]`` → ``{"a": "1", "b": "x"}`` (values converted later by type)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping.

    Plain YAML keeps the last value silently, so ``lr: 0.1`` further down a file would undo an
    earlier ``lr`` without a word.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"while reading the mapping starting at line {node.start_mark.line + 1}", node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def yaml_error_line(exc: yaml.YAMLError, where: str) -> str:
    """``"WHERE, line L, column C: invalid YAML: problem"``: a YAML error as one line, without the
    excerpt of the file that PyYAML prints over several."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}{at}: invalid YAML: {problem}"


def load_yaml(path: str | Path):
    """Read a YAML file safely (no Python objects, duplicate keys refused).

    Errors become one ``ValueError`` naming the file, line and column, e.g. ``configs/x.yaml,
    line 3, column 7: invalid YAML: mapping values are not allowed here; fix the file``.
    """
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{yaml_error_line(exc, str(path))}; fix the file") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Read a YAML config (optional), apply ``overrides``; paths in the YAML are relative to it.

    A relative ``data`` path in a config file is resolved against the file's folder, so that
    ``configs/malaria.yaml`` can say ``data: ../../shared/data/...`` and work from any cwd.
    """
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        values = load_yaml(path) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a config must be a mapping of key: value")
        cfg = apply_overrides(cfg, values, source=str(path))
        for key in ("data", "labels"):
            value = getattr(cfg, key)
            if value and not Path(value).is_absolute() and not value.startswith("$"):
                cfg = dataclasses.replace(cfg, **{key: str((path.parent / value).resolve())})
        cfg = dataclasses.replace(cfg, add_labels=[str((path.parent / f).resolve()) if isinstance(f, str) and not
                                                   Path(f).is_absolute() else f for f in cfg.add_labels])
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return cfg


# Keys that may differ on --resume without changing the result (not threads: see RunConfig). data_in_memory
# reads the same pixels either way (tests/test_store.py).
RESUME_FREE_KEYS = ("progress", "device", "out", "name", "pretrain_dir", "data_in_memory")


def config_diff(a: dict, b: dict, ignore=RESUME_FREE_KEYS) -> list[str]:
    """Keys whose values differ between two config dicts (as ``key: old -> new``).

    A :class:`RunConfig` key missing from one side (a config saved before the key existed) counts
    as its default value, which is what that run used: adding a setting does not make every
    earlier run or grid cell look changed.
    """
    defaults = RunConfig().to_dict()

    def value(d: dict, k: str):
        return d[k] if k in d else defaults.get(k)

    keys = sorted(set(a) | set(b))
    return [f"{k}: {value(a, k)!r} -> {value(b, k)!r}" for k in keys if k not in ignore and value(a, k) != value(b, k)]
