"""``graphzoo pretrain``: build (or find) the self-supervised encoder that runs with ``--pretrain`` reuse.

Examples
--------
graphzoo pretrain --config configs/malaria.yaml                       # simclr, 10 epochs, runs/.pretrained/
graphzoo pretrain --data cells.npz --method vicreg --epochs 20
graphzoo pretrain --config configs/malaria.yaml --set pretrain_params='{temperature: 0.5}'
graphzoo run --config configs/malaria.yaml --pretrain simclr         # reuses the encoder built above

The encoder depends on the training split, so give the same data and split settings (and seed, for a
split drawn at random) as the runs that will use it. Killed, it continues from its last epoch when
the same command is given again.
"""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML run config (its data and split settings decide the training images)")
    parser.add_argument("--data", help="dataset path (any format the readers detect)")
    parser.add_argument("--method", dest="pretrain", metavar="NAME",
                        help="simclr (default), vicreg or autoencoder (the autoencoder backbone only)")
    parser.add_argument("--epochs", dest="pretrain_epochs", type=int, help="pretraining epochs (default 10)")
    parser.add_argument("--seed", type=int, help="the split's seed (as the runs that will use the encoder)")
    parser.add_argument("--out", help="runs folder; the cache is OUT/.pretrained unless --cache-dir")
    parser.add_argument("--cache-dir", dest="pretrain_dir", help="where encoders are stored (pretrain_dir)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (a result key, as for graphzoo run)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], action="extend",
                        help="any config key, e.g. --set pretrain_params='{batch_size: 128, temperature: 0.5}'")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    """The validated run config: ``--config``, then ``--set``, then the flags named after config keys
    (as ``graphzoo run`` builds it, so that both find the same training split), ``pretrain`` simclr
    unless one is given."""
    import dataclasses
    from pathlib import Path

    from .config import RunConfig, load_config, parse_set
    from .selfsup import AUTO_PRETRAIN_METHOD

    keys = {f.name for f in dataclasses.fields(RunConfig)}
    overrides = parse_set(args.set)
    overrides.update({k: v for k, v in vars(args).items() if k in keys and v is not None})
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
    if cfg.data and Path(cfg.data).exists():
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).resolve()))
    # building an encoder is this command's whole job: "auto" (or none) means the method auto would pick
    return dataclasses.replace(cfg, pretrain=cfg.pretrain if cfg.pretrain not in ("", "auto")
                               else AUTO_PRETRAIN_METHOD).validate()


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    cfg = build_config(args)
    if not Path(cfg.data).exists():
        raise FileNotFoundError(f"data {cfg.data} does not exist: check the path (--data, or data: in the config)")
    import torch

    from .data.prepare import labels_line, prepare_data
    from .data.torchdata import Normalizer
    from .distributed import launched, resolve_device
    from .train.pretrain_cache import ensure_pretrained

    if launched():  # N processes would train N encoders into one cache entry
        raise ValueError("graphzoo pretrain runs in one process: start it without torchrun (python -m graphzoo "
                         "pretrain ...); a torchrun job of graphzoo run --pretrain NAME pretrains on its rank 0 and "
                         "reuses the cached encoder")

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = prepare_data(**cfg.data_options())
    print(labels_line(data), file=sys.stderr)
    idx_train = data.idx("train")
    device = resolve_device(cfg.device)
    result = ensure_pretrained(cfg, data, idx_train, Normalizer.fit(data.images, idx_train), device)
    last = (result.meta.get("history") or [{}])[-1]
    print(json.dumps({"encoder": str(result.encoder), "method": cfg.pretrain, "epochs_trained": result.epochs_trained,
                      "reused": result.epochs_trained == 0, "time_s": result.meta.get("time_s"),
                      "peak_rss_mb": result.meta.get("peak_rss_mb"), "feature_std": last.get("std"),
                      "effective_rank": last.get("effective_rank"), "n_train": len(idx_train)}))
    return 0
