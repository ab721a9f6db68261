"""The size of a core's L2 cache, as Linux reports it: CPU cohort pieces are sized by it (a cohort whose
activations outgrow a core's L2 costs more per member; ``population_module.cpu_samples_per_cohort``)."""

from __future__ import annotations

from pathlib import Path

CPU0_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")
L2_WHEN_UNKNOWN = 512 * 1024  # the development machine where pieces were first measured


def parse_size(text: str) -> int:
    """sysfs cache sizes: ``"2048K"``, ``"1M"``, ``"524288"`` -> bytes (ValueError otherwise)."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def core_l2_bytes(caches: Path = CPU0_CACHES) -> int:
    """CPU 0's level-2 data (or unified) cache; ``L2_WHEN_UNKNOWN`` where Linux does not say."""
    for index in sorted(caches.glob("index*")):
        try:
            if (index / "level").read_text().strip() == "2" and (index / "type").read_text().strip() != "Instruction":
                return parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
    return L2_WHEN_UNKNOWN
