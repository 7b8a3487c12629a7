"""Scale benchmark: compile an ImageNet-size VGG-16-like graph for chip_a with full multi-phase tuning on
32 calibration images, and report time, peak memory and error on 16 held-out images.

    python -m bench.scale_tuned            # acceptance: <= 15 min on 2 cores, peak memory <= 8 GB

Same JSON record as `bench.scale_resources` (see there for what each field means).
"""

from __future__ import annotations

from bench.scale_resources import main

if __name__ == "__main__":
    raise SystemExit(main(default_model="vgg16", default_tuning="multiphase"))
