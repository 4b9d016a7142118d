"""Stage II's configuration: what it adds to a schedule (``RefineConfig``, the preset's
``[stage2.refine]``) and the resolved schedule (the preset's ``[stage2]`` <- ``--config FILE.toml`` <-
flags). The step and the run that use it: ``train.stage2``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ehead_cli.errors import ConfigError
from ehead_cli.io.config import Layer, file_layer, flag_layer, merge_config
from ehead_cli.model.config import check_fields, load_toml, models_dir
from ehead_cli.train.config import TrainConfig

SECTION, REFINE = "stage2", "refine"  # the preset's [stage2] (schedule) and [stage2.refine]


@dataclass(frozen=True)
class RefineConfig:
    """What Stage II adds to a schedule (the preset's ``[stage2.refine]``), field by field:

    coef_weight:        lambda_coef, the weight of Stage I's loss L_I (paper 0.2)
    l1_weight:          lambda_1 of the image L1 (paper 0.2; eq. 8's lambda_img is 1)
    perceptual_weight:  lambda_p of the perceptual term (paper 0.2)
    renderer_lr_scale:  the renderer's learning rate / the DiT's (paper 0.5)
    renderer_weight_decay: AdamW decay of the renderer's weights (the paper gives none; 0: the
                        avatar fit had none either)
    frames_per_window:  frames of each window rendered and compared with the video (the paper does
                        not say; the paper preset renders the whole window)
    """

    coef_weight: float = 0.2
    l1_weight: float = 0.2
    perceptual_weight: float = 0.2
    renderer_lr_scale: float = 0.5
    renderer_weight_decay: float = 0.0
    frames_per_window: int = 100

    def validate(self, window: int | None = None) -> RefineConfig:
        if min(self.coef_weight, self.l1_weight, self.perceptual_weight, self.renderer_weight_decay) < 0:
            raise ConfigError("stage2.refine: the loss weights and the renderer's weight decay must be >= 0")
        if not self.renderer_lr_scale >= 0:
            raise ConfigError(f"stage2.refine.renderer_lr_scale must be >= 0, got {self.renderer_lr_scale}")
        if self.frames_per_window < 1 or (window is not None and self.frames_per_window > window):
            raise ConfigError(f"stage2.refine.frames_per_window must be in 1..{window or 'the window'}, "
                              f"got {self.frames_per_window}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> RefineConfig:
        check_fields(cls, d, source, f"{SECTION}.{REFINE}")
        return cls(**d).validate()


SCHEMA = {SECTION: TrainConfig, f"{SECTION}.{REFINE}": RefineConfig}  # Stage II's sections


def resolve_stage2_config(preset_name: str, config_file: Path | None,
                          overrides: dict[str, Any]) -> tuple[TrainConfig, RefineConfig]:
    """The preset's [stage2] (a TrainConfig: the schedule) and [stage2.refine] -> ``--config FILE.toml``'s
    -> flags, later wins (``ehead_cli.io.config.merge_config``, as Stage I and the listener)."""
    path = models_dir() / "presets" / f"{preset_name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset_name!r} for --preset")
    sched = load_toml(path).get(SECTION, {})
    if not sched:
        raise ConfigError(f"{path}: the preset has no [{SECTION}] section (Stage II's schedule)")
    layers = [Layer({SECTION: sched}, str(path)), *file_layer(config_file), *flag_layer(SECTION, overrides)]
    merged, source = merge_config(layers, SCHEMA, context=" for --stage 2")
    sched = dict(merged[SECTION])
    refine = dict(sched.pop(REFINE, {}))
    return (TrainConfig.from_dict(sched, source, section=SECTION), RefineConfig.from_dict(refine, source))
