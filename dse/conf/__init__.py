"""The shipped presets (YAML, read by Hydra as ``pkg://dse.conf``): compile.yaml and sweep.yaml, and one folder
per config group (hardware/, model/, strategy/, tuning/, search/, study/, runner/, experiment/)."""
