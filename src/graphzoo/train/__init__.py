"""Training the hybrid model (imports torch).

=================== ===============================================================================
``runner``          :func:`run_training` — one run end to end; :data:`MODES` (one-pass, dynamic)
``trainer``         :class:`Trainer` — shared pieces: data, net, the epoch loop, validation, checkpoints
``batches``         images to the network: read ahead in a background thread, augment, normalise
``train_step``      one training step: forward through DDP under autocast, backward, optimiser step
``precision``       mixed precision: amp dtype, autocast, the fp16 GradScaler
``inference``       logits and ψ of a set of images in eval mode; sharded and gathered under torchrun
``rng_state``       torch / numpy / Python RNG states: seeded, saved per rank in last.pt, restored
``split_files``     data fingerprint, split.npz / split.csv, the --resume and --init-from data checks
``one_pass``        One Pass: supervised epochs on the labelled images (then one graph step)
``dynamic_pass``    Dynamic Pass: warm-up, then pseudo-labels from the graph every epoch
``pretrain``        the autoencoder backbone's in-run phase; :data:`PRETRAINING` (:mod:`graphzoo.selfsup`)
``pretrain_cache``  self-supervised encoders built once per (training images, split, method, settings)
``evaluate``        the final graph and net predictions, metrics, predictions.csv
``checkpoints``     safe checkpoints: tensors and plain values only
``metrics``         accuracy, balanced accuracy, ROC-AUC, per class / per label
=================== ===============================================================================
"""

from __future__ import annotations

from .metrics import classification_metrics, multilabel_metrics
from .pretrain import PRETRAINING
from .runner import MODES, TrainingResult, run_training
from .trainer import Trainer, TrainingInterrupted, default_run_name

__all__ = ["run_training", "TrainingResult", "Trainer", "TrainingInterrupted", "MODES", "PRETRAINING",
           "default_run_name", "classification_metrics", "multilabel_metrics"]
