"""Scale benchmark: compile an ImageNet-size graph (VGG-16-like by default, ``--model resnet50`` for the
ResNet-50-like one) for chip_a with full multi-phase tuning on 64 calibration images, and report time and
peak memory of each step, the memory bound and estimate, and the error on 16 held-out images.

    python -m bench.scale_tuned --model vgg16 --max-memory-gb 6       # acceptance: peak memory <= 6 GB
    python -m bench.scale_tuned --model resnet50 --max-memory-gb 6
    python -m bench.scale_tuned --set free_steps=50 --set range_steps=20 --set round_steps=10   # shorter
    python -m bench.scale_tuned --model resnet50 --test 8 --time-limit 600   # issue 16: default tuning, at
                                        # most 10 min after the import (plus the export, 1-2 min on a quiet machine)

Same JSON record as `bench.scale_resources` (see there for what each field means; `tuner` counts the
training steps and times each block); docs/scale.md gives the measured figures.
"""

from __future__ import annotations

from bench.scale_resources import main

if __name__ == "__main__":
    raise SystemExit(main(default_model="vgg16", default_tuning="multiphase", default_calib=64))
