"""Shared code for the adversarial robustness course notebooks.

Submodules, one idea each: `setup` (device, seeds, profiles), `data`, `models`,
`attacks`, `train`, `evaluate`, `checkpoints`, `viz`, `checks`, `results`, `student`.
Importing the package does no work: no data, no devices, no downloads.
"""

__version__ = "0.1.0"
