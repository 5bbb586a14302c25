"""Offline quality judge for generated images: a small trained classifier plus FID, KID,
k-NN precision/recall and class coverage on its features, reported beside a real-data floor."""

from trainer_service.evaluation.evaluate import (
    EvalSettings, RealReference, build_reference, clear_caches, evaluate_images, floor_metrics,
    score_features,
)
from trainer_service.evaluation.judge import (
    Judge, JudgeConfig, JudgeInfo, as_judge_input, build_judge_model, train_judge,
    uint8_to_judge_input,
)
from trainer_service.evaluation.judge_store import (
    judge_dir, load_judge, load_or_train_judge, save_judge,
)
from trainer_service.evaluation.metrics import (
    class_coverage, fraction_in_manifold, frechet_distance, frechet_distance_from_stats,
    kernel_inception_distance, knn_radii, mmd2_unbiased, precision_recall,
)

__all__ = [
    "EvalSettings", "RealReference", "build_reference", "clear_caches", "evaluate_images",
    "floor_metrics", "score_features",
    "Judge", "JudgeConfig", "JudgeInfo", "as_judge_input", "build_judge_model", "train_judge",
    "uint8_to_judge_input",
    "judge_dir", "load_judge", "load_or_train_judge", "save_judge",
    "class_coverage", "fraction_in_manifold", "frechet_distance", "frechet_distance_from_stats",
    "kernel_inception_distance", "knn_radii", "mmd2_unbiased", "precision_recall",
]
