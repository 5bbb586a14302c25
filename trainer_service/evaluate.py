"""python -m trainer_service.evaluate --store DIR [--version V]: score a published version.

Prints FID, KID, precision, recall and class coverage with the real-data floor beside each, and writes
the scores into the version's metadata.json (what GetModelInfo reports). The first run on a dataset
trains the judge (a few minutes on 2 cores) and caches it in STORE/judges/.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gan_common import store as store_layout  # noqa: E402
from gan_common.config_cli import ConfigError, option, parse_config  # noqa: E402


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    store: str = option("", "store folder the trainer publishes into (required)")
    version: int | None = option(None, "version to score (default: the newest)")
    dataset: str | None = option(None, "dataset whose test split is the reference (default: the one the "
                                       "version was trained on)")
    samples: int = option(2000, "generated images to score (the floor uses as many real ones)")
    seed: int = option(0, "seed of the scored latents")
    write: bool = option(True, "record the scores in the version's metadata.json")
    allow_download: bool = option(False, "let Keras download MNIST/Fashion-MNIST when not found locally")


def _dataset_of(metadata: store_layout.ModelMetadata) -> str:
    trained_on = metadata.extra.get("trainer_config", {}).get("dataset")
    return trained_on if isinstance(trained_on, str) and trained_on else metadata.dataset


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(EvaluateConfig, argv, "GAN_EVALUATE_", __doc__, prog="python -m trainer_service.evaluate")
        if not config.store:
            raise ConfigError("--store is required")
        if not 10 <= config.samples <= 50000:
            raise ConfigError(f"--samples must be between 10 and 50000, not {config.samples}")
        version = config.version or store_layout.latest_version(config.store)
        if version is None:
            raise ConfigError(f"{config.store} holds no published version")
        metadata = store_layout.read_metadata(config.store, version)
    except (ConfigError, store_layout.MetadataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.WARNING)

    from sampler_service.loading import LoadError
    from trainer_service.scoring import ScoringUnavailable, VersionScorer, as_table

    scorer = VersionScorer(config.store, config.dataset or _dataset_of(metadata), config.samples, config.seed,
                           config.allow_download)
    try:
        result = scorer.score(version, write=config.write)
    except (ScoringUnavailable, LoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(as_table(version, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
