"""Self-supervised learning of ψ from unlabelled images (imports torch).

=============== ==================================================================================
``methods``     :data:`PRETRAINING` — simclr, vicreg, autoencoder: settings, projector head, loss;
                what ``pretrain=auto`` chooses (:func:`resolve_auto_pretrain`)
``views``       :class:`ViewMaker` — random views (crops, flips, quarter turns, blur, contrast, noise)
``losses``      NT-Xent, VICReg, and the collapse check of a representation
=============== ==================================================================================

Running a method over a split and caching the encoder is :mod:`graphzoo.train.pretrain_cache`'s job;
this package holds what does not depend on runs, so that :mod:`graphzoo.config` can check a
``pretrain`` setting without importing the training code.
"""

from __future__ import annotations

from .losses import (CollapsedRepresentationError, check_not_collapsed, nt_xent, representation_health, supcon,
                     vicreg)
from .methods import (AUTO_PRETRAIN_CPU_WORK, AUTO_PRETRAIN_METHOD, AUTO_PRETRAIN_MIN_IMAGES, PRETRAINING,
                      PretrainMethod, resolve_auto_pretrain, resolve_settings)
from .views import ViewMaker

__all__ = ["PRETRAINING", "PretrainMethod", "resolve_settings", "resolve_auto_pretrain", "AUTO_PRETRAIN_METHOD",
           "AUTO_PRETRAIN_MIN_IMAGES", "AUTO_PRETRAIN_CPU_WORK", "ViewMaker", "nt_xent", "vicreg", "supcon",
           "representation_health", "check_not_collapsed", "CollapsedRepresentationError"]
